package peers_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/peers"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait: it turns a hang into a failure, and no assertion
// depends on it.
const wait = 30 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return c
}

// peerNode is a peer's node: RelayService and FederationService over real
// mutual TLS on 127.0.0.1, trusting the generated directory throughout, so
// that every refusal seen is the transport's.
type peerNode struct {
	addr string
	// calls reports what RelayService saw of each Deliver or DeliverAhead
	// call, in order.
	calls chan string
	mu    sync.Mutex
	// callers are the leaves of the nodes that called, in order.
	callers []*x509.Certificate
}

type relaySrv struct {
	pocnetv1.UnimplementedRelayServiceServer
	n *peerNode
}

func (s relaySrv) Ping(ctx context.Context, _ *pocnetv1.PingRequest) (*pocnetv1.PingResponse, error) {
	p, _ := peer.FromContext(ctx)
	s.n.mu.Lock()
	s.n.callers = append(s.n.callers, p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0])
	s.n.mu.Unlock()
	return &pocnetv1.PingResponse{}, nil
}

func (s relaySrv) Deliver(_ context.Context, req *pocnetv1.DeliverRequest) (*pocnetv1.DeliverResponse, error) {
	s.n.calls <- fmt.Sprintf("deliver %d", len(req.GetEnvelopes()))
	return &pocnetv1.DeliverResponse{Results: results(req.GetEnvelopes())}, nil
}

// DeliverAhead reports the envelopes as soon as they arrive, then whether
// the word that they are durable followed.
func (s relaySrv) DeliverAhead(stream pocnetv1.RelayService_DeliverAheadServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	envs := first.GetEnvelopes().GetEnvelopes()
	s.n.calls <- fmt.Sprintf("ahead %d", len(envs))
	m, err := stream.Recv()
	if err != nil {
		s.n.calls <- "ended without durable: " + status.Code(err).String()
		return err
	}
	if m.GetDurable() == nil {
		s.n.calls <- "second message not durable"
		return status.Error(codes.InvalidArgument, "durable: missing")
	}
	s.n.calls <- "durable"
	return stream.SendAndClose(&pocnetv1.DeliverAheadResponse{Results: results(envs)})
}

func results(envs []*pocnetv1.Envelope) []*pocnetv1.DeliveryResult {
	out := make([]*pocnetv1.DeliveryResult, len(envs))
	for i, e := range envs {
		out[i] = &pocnetv1.DeliveryResult{EnvelopeId: string(e.GetHeader())}
	}
	return out
}

type federationSrv struct {
	pocnetv1.UnimplementedFederationServiceServer
}

func (federationSrv) GetVersions(context.Context, *pocnetv1.GetVersionsRequest) (*pocnetv1.GetVersionsResponse, error) {
	return &pocnetv1.GetVersionsResponse{Latest: 7}, nil
}

func (n *peerNode) lastCaller() *x509.Certificate {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.callers[len(n.callers)-1]
}

