package auth_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait on the network: it turns a hang into a failure,
// and no assertion depends on it.
const wait = 30 * time.Second

// bell wakes every stream of the test services at once.
type bell struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBell() *bell { return &bell{ch: make(chan struct{})} }

func (b *bell) C() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *bell) Ring() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.ch)
	b.ch = make(chan struct{})
}

type relaySrv struct {
	pocnetv1.UnimplementedRelayServiceServer
}

func (relaySrv) Ping(context.Context, *pocnetv1.PingRequest) (*pocnetv1.PingResponse, error) {
	return &pocnetv1.PingResponse{}, nil
}

// contactSrv's WatchEvents sends an event at once and one more at each ring,
// and ends when its context does, as the node's handler does.
type contactSrv struct {
	pocnetv1.UnimplementedContactServiceServer
	bell *bell
}

func (s contactSrv) WatchEvents(_ *pocnetv1.WatchEventsRequest, stream grpc.ServerStreamingServer[pocnetv1.WatchEventsResponse]) error {
	ctx := stream.Context()
	if _, err := auth.Caller(ctx); err != nil {
		return err
	}
	for seq := uint64(1); ; seq++ {
		rang := s.bell.C()
		if err := stream.Send(&pocnetv1.WatchEventsResponse{Event: &pocnetv1.Event{Seq: seq}}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-rang:
		}
	}
}

func (contactSrv) GetNodeStatus(context.Context, *pocnetv1.GetNodeStatusRequest) (*pocnetv1.GetNodeStatusResponse, error) {
	return &pocnetv1.GetNodeStatusResponse{}, nil
}

// auditSrv's ExportAudit never looks at its context: it sends at each ring
// until a send fails.
type auditSrv struct {
	pocnetv1.UnimplementedAuditServiceServer
	bell *bell
}

func (s auditSrv) ExportAudit(_ *pocnetv1.ExportAuditRequest, stream grpc.ServerStreamingServer[pocnetv1.ExportAuditResponse]) error {
	for {
		rang := s.bell.C()
		if err := stream.Send(&pocnetv1.ExportAuditResponse{}); err != nil {
			return err
		}
		<-rang
	}
}

// env is XAA's node side: a gRPC server with real mutual TLS on 127.0.0.1
// behind the Authorizer, under a directory the test changes.
type env struct {
	f     *certs.Federation
	src   *directory.Source
	authz *auth.Authorizer
	addr  string
	bell  *bell
}

func start(t *testing.T) *env {
	t.Helper()
	f, err := certs.Generate(certs.Options{States: []string{"XAA", "XBB", "XCC"}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := directory.New(f.Directory)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{f: f, src: directory.NewSource(d), bell: newBell()}
	self := identity.Node(f.ID, "XAA")
	e.authz = &auth.Authorizer{Self: self, Directory: e.src, Logger: zaptest.NewLogger(t)}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(identity.ServerConfig(&f.State("XAA").Node.TLS, e.src, self, nil))),
		grpc.ChainUnaryInterceptor(e.authz.Unary),
		grpc.ChainStreamInterceptor(e.authz.Stream),
	)
	pocnetv1.RegisterRelayServiceServer(srv, relaySrv{})
	pocnetv1.RegisterContactServiceServer(srv, contactSrv{bell: e.bell})
	pocnetv1.RegisterAuditServiceServer(srv, auditSrv{bell: e.bell})
	pocnetv1.RegisterFederationServiceServer(srv, pocnetv1.UnimplementedFederationServiceServer{})
	pocnetv1.RegisterDirectoryServiceServer(srv, pocnetv1.UnimplementedDirectoryServiceServer{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		e.authz.Run(ctx)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
		cancel()
		<-ran
	})
	return e
}

