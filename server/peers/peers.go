// Package peers is the client side of node-to-node calls: one gRPC
// connection per peer node, dialed lazily over mutual TLS that accepts only
// that peer state's node identity, verified against that state's CA, and
// shared by RelayService and every other node-to-node service (Conn).
//
// A connection lives only as long as the directory in force trusts it: when
// the directory changes, the transport verifies again the chain each open
// connection's server presented, and closes a connection whose chain no
// longer verifies (revoked, CA replaced) or whose peer is no longer a member
// or has moved. The next call dials again, and its handshake is checked
// against the new directory.
package peers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/grpcconf"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// MaxMessageSize bounds what a node sends or accepts in one call.
const MaxMessageSize = 64 << 20

// ErrNoPeer is returned (wrapped) for a state the directory in force lists
// with no endpoint, including one that is not a member.
var ErrNoPeer = errors.New("not a peer in the directory in force")

// ErrClosed is returned (wrapped) by a Transport after Close.
var ErrClosed = errors.New("peer transport closed")

// Config configures the transport.
type Config struct {
	// Certificate is the node's certificate, presented to peers.
	Certificate *tls.Certificate
	// GetCertificate, if set, is used instead of Certificate and called at
	// each handshake, so that a reloaded certificate is presented to peers
	// from the next connection on (identity.CertFile.Certificate).
	GetCertificate func() *tls.Certificate
	Directory      *directory.Source
	Logger         *zap.Logger
	// Now is the clock peers' certificates are checked at; default time.Now.
	Now func() time.Time
}