// startPeer starts state's node. A node of an earlier build does not know
// RelayService.DeliverAhead: its server answers Unimplemented, as gRPC does
// for a method it was not built with.
func startPeer(t *testing.T, f *certs.Federation, state string, earlierBuild bool) *peerNode {
	t.Helper()
	d, err := directory.New(f.Directory)
	if err != nil {
		t.Fatal(err)
	}
	n := &peerNode{calls: make(chan string, 100)}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(identity.ServerConfig(&f.State(state).Node.TLS, identity.Static{B: d.Bundle()}, identity.Node(f.ID, state), nil))))
	if earlierBuild {
		desc := pocnetv1.RelayService_ServiceDesc
		desc.Streams = nil
		srv.RegisterService(&desc, relaySrv{n: n})
	} else {
		pocnetv1.RegisterRelayServiceServer(srv, relaySrv{n: n})
	}
	pocnetv1.RegisterFederationServiceServer(srv, federationSrv{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = lis.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return n
}

// env is XAA's transport towards XBB's and XCC's nodes; XCC's is of an
// earlier build, without RelayService.DeliverAhead.
type env struct {
	f   *certs.Federation
	src *directory.Source
	tr  *peers.Transport
	// base is the generated directory with the peers' real endpoints.
	base *pocnetv1.Directory
	xbb  *peerNode
	xcc  *peerNode
}

func start(t *testing.T) *env {
	t.Helper()
	f, err := certs.Generate(certs.Options{States: []string{"XAA", "XBB", "XCC"}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{f: f, xbb: startPeer(t, f, "XBB", false), xcc: startPeer(t, f, "XCC", true)}
	e.base = proto.Clone(f.Directory).(*pocnetv1.Directory)
	member(e.base, "XBB").Endpoints = []string{e.xbb.addr}
	member(e.base, "XCC").Endpoints = []string{e.xcc.addr}
	d, err := directory.New(e.base)
	if err != nil {
		t.Fatal(err)
	}
	e.src = directory.NewSource(d)
	e.tr = peers.New(peers.Config{Certificate: &f.State("XAA").Node.TLS, Directory: e.src, Logger: zaptest.NewLogger(t)})
	t.Cleanup(func() { e.tr.Close() })
	return e
}

func member(pb *pocnetv1.Directory, state string) *pocnetv1.Member {
	for _, m := range pb.Members {
		if m.State == state {
			return m
		}
	}
	panic("no member " + state)
}

// set puts in force the base directory as changed by mutate.
func (e *env) set(t *testing.T, mutate func(*pocnetv1.Directory)) {
	t.Helper()
	pb := proto.Clone(e.base).(*pocnetv1.Directory)
	mutate(pb)
	d, err := directory.New(pb)
	if err != nil {
		t.Fatal(err)
	}
	e.src.Set(d)
}

func revoke(state string, c *x509.Certificate, reason string) func(*pocnetv1.Directory) {
	return func(pb *pocnetv1.Directory) {
		fp := sha256.Sum256(c.Raw)
		m := member(pb, state)
		m.RevokedCertificates = append(m.RevokedCertificates, &pocnetv1.RevokedCertificate{
			Sha256: fp[:], RevokedAt: timestamppb.New(time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)), Reason: reason,
		})
	}
}

// connected pings state and returns the connection the transport holds.
func (e *env) connected(t *testing.T, state string) *grpc.ClientConn {
	t.Helper()
	if err := e.tr.Ping(ctx(t), state); err != nil {
		t.Fatalf("Ping %s: %v", state, err)
	}
	cc := peers.ClientConn(e.tr, state)
	if cc == nil {
		t.Fatalf("no connection to %s", state)
	}
	return cc
}

// reset puts the base directory back in force and waits until XBB's
// connection, if the transport holds one, was closed or is usable again.
func (e *env) reset(t *testing.T) {
	t.Helper()
	old := peers.ClientConn(e.tr, "XBB")
	e.set(t, func(*pocnetv1.Directory) {})
	if old == nil {
		return
	}
	c := ctx(t)
	for s := old.GetState(); s != connectivity.Shutdown && s != connectivity.Ready; s = old.GetState() {
		if !old.WaitForStateChange(c, s) {
			t.Fatalf("XBB's connection is still %v", s)
		}
	}
}

// waitShutdown waits for the transport to close cc.
func waitShutdown(t *testing.T, cc *grpc.ClientConn) {
	t.Helper()
	c := ctx(t)
	for s := cc.GetState(); s != connectivity.Shutdown; s = cc.GetState() {
		if !cc.WaitForStateChange(c, s) {
			t.Fatalf("the connection was not closed (still %v)", s)
		}
	}
}

func TestConnectionClosedWhenTheDirectoryNoLongerTrustsIt(t *testing.T) {
	e := start(t)
	xbbNode := e.f.State("XBB").Node.Cert
	newCA, err := certs.NewCA(e.f.ID, "XBB", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(*pocnetv1.Directory)
		want   string // of the next Ping
		isErr  error
	}{
		{"XBB revokes its node's certificate", revoke("XBB", xbbNode, "key compromise"),
			") was revoked by XBB at 2030-03-01T12:00:00Z: key compromise", nil},
		{"XBB replaces its CA", func(pb *pocnetv1.Directory) { member(pb, "XBB").CaCertificates = []string{string(newCA.CertPEM)} },
			"chain does not verify against the CA of XBB", nil},
		{"XBB leaves", func(pb *pocnetv1.Directory) { pb.Members = []*pocnetv1.Member{member(pb, "XAA"), member(pb, "XCC")} },
			"peer XBB: not a peer in the directory in force", peers.ErrNoPeer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.reset(t)
			xbb, xcc := e.connected(t, "XBB"), e.connected(t, "XCC")
			e.set(t, tt.mutate)
			waitShutdown(t, xbb)
			// Every connection is checked in the same pass: XCC's, which the
			// change does not touch, is still open.
			if s := xcc.GetState(); s == connectivity.Shutdown || peers.ClientConn(e.tr, "XCC") != xcc {
				t.Errorf("XCC's connection: %v", s)
			}
			err := e.tr.Ping(ctx(t), "XBB")
			if err == nil || !strings.Contains(err.Error(), tt.want) || tt.isErr != nil && !errors.Is(err, tt.isErr) {
				t.Fatalf("Ping after the change = %v, want %q", err, tt.want)
			}
			if err := e.tr.Ping(ctx(t), "XCC"); err != nil {
				t.Errorf("Ping XCC: %v", err)
			}
		})
	}
	// Back in the directory, XBB is dialed again.
	e.reset(t)
	if err := e.tr.Ping(ctx(t), "XBB"); err != nil {
		t.Fatal(err)
	}
}

func TestConnectionFollowsAMovedPeer(t *testing.T) {
	e := start(t)
	old := e.connected(t, "XBB")
	moved := startPeer(t, e.f, "XBB", false)
	e.set(t, func(pb *pocnetv1.Directory) { member(pb, "XBB").Endpoints = []string{moved.addr} })
	waitShutdown(t, old)
	if err := e.tr.Ping(ctx(t), "XBB"); err != nil {
		t.Fatal(err)
	}
	if moved.lastCaller() == nil {
		t.Fatal("the moved peer was not called")
	}
}

func TestConnSharedAndRedialed(t *testing.T) {
	e := start(t)
	fed := func() (*pocnetv1.GetVersionsResponse, error) {
		cc, err := e.tr.Conn("XBB")
		if err != nil {
			return nil, err
		}
		return pocnetv1.NewFederationServiceClient(cc).GetVersions(ctx(t), &pocnetv1.GetVersionsRequest{})
	}
	if r, err := fed(); err != nil || r.GetLatest() != 7 {
		t.Fatalf("GetVersions = %v, %v", r, err)
	}
	first := peers.ClientConn(e.tr, "XBB")
	// Deliver and Ping go over the same connection.
	if e.connected(t, "XBB") != first {
		t.Fatal("Ping dialed a second connection")
	}
	// A handle taken before a change stays usable after it: each call goes
	// over the connection in use.
	handle, err := e.tr.Conn("XBB")
	if err != nil {
		t.Fatal(err)
	}
	moved := startPeer(t, e.f, "XBB", false)
	e.set(t, func(pb *pocnetv1.Directory) { member(pb, "XBB").Endpoints = []string{moved.addr} })
	waitShutdown(t, first)
	if r, err := pocnetv1.NewFederationServiceClient(handle).GetVersions(ctx(t), &pocnetv1.GetVersionsRequest{}); err != nil || r.GetLatest() != 7 {
		t.Fatalf("GetVersions through the old handle = %v, %v", r, err)
	}

	// A state that is not a peer.
	if _, err := e.tr.Conn("XQQ"); !errors.Is(err, peers.ErrNoPeer) {
		t.Errorf("Conn(XQQ) = %v", err)
	}
	e.set(t, func(pb *pocnetv1.Directory) { pb.Members = []*pocnetv1.Member{member(pb, "XAA"), member(pb, "XCC")} })
	_, err = pocnetv1.NewFederationServiceClient(handle).GetVersions(ctx(t), &pocnetv1.GetVersionsRequest{})
	if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "peer XBB: not a peer in the directory in force") {
		t.Errorf("GetVersions to a former member = %v", err)
	}
}

