package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/grpcconf"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Floor is the reference relay: two hops, XAA and XBB, that do nothing but
// what durable two-hop relay over mutual TLS cannot avoid. A client calls
// RelayService.Deliver on XAA; XAA writes each envelope with one synced
// Pebble write, forwards the call to XBB and answers when XBB has answered;
// XBB writes with one synced Pebble write and announces the envelope id to
// its watchers, which hold a ContactService.WatchEvents stream. There is no
// signing, no policy, no index, no outbox and no retry: whatever pocnet
// spends beyond the Floor is the price of those.
type Floor struct {
	fed  *certs.Federation
	src  identity.Source
	hops []*hop
	// conns are the clients the Floor dialed itself (XAA to XBB) and every
	// client handed out by Dial, closed by Close.
	mu    sync.Mutex
	conns []*grpc.ClientConn
}

// hop is one node of the Floor.
type hop struct {
	pocnetv1.UnimplementedRelayServiceServer
	pocnetv1.UnimplementedContactServiceServer

	state string
	addr  string
	db    *pebble.DB
	srv   *grpc.Server
	// next is the hop the envelopes go on to; nil on the last hop, which
	// announces them to its watchers instead.
	next pocnetv1.RelayServiceClient

	mu       sync.Mutex
	watchers map[*watcher]struct{}
}

// watcher is one WatchEvents stream of the last hop.
type watcher struct {
	ids  chan string
	done <-chan struct{} // the stream's context
}

// StartFloor generates the certificates of two states, opens one Pebble
// database per hop under dir and serves both hops on 127.0.0.1 with the same
// TLS 1.3 configuration as a pocnet node (identity.ServerConfig and
// identity.ClientConfig) and the same gRPC transport settings (grpcconf),
// so that handshakes, record encryption and flow control cost the same as
// in pocnet.
func StartFloor(dir string) (_ *Floor, err error) {
	fed, err := certs.Generate(certs.Options{Count: 2})
	if err != nil {
		return nil, err
	}
	cas := map[string][]*x509.Certificate{}
	for _, st := range fed.States {
		cas[st.Code] = []*x509.Certificate{st.CA.Cert}
	}
	f := &Floor{fed: fed, src: identity.Static{B: identity.NewBundle(fed.ID, cas)}}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	// Start the last hop first so that the first can dial it.
	for i := len(fed.States) - 1; i >= 0; i-- {
		st := fed.States[i]
		h := &hop{state: st.Code, watchers: map[*watcher]struct{}{}}
		f.hops = append([]*hop{h}, f.hops...)
		// Pebble with its default options, as the pocnet store opens it.
		if h.db, err = pebble.Open(filepath.Join(dir, st.Code), &pebble.Options{Logger: quietLogger{}}); err != nil {
			return nil, fmt.Errorf("floor: open store of %s: %w", st.Code, err)
		}
		if i+1 < len(fed.States) {
			next := f.hops[1]
			cc, err := f.dial(next.state, &st.Node.TLS)
			if err != nil {
				return nil, err
			}
			h.next = pocnetv1.NewRelayServiceClient(cc)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("floor: listen: %w", err)
		}
		h.addr = lis.Addr().String()
		h.srv = grpc.NewServer(append(grpcconf.ServerOptions(), grpc.Creds(credentials.NewTLS(identity.ServerConfig(&st.Node.TLS, f.src, identity.Node(fed.ID, st.Code), nil))))...)
		pocnetv1.RegisterRelayServiceServer(h.srv, h)
		pocnetv1.RegisterContactServiceServer(h.srv, h)
		go h.srv.Serve(lis)
	}
	return f, nil
}

// States returns the codes of the first and the last hop.
func (f *Floor) States() (first, last string) {
	return f.hops[0].state, f.hops[len(f.hops)-1].state
}