// Transport delivers envelopes to peers; it implements relay.Transport.
type Transport struct {
	cfg   Config
	mu    sync.Mutex
	conns map[string]*conn
	// closed is set by Close: no connection is dialed after it.
	closed bool

	kick      chan struct{} // wakes watch to re-check connections
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type conn struct {
	state    string
	endpoint string
	cc       *grpc.ClientConn
	relay    pocnetv1.RelayServiceClient
	// noAhead is set once the peer answered that it does not know
	// DeliverAhead (a node of an earlier build): Deliver is used instead.
	noAhead atomic.Bool

	mu sync.Mutex
	// chain is what the server presented at the last handshake that
	// verified, and bundle what it was verified against.
	chain  []*x509.Certificate
	bundle *identity.Bundle
	// refusedUnder is the bundle under which the last handshake was
	// refused, or nil if it verified. Such a connection backs off before
	// it dials again; under a new directory it is dialed again at once.
	refusedUnder *identity.Bundle
}

// New returns a Transport. It follows the directory until Close.
func New(cfg Config) *Transport {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GetCertificate == nil {
		cert := cfg.Certificate
		cfg.GetCertificate = func() *tls.Certificate { return cert }
	}
	t := &Transport{
		cfg: cfg, conns: map[string]*conn{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go t.watch()
	return t
}

// conn returns the connection to state's node, dialing it if there is none
// or the directory moved the peer.
func (t *Transport) conn(state string) (*conn, error) {
	dir := t.cfg.Directory.Directory()
	eps := dir.Endpoints(state)
	if len(eps) == 0 {
		return nil, fmt.Errorf("peer %s: %w", state, ErrNoPeer)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("peer %s: %w", state, ErrClosed)
	}
	if c, ok := t.conns[state]; ok && c.endpoint == eps[0] {
		return c, nil
	} else if ok {
		c.cc.Close() // the directory moved the peer
		delete(t.conns, state)
	}
	c := &conn{state: state, endpoint: eps[0]}
	src := t.cfg.Directory
	tlsCfg := identity.ClientConfigFunc(t.cfg.GetCertificate, src, identity.Node(dir.Federation(), state), t.cfg.Now)
	verify := tlsCfg.VerifyConnection
	tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
		// The bundle is read before verifying, so that what is recorded is
		// at least as old as what verified: a directory put in force in
		// between makes watch check this connection again.
		b := src.Bundle()
		if err := verify(cs); err != nil {
			c.mu.Lock()
			c.refusedUnder = b
			c.mu.Unlock()
			return err
		}
		t.record(c, cs.PeerCertificates, b)
		return nil
	}
	cc, err := grpc.NewClient(eps[0], append(grpcconf.DialOptions(),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		// The relay worker owns retry policy; gRPC's own reconnect backoff is
		// kept short so a returning peer is reachable as soon as it is retried.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second}, MinConnectTimeout: 5 * time.Second}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("peer %s at %s: %w", state, eps[0], err)
	}
	c.cc, c.relay = cc, pocnetv1.NewRelayServiceClient(cc)
	t.conns[state] = c
	return c, nil
}

// record keeps the chain a connection's server presented, for watch to
// verify again when the directory changes.
func (t *Transport) record(c *conn, chain []*x509.Certificate, b *identity.Bundle) {
	c.mu.Lock()
	c.chain, c.bundle, c.refusedUnder = chain, b, nil
	c.mu.Unlock()
	if t.cfg.Directory.Bundle() != b {
		// A new directory came into force during this handshake, perhaps
		// after watch looked at this connection.
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
}

// watch re-checks open connections at each change of the directory.
func (t *Transport) watch() {
	defer close(t.done)
	changed := t.cfg.Directory.Changed()
	for {
		select {
		case <-t.stop:
			return
		case <-changed:
		case <-t.kick:
		}
		// Taken before recheck reads the directory, so that a change made
		// while it runs wakes the next one.
		changed = t.cfg.Directory.Changed()
		t.recheck()
	}
}

// recheck closes every connection the directory in force no longer
// trusts. Calls running on it fail; the next call dials again. It also
// closes a connection whose last handshake was refused under an older
// directory, so that a peer the new one trusts again is dialed at once
// rather than after the connection's backoff.
func (t *Transport) recheck() {
	dir := t.cfg.Directory.Directory()
	b := dir.Bundle()
	now := t.cfg.Now()
	type closing struct {
		c      *conn
		why    error
		redial bool
	}
	var stale []closing
	t.mu.Lock()
	for state, c := range t.conns {
		redial, why := t.untrusted(c, dir, b, now)
		if why != nil || redial {
			delete(t.conns, state)
			stale = append(stale, closing{c, why, redial})
		}
	}
	t.mu.Unlock()
	// Closed outside the lock: Close waits for the connection's goroutines.
	for _, s := range stale {
		s.c.cc.Close()
		if s.why != nil {
			t.cfg.Logger.Warn("connection to peer closed: the directory in force no longer trusts it",
				zap.String("peer", s.c.state), zap.String("endpoint", s.c.endpoint), zap.Error(s.why))
		} else {
			t.cfg.Logger.Info("connection to peer closed, to be dialed again under the new directory: its last handshake was refused",
				zap.String("peer", s.c.state), zap.String("endpoint", s.c.endpoint))
		}
	}
}

// untrusted says why c may not be used under dir, or whether it should be
// dialed again (redial) although nothing is wrong with it.
func (t *Transport) untrusted(c *conn, dir *directory.Directory, b *identity.Bundle, now time.Time) (redial bool, why error) {
	eps := dir.Endpoints(c.state)
	if len(eps) == 0 {
		return false, fmt.Errorf("peer %s: %w", c.state, ErrNoPeer)
	}
	if eps[0] != c.endpoint {
		return false, fmt.Errorf("peer %s moved from %s to %s", c.state, c.endpoint, eps[0])
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refusedUnder != nil {
		return c.refusedUnder != b, nil
	}
	if c.chain == nil || c.bundle == b {
		// Not connected yet (its handshake will use the directory in
		// force), or already checked against this directory.
		return false, nil
	}
	if err := identity.VerifyServer(c.chain, b, identity.Node(dir.Federation(), c.state), now); err != nil {
		return false, err
	}
	c.bundle = b
	return false, nil
}

// Conn returns the connection to state's node, for node-to-node services
// other than RelayService (FederationService). It is shared with Deliver
// and Ping, and stays usable: each call goes over the connection in use at
// that time, dialed again if the transport closed the previous one after a
// change of the directory. It fails if state is not a peer in the
// directory in force.
func (t *Transport) Conn(state string) (grpc.ClientConnInterface, error) {
	if _, err := t.conn(state); err != nil {
		return nil, err
	}
	return peerConn{t: t, state: state}, nil
}

type peerConn struct {
	t     *Transport
	state string
}

func unavailable(err error) error {
	if errors.Is(err, ErrNoPeer) {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

// Invoke implements grpc.ClientConnInterface.
func (p peerConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	c, err := p.t.conn(p.state)
	if err != nil {
		return unavailable(err)
	}
	return c.cc.Invoke(ctx, method, args, reply, opts...)
}

// NewStream implements grpc.ClientConnInterface.
func (p peerConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c, err := p.t.conn(p.state)
	if err != nil {
		return nil, unavailable(err)
	}
	return c.cc.NewStream(ctx, desc, method, opts...)
}

// Deliver implements relay.Transport. Envelopes not yet durable here
// (ready is not nil) go ahead over DeliverAhead, so that the peer checks
// them while this node's sync runs; a peer of an earlier build gets them
// over Deliver once they are durable.
func (t *Transport) Deliver(ctx context.Context, peer string, envs []*pocnetv1.Envelope, ready func(context.Context) error) ([]*pocnetv1.DeliveryResult, error) {
	c, err := t.conn(peer)
	if err != nil {
		return nil, err
	}
	if ready != nil && !c.noAhead.Load() {
		results, err := deliverAhead(ctx, c, envs, ready)
		if status.Code(err) != codes.Unimplemented {
			return results, err
		}
		c.noAhead.Store(true)
		t.cfg.Logger.Info("peer does not take envelopes ahead of their sync (an earlier build); delivering them once durable",
			zap.String("peer", peer), zap.String("endpoint", c.endpoint))
	}
	if ready != nil {
		if err := ready(ctx); err != nil {
			return nil, err
		}
	}
	resp, err := c.relay.Deliver(ctx, deliverRequest(envs))
	if err != nil {
		return nil, err
	}
	return resp.GetResults(), nil
}

// deliverRequest carries envs with each sealing context's encapsulated
// key once, not once per envelope.
func deliverRequest(envs []*pocnetv1.Envelope) *pocnetv1.DeliverRequest {
	envs, keys := envelope.SplitKeys(envs)
	return &pocnetv1.DeliverRequest{Envelopes: envs, EncapsulatedKeys: keys}
}

// deliverAhead sends envs over DeliverAhead, then the word that they are
// durable once ready says so. If ready fails the call is cancelled, and
// the peer stores nothing.
func deliverAhead(ctx context.Context, c *conn, envs []*pocnetv1.Envelope, ready func(context.Context) error) ([]*pocnetv1.DeliveryResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.relay.DeliverAhead(ctx)
	if err != nil {
		return nil, err
	}
	// A send fails with io.EOF when the peer ended the call; its status
	// then comes from CloseAndRecv.
	err = st.Send(&pocnetv1.DeliverAheadRequest{Step: &pocnetv1.DeliverAheadRequest_Envelopes{Envelopes: deliverRequest(envs)}})
	if err == nil {
		if err := ready(ctx); err != nil {
			return nil, err
		}
		err = st.Send(&pocnetv1.DeliverAheadRequest{Step: &pocnetv1.DeliverAheadRequest_Durable{Durable: &pocnetv1.Durable{}}})
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	resp, err := st.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	return resp.GetResults(), nil
}

// Ping calls peer's Ping, telling it this node is up.
func (t *Transport) Ping(ctx context.Context, peer string) error {
	c, err := t.conn(peer)
	if err != nil {
		return err
	}
	_, err = c.relay.Ping(ctx, &pocnetv1.PingRequest{})
	return err
}

// Close stops following the directory and closes every connection. Calls
// after it fail with ErrClosed.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		close(t.stop)
		<-t.done
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	var errs []error
	for s, c := range t.conns {
		errs = append(errs, c.cc.Close())
		delete(t.conns, s)
	}
	return errors.Join(errs...)
}

// Redial closes every connection, so that the next call to each peer
// handshakes again: after the node's own certificate changed, peers see the
// new one at once rather than only on connections opened later (an old
// certificate may be about to be revoked).
func (t *Transport) Redial() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s, c := range t.conns {
		c.cc.Close()
		delete(t.conns, s)
	}
}