// TestPresentsTheCertificateOfTheMoment: with GetCertificate, each new
// connection presents the certificate the getter returns then (a reloaded
// one); an open connection keeps its own.
func TestPresentsTheCertificateOfTheMoment(t *testing.T) {
	f, err := certs.Generate(certs.Options{States: []string{"XAA", "XBB"}})
	if err != nil {
		t.Fatal(err)
	}
	xbb, moved := startPeer(t, f, "XBB", false), startPeer(t, f, "XBB", false)
	pb := proto.Clone(f.Directory).(*pocnetv1.Directory)
	member(pb, "XBB").Endpoints = []string{xbb.addr}
	d, err := directory.New(pb)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.State("XAA").CA.Issue(identity.Node(f.ID, "XAA"), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	cur := &f.State("XAA").Node.TLS
	src := directory.NewSource(d)
	tr := peers.New(peers.Config{Directory: src, GetCertificate: func() *tls.Certificate {
		mu.Lock()
		defer mu.Unlock()
		return cur
	}})
	defer tr.Close()
	if err := tr.Ping(ctx(t), "XBB"); err != nil {
		t.Fatal(err)
	}
	if !xbb.lastCaller().Equal(f.State("XAA").Node.Cert) {
		t.Error("the first certificate was not presented")
	}
	old := peers.ClientConn(tr, "XBB")

	mu.Lock()
	cur = &second.TLS
	mu.Unlock()
	if err := tr.Ping(ctx(t), "XBB"); err != nil || !xbb.lastCaller().Equal(f.State("XAA").Node.Cert) {
		t.Errorf("the open connection changed its certificate (%v)", err)
	}
	// XBB moves: the next connection presents the new certificate.
	member(pb, "XBB").Endpoints = []string{moved.addr}
	d2, err := directory.New(pb)
	if err != nil {
		t.Fatal(err)
	}
	src.Set(d2)
	waitShutdown(t, old)
	if err := tr.Ping(ctx(t), "XBB"); err != nil {
		t.Fatal(err)
	}
	if !moved.lastCaller().Equal(second.Cert) {
		t.Error("the reloaded certificate was not presented")
	}
}

func TestClosed(t *testing.T) {
	e := start(t)
	e.connected(t, "XBB")
	if err := e.tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := e.tr.Ping(ctx(t), "XBB"); !errors.Is(err, peers.ErrClosed) {
		t.Fatalf("Ping after Close = %v", err)
	}
}

// seen waits for the next thing n's RelayService saw.
func (n *peerNode) seen(t *testing.T) string {
	t.Helper()
	select {
	case s := <-n.calls:
		return s
	case <-time.After(wait):
		t.Fatal("the peer saw no call")
		return ""
	}
}

func envs(ids ...string) []*pocnetv1.Envelope {
	out := make([]*pocnetv1.Envelope, len(ids))
	for i, id := range ids {
		out[i] = &pocnetv1.Envelope{Header: []byte(id)}
	}
	return out
}

// TestDeliverAhead: envelopes not yet durable reach the peer before ready
// returns, and the word that they are durable follows it; if ready fails,
// the call ends without that word and Deliver returns ready's error.
func TestDeliverAhead(t *testing.T) {
	e := start(t)
	ready := func(ctx context.Context) error {
		// The peer has the envelopes while this node's sync still runs.
		if got := e.xbb.seen(t); got != "ahead 2" {
			return fmt.Errorf("peer saw %q before ready returned, want the envelopes", got)
		}
		return nil
	}
	res, err := e.tr.Deliver(ctx(t), "XBB", envs("m1", "m2"), ready)
	if err != nil {
		t.Fatalf("Deliver ahead: %v", err)
	}
	if len(res) != 2 || res[0].GetEnvelopeId() != "m1" || res[1].GetEnvelopeId() != "m2" {
		t.Fatalf("results %v", res)
	}
	if got := e.xbb.seen(t); got != "durable" {
		t.Fatalf("peer saw %q after ready, want the word that the envelopes are durable", got)
	}

	lost := errors.New("sync failed")
	_, err = e.tr.Deliver(ctx(t), "XBB", envs("m3"), func(context.Context) error {
		e.xbb.seen(t) // the envelopes
		return lost
	})
	if !errors.Is(err, lost) {
		t.Fatalf("Deliver whose ready failed = %v, want ready's error", err)
	}
	if got := e.xbb.seen(t); got != "ended without durable: Canceled" {
		t.Fatalf("peer saw %q, want the call cancelled without the word", got)
	}

	// Durable already: a plain Deliver.
	if _, err := e.tr.Deliver(ctx(t), "XBB", envs("m4"), nil); err != nil {
		t.Fatal(err)
	}
	if got := e.xbb.seen(t); got != "deliver 1" {
		t.Fatalf("peer saw %q for durable envelopes, want a Deliver", got)
	}
}

// TestDeliverAheadToEarlierBuild: a peer that does not know DeliverAhead
// gets the envelopes over Deliver once ready returned, and from then on
// over Deliver only.
func TestDeliverAheadToEarlierBuild(t *testing.T) {
	e := start(t)
	// ready reports itself on the peer's record of calls, so that the
	// order in which ready returned and the peer got the envelopes shows.
	ready := func(context.Context) error {
		e.xcc.calls <- "ready"
		return nil
	}
	for call := range 2 {
		res, err := e.tr.Deliver(ctx(t), "XCC", envs("m1"), ready)
		if err != nil {
			t.Fatalf("call %d: %v", call, err)
		}
		if len(res) != 1 || res[0].GetEnvelopeId() != "m1" {
			t.Fatalf("call %d: results %v", call, res)
		}
		var seen []string
		for len(seen) == 0 || seen[len(seen)-1] == "ready" {
			seen = append(seen, e.xcc.seen(t))
		}
		// The first call may ask ready twice: once while trying
		// DeliverAhead, once before falling back to Deliver.
		if len(seen) < 2 || seen[len(seen)-1] != "deliver 1" || (call == 1 && len(seen) != 2) {
			t.Fatalf("call %d: peer saw %q, want ready then one Deliver (the second call without trying DeliverAhead again)", call, seen)
		}
	}
}