// dial connects to XAA's node presenting cert. The client trusts XAA's
// node whatever the test does to the directory, so that every refusal seen
// is the server's.
func (e *env) dial(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	d, err := directory.New(e.f.Directory)
	if err != nil {
		t.Fatal(err)
	}
	cfg := identity.ClientConfig(cert, identity.Static{B: d.Bundle()}, identity.Node(e.f.ID, "XAA"), nil)
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// set puts in force the generated directory as changed by mutate.
func (e *env) set(t *testing.T, mutate func(*pocnetv1.Directory)) {
	t.Helper()
	pb := proto.Clone(e.f.Directory).(*pocnetv1.Directory)
	mutate(pb)
	d, err := directory.New(pb)
	if err != nil {
		t.Fatal(err)
	}
	e.src.Set(d)
}

func member(pb *pocnetv1.Directory, state string) *pocnetv1.Member {
	for _, m := range pb.Members {
		if m.State == state {
			return m
		}
	}
	panic("no member " + state)
}

func revoke(state string, c *certs.Issued, reason string) func(*pocnetv1.Directory) {
	return func(pb *pocnetv1.Directory) {
		fp := sha256.Sum256(c.Cert.Raw)
		m := member(pb, state)
		m.RevokedCertificates = append(m.RevokedCertificates, &pocnetv1.RevokedCertificate{
			Sha256: fp[:], RevokedAt: timestamppb.New(time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)), Reason: reason,
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return c
}

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("got %v %q; want %v containing %q", st.Code(), st.Message(), code, msg)
	}
}

func TestWhoMayCallWhat(t *testing.T) {
	e := start(t)
	xaa, xbb := e.f.State("XAA"), e.f.State("XBB")
	ca := xaa.CA
	consular, err := ca.Issue(identity.Operator(e.f.ID, "XAA", "consular", "desk"), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	callers := map[string]*tls.Certificate{
		"XBB node":      &xbb.Node.TLS,
		"XAA node":      &xaa.Node.TLS,
		"XAA admin":     &xaa.Operator("admin").TLS,
		"XAA technical": &xaa.Operator("technical").TLS,
		"XAA unlisted":  &consular.TLS,
	}
	conns := map[string]*grpc.ClientConn{}
	for name, c := range callers {
		conns[name] = e.dial(t, c)
	}
	const ok, unimpl = codes.OK, codes.Unimplemented
	tests := []struct {
		caller, method string
		code           codes.Code
		msg            string
	}{
		{"XBB node", "/pocnet.v1.FederationService/GetVersions", unimpl, ""},
		{"XAA node", "/pocnet.v1.FederationService/Offer", unimpl, ""},
		{"XAA admin", "/pocnet.v1.FederationService/Offer", codes.PermissionDenied,
			"is not a node; only member nodes may call FederationService"},
		{"XBB node", "/pocnet.v1.RelayService/Ping", ok, ""},
		{"XAA technical", "/pocnet.v1.RelayService/Ping", codes.PermissionDenied, "only member nodes may call RelayService"},

		{"XAA technical", "/pocnet.v1.DirectoryService/GetHistory", unimpl, ""},
		{"XAA technical", "/pocnet.v1.DirectoryService/GetVersion", unimpl, ""},
		{"XAA technical", "/pocnet.v1.DirectoryService/ListProposals", unimpl, ""},
		{"XAA admin", "/pocnet.v1.DirectoryService/GetHistory", unimpl, ""},
		{"XAA unlisted", "/pocnet.v1.DirectoryService/GetHistory", codes.PermissionDenied,
			`role "consular" of spiffe://pocnet.example/state/XAA/operator/consular/desk is neither admin nor a point of contact XAA lists`},
		{"XBB node", "/pocnet.v1.DirectoryService/GetHistory", codes.PermissionDenied,
			"is not an operator; only operators of XAA may call DirectoryService"},
		{"XAA node", "/pocnet.v1.DirectoryService/GetVersion", codes.PermissionDenied, "is not an operator"},
	}
	for _, m := range []string{"UpdateEntry", "RotateKeys", "Propose", "Sign", "Object"} {
		method := "/pocnet.v1.DirectoryService/" + m
		tests = append(tests,
			struct {
				caller, method string
				code           codes.Code
				msg            string
			}{"XAA admin", method, unimpl, ""},
			struct {
				caller, method string
				code           codes.Code
				msg            string
			}{"XAA technical", method, codes.PermissionDenied,
				"spiffe://pocnet.example/state/XAA/operator/technical/duty-officer is not an admin; changing the directory is a decision of XAA, and only its admin operators may call " + method},
		)
	}
	for _, tt := range tests {
		t.Run(tt.caller+" "+tt.method, func(t *testing.T) {
			err := conns[tt.caller].Invoke(ctx(t), tt.method, &pocnetv1.PingRequest{}, &pocnetv1.PingResponse{})
			wantStatus(t, err, tt.code, tt.msg)
		})
	}
}

// TestUnaryCallsFollowTheDirectory: an open connection is refused from its
// next call on when the directory in force no longer trusts it, and
// accepted again when one does.
func TestUnaryCallsFollowTheDirectory(t *testing.T) {
	e := start(t)
	xbb := e.f.State("XBB")
	relay := pocnetv1.NewRelayServiceClient(e.dial(t, &xbb.Node.TLS))
	ping := func() error {
		_, err := relay.Ping(ctx(t), &pocnetv1.PingRequest{})
		return err
	}
	if err := ping(); err != nil {
		t.Fatal(err)
	}
	newCA, err := certs.NewCA(e.f.ID, "XBB", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		mutate func(*pocnetv1.Directory)
		code   codes.Code
		msg    string
	}{
		{"XBB revokes its node's certificate", revoke("XBB", xbb.Node, "key compromise"), codes.Unauthenticated,
			`untrusted peer: spiffe://pocnet.example/state/XBB/node: certificate "CN=XBB node,O=XBB" (sha256:`},
		{"another directory, the revocation kept", func(pb *pocnetv1.Directory) {
			revoke("XBB", xbb.Node, "key compromise")(pb)
			member(pb, "XCC").Name = "renamed"
		}, codes.Unauthenticated, ") was revoked by XBB at 2030-03-01T12:00:00Z: key compromise"},
		{"revocation withdrawn", func(*pocnetv1.Directory) {}, codes.OK, ""},
		{"XBB leaves", func(pb *pocnetv1.Directory) {
			pb.Members = []*pocnetv1.Member{member(pb, "XAA"), member(pb, "XCC")}
		}, codes.PermissionDenied, "XBB is not a member of the directory"},
		{"XBB back", func(*pocnetv1.Directory) {}, codes.OK, ""},
		{"XBB replaces its CA", func(pb *pocnetv1.Directory) {
			member(pb, "XBB").CaCertificates = []string{string(newCA.CertPEM)}
		}, codes.Unauthenticated, "chain does not verify against the CA of XBB"},
		{"XCC revoking XBB's certificate changes nothing", revoke("XCC", xbb.Node, "not XCC's to revoke"), codes.OK, ""},
	}
	for _, s := range steps {
		e.set(t, s.mutate)
		// The same call twice: the second is answered from the
		// connection's cached check, and must agree.
		for range 2 {
			wantStatus(t, ping(), s.code, s.msg)
		}
		if t.Failed() {
			t.Fatalf("after %q", s.name)
		}
	}
}

func TestRevokedCertificateRefusedAtHandshake(t *testing.T) {
	e := start(t)
	xbb := e.f.State("XBB")
	e.set(t, revoke("XBB", xbb.Node, "key compromise"))
	_, err := pocnetv1.NewRelayServiceClient(e.dial(t, &xbb.Node.TLS)).Ping(ctx(t), &pocnetv1.PingRequest{})
	// The server refused the handshake: no call ran. What the client reads
	// (the alert, or a reset) depends on timing; the reason is the server's
	// (identity's handshake tests assert it).
	wantStatus(t, err, codes.Unavailable, "")
}

// TestRunningStreamsCut: a stream already running ends, with the reason,
// when a new directory revokes its caller's certificate; other streams go
// on; later calls on the same connection are refused.
func TestRunningStreamsCut(t *testing.T) {
	e := start(t)
	xaa := e.f.State("XAA")
	techConn, adminConn := e.dial(t, &xaa.Operator("technical").TLS), e.dial(t, &xaa.Operator("admin").TLS)
	tech, admin := pocnetv1.NewContactServiceClient(techConn), pocnetv1.NewContactServiceClient(adminConn)
	watch := func(c pocnetv1.ContactServiceClient) grpc.ServerStreamingClient[pocnetv1.WatchEventsResponse] {
		t.Helper()
		s, err := c.WatchEvents(ctx(t), &pocnetv1.WatchEventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := s.Recv(); err != nil || r.GetEvent().GetSeq() != 1 {
			t.Fatalf("first event: %v, %v", r, err)
		}
		return s
	}
	techWatch, adminWatch := watch(tech), watch(admin)
	if n := e.authz.Streams(); n != 2 {
		t.Fatalf("%d streams registered, want 2", n)
	}

	e.set(t, revoke("XAA", xaa.Operator("technical"), "left the service"))

	_, err := techWatch.Recv()
	wantStatus(t, err, codes.Unauthenticated, ") was revoked by XAA at 2030-03-01T12:00:00Z: left the service")
	if n := e.authz.Streams(); n != 1 {
		t.Errorf("%d streams registered after one ended, want 1", n)
	}
	e.bell.Ring()
	if r, err := adminWatch.Recv(); err != nil || r.GetEvent().GetSeq() != 2 {
		t.Fatalf("the admin's stream: %v, %v", r, err)
	}
	_, err = tech.GetNodeStatus(ctx(t), &pocnetv1.GetNodeStatusRequest{})
	wantStatus(t, err, codes.Unauthenticated, "was revoked by XAA")
	if _, err := admin.GetNodeStatus(ctx(t), &pocnetv1.GetNodeStatusRequest{}); err != nil {
		t.Fatal(err)
	}
	// A new stream on the same connection is refused outright.
	s, err := tech.WatchEvents(ctx(t), &pocnetv1.WatchEventsRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	wantStatus(t, err, codes.Unauthenticated, "was revoked by XAA")
}

// TestStreamCutWhenRoleRemoved: a change that keeps the certificate but
// takes away the caller's right to the method ends its stream too.
func TestStreamCutWhenRoleRemoved(t *testing.T) {
	e := start(t)
	tech := pocnetv1.NewContactServiceClient(e.dial(t, &e.f.State("XAA").Operator("technical").TLS))
	s, err := tech.WatchEvents(ctx(t), &pocnetv1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	e.set(t, func(pb *pocnetv1.Directory) {
		m := member(pb, "XAA")
		var kept []*pocnetv1.PointOfContact
		for _, p := range m.PointsOfContact {
			if p.Role != "technical" {
				kept = append(kept, p)
			}
		}
		m.PointsOfContact = kept
	})
	_, err = s.Recv()
	wantStatus(t, err, codes.PermissionDenied, `role "technical" of spiffe://pocnet.example/state/XAA/operator/technical/duty-officer is neither admin nor a point of contact XAA lists`)
}

// TestStreamIgnoringItsContextCut: a handler that never looks at its
// context still ends, at its next send.
func TestStreamIgnoringItsContextCut(t *testing.T) {
	e := start(t)
	adm := e.f.State("XAA").Operator("admin")
	s, err := pocnetv1.NewAuditServiceClient(e.dial(t, &adm.TLS)).ExportAudit(ctx(t), &pocnetv1.ExportAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	e.set(t, revoke("XAA", adm, "key compromise"))
	// Sends made before Run ended the stream still arrive; the first send
	// after it fails and ends the handler.
	for err == nil {
		e.bell.Ring()
		_, err = s.Recv()
	}
	wantStatus(t, err, codes.Unauthenticated, "was revoked by XAA at 2030-03-01T12:00:00Z: key compromise")
}