// Dial connects to the hop of state as that state's operator acting for
// role, as an operator's client connects to a pocnet node. Close closes the
// connection.
func (f *Floor) Dial(state, role string) (*grpc.ClientConn, error) {
	st := f.fed.State(state)
	if st == nil {
		return nil, fmt.Errorf("floor: no state %s", state)
	}
	op := st.Operator(role)
	if op == nil {
		return nil, fmt.Errorf("floor: %s has no operator for role %q", state, role)
	}
	return f.dial(state, &op.TLS)
}

func (f *Floor) dial(state string, cert *tls.Certificate) (*grpc.ClientConn, error) {
	var addr string
	for _, h := range f.hops {
		if h.state == state {
			addr = h.addr
		}
	}
	tlsCfg := identity.ClientConfig(cert, f.src, identity.Node(f.fed.ID, state), nil)
	cc, err := grpc.NewClient(addr, append(grpcconf.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))...)
	if err != nil {
		return nil, fmt.Errorf("floor: dial %s: %w", state, err)
	}
	f.mu.Lock()
	f.conns = append(f.conns, cc)
	f.mu.Unlock()
	return cc, nil
}

// Close stops both hops and closes their databases and every connection.
func (f *Floor) Close() {
	f.mu.Lock()
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for _, cc := range conns {
		cc.Close()
	}
	for _, h := range f.hops {
		if h.srv != nil {
			h.srv.Stop()
		}
		if h.db != nil {
			if err := h.db.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "floor: close store of %s: %v\n", h.state, err)
			}
		}
	}
}

// Deliver stores the envelopes and passes them on. The header is read only
// for the envelope id, the key the payload is stored under.
func (h *hop) Deliver(ctx context.Context, req *pocnetv1.DeliverRequest) (*pocnetv1.DeliverResponse, error) {
	ids := make([]string, len(req.GetEnvelopes()))
	b := h.db.NewBatch()
	defer b.Close()
	for i, env := range req.GetEnvelopes() {
		var hd pocnetv1.EnvelopeHeader
		if err := proto.Unmarshal(env.GetHeader(), &hd); err != nil || hd.GetId() == "" {
			return nil, errors.New("floor: envelope without an id")
		}
		ids[i] = hd.GetId()
		if err := b.Set([]byte(hd.GetId()), env.GetPayload(), nil); err != nil {
			return nil, err
		}
	}
	// Synced, as a pocnet node syncs before it acknowledges: the hop answers
	// (or passes the envelope on) only once it is on disk.
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, err
	}
	if h.next != nil {
		return h.next.Deliver(ctx, req)
	}
	h.announce(ids)
	res := &pocnetv1.DeliverResponse{Results: make([]*pocnetv1.DeliveryResult, len(ids))}
	for i, id := range ids {
		res.Results[i] = &pocnetv1.DeliveryResult{EnvelopeId: id}
	}
	return res, nil
}

// announce hands stored ids to every watcher. A watcher that falls behind
// holds up delivery rather than losing an id (the measurement needs them
// all) until its stream ends.
func (h *hop) announce(ids []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		for _, id := range ids {
			select {
			case w.ids <- id:
			case <-w.done:
			}
		}
	}
}

// WatchEvents streams a MESSAGE_RECEIVED event for every envelope the last
// hop stores from now on. It sends the response headers once the watcher is
// registered, so that a client that waits for them misses nothing.
func (h *hop) WatchEvents(_ *pocnetv1.WatchEventsRequest, stream grpc.ServerStreamingServer[pocnetv1.WatchEventsResponse]) error {
	w := &watcher{ids: make(chan string, 1024), done: stream.Context().Done()}
	h.mu.Lock()
	h.watchers[w] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.watchers, w)
		h.mu.Unlock()
	}()
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for {
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case id := <-w.ids:
			ev := &pocnetv1.Event{Type: pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED, MessageId: id}
			if err := stream.Send(&pocnetv1.WatchEventsResponse{Event: ev}); err != nil {
				return err
			}
		}
	}
}

// quietLogger drops Pebble's informational messages and keeps its errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "floor: pebble: "+format+"\n", args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "floor: pebble: "+format+"\n", args...)
	os.Exit(1)
}
