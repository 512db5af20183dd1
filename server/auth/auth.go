// Package auth reads the caller's identity once per call from the verified
// TLS peer certificate and decides which identities may call which service:
// nodes of member states call RelayService and FederationService; operators
// of the node's own state call ContactService, RecordService and
// DirectoryService, each acting for a PoC role its state lists (or admin);
// only admins may disclose a thread or change the directory, and only
// admins call AuditService. Handlers read the identity from the context and
// never look at TLS.
//
// Trust follows the directory in force, not the one a connection was made
// under. Every call re-checks its connection's verified chain against the
// directory in force when that differs from the one the connection was last
// checked against (a pointer comparison otherwise), so a caller whose
// certificate was revoked, whose CA was replaced or whose state left the
// directory is refused from its next call on. Streams already running are
// ended by Run as soon as a new directory makes their caller untrusted.
package auth

import (
	"context"
	"crypto/x509"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
)

// Services and the identities allowed to call them.
const (
	relayPrefix      = "/pocnet.v1.RelayService/"
	federationPrefix = "/pocnet.v1.FederationService/"
	contactPrefix    = "/pocnet.v1.ContactService/"
	directoryPrefix  = "/pocnet.v1.DirectoryService/"
	auditPrefix      = "/pocnet.v1.AuditService/"
	healthPrefix     = "/grpc.health.v1.Health/"
)

// maxConns bounds the per-connection cache. Past it the cache is emptied
// and connections are verified again on their next call, which costs one
// verification each, not correctness.
const maxConns = 4096

// Authorizer checks callers against the node's own identity and the
// directory in force. Its zero internals are ready; Run must be running for
// streams to be ended when the directory changes.
type Authorizer struct {
	Self      identity.ID
	Directory *directory.Source
	Logger    *zap.Logger
	// Now is the clock certificates are checked at; default time.Now.
	Now func() time.Time

	// conns maps a connection's verified leaf (*x509.Certificate, one per
	// handshake) to the outcome of its last check (*checked).
	conns  sync.Map
	nconns atomic.Int64

	mu      sync.Mutex
	streams map[*stream]struct{}
}

// checked is the outcome of checking one connection's chain against one
// directory. It is immutable; a new check stores a new one.
type checked struct {
	dir   *directory.Directory
	chain []*x509.Certificate
	// until is when the earliest certificate of the chain expires: the
	// outcome holds until then.
	until time.Time
	id    identity.ID
	err   error // a status error, or nil
}

func (a *Authorizer) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Authorizer) log() *zap.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return zap.NewNop()
}

// chain returns the caller's chain, verified in the handshake.
func chain(ctx context.Context) ([]*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "the connection is not mutual TLS")
	}
	if !ti.State.HandshakeComplete || len(ti.State.PeerCertificates) == 0 {
		return nil, status.Error(codes.Unauthenticated, "no verified peer certificate")
	}
	return ti.State.PeerCertificates, nil
}

func sameChain(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// trusted returns the identity of a connection's chain as dir sees it.
// The chain was verified in the handshake, against the directory then in
// force; it is verified again only when dir is another one (or a
// certificate has expired since), so the common call costs a map lookup
// and a pointer comparison.
func (a *Authorizer) trusted(certs []*x509.Certificate, dir *directory.Directory, now time.Time) (identity.ID, error) {
	if v, ok := a.conns.Load(certs[0]); ok {
		c := v.(*checked)
		if c.dir == dir && sameChain(c.chain, certs) && !now.After(c.until) {
			return c.id, c.err
		}
	}
	c := &checked{dir: dir, chain: certs, until: certs[0].NotAfter}
	for _, cert := range certs[1:] {
		if cert.NotAfter.Before(c.until) {
			c.until = cert.NotAfter
		}
	}
	c.id, c.err = verify(certs, dir, a.Self, now)
	if _, loaded := a.conns.Swap(certs[0], c); !loaded && a.nconns.Add(1) > maxConns {
		a.conns.Clear()
		a.nconns.Store(0)
	}
	return c.id, c.err
}

// verify is the handshake's check (identity.VerifyClient) against dir, as
// a status: PermissionDenied for a state that is no longer a member,
// Unauthenticated for a chain that no longer verifies (revoked, CA
// replaced, expired), with the reason.
func verify(certs []*x509.Certificate, dir *directory.Directory, self identity.ID, now time.Time) (identity.ID, error) {
	id, err := identity.FromCertificate(certs[0])
	if err != nil {
		return identity.ID{}, status.Error(codes.Unauthenticated, err.Error())
	}
	if _, ok := dir.Member(id.State); !ok {
		return id, status.Errorf(codes.PermissionDenied, "%s is not a member of the directory", id.State)
	}
	if _, err := identity.VerifyClient(certs, dir.Bundle(), self, now); err != nil {
		return id, status.Error(codes.Unauthenticated, err.Error())
	}
	return id, nil
}

// decide returns the caller's identity, or a PermissionDenied /
// Unauthenticated status naming what is wrong, for a call of method by the
// connection presenting certs, under dir.
func (a *Authorizer) decide(certs []*x509.Certificate, method string, dir *directory.Directory) (identity.ID, error) {
	id, err := a.trusted(certs, dir, a.now())
	if err != nil {
		return id, err
	}
	return id, a.allowed(id, method, dir)
}

// allowed applies the table of who may call what.
func (a *Authorizer) allowed(id identity.ID, method string, dir *directory.Directory) error {
	switch {
	case strings.HasPrefix(method, relayPrefix), strings.HasPrefix(method, federationPrefix):
		if id.Kind != identity.KindNode {
			return status.Errorf(codes.PermissionDenied, "%s is not a node; only member nodes may call %s", id, service(method))
		}
		if _, ok := dir.Member(id.State); !ok {
			return status.Errorf(codes.PermissionDenied, "%s is not a member of the directory", id.State)
		}
	case strings.HasPrefix(method, contactPrefix), strings.HasPrefix(method, recordPrefix), strings.HasPrefix(method, directoryPrefix):
		if id.Kind != identity.KindOperator {
			return status.Errorf(codes.PermissionDenied, "%s is not an operator; only operators of %s may call %s", id, a.Self.State, service(method))
		}
		if id.State != a.Self.State {
			return status.Errorf(codes.PermissionDenied, "%s is an operator of %s; this node serves operators of %s only", id, id.State, a.Self.State)
		}
		if !id.IsAdmin() {
			if _, ok := dir.PointOfContact(a.Self.State, id.Role); !ok {
				return status.Errorf(codes.PermissionDenied, "role %q of %s is neither admin nor a point of contact %s lists", id.Role, id, a.Self.State)
			}
		}
		if what, ok := adminOnly[method]; ok && !id.IsAdmin() {
			return status.Errorf(codes.PermissionDenied, "%s is not an admin; %s is a decision of %s, and only its admin operators may call %s", id, what, a.Self.State, method)
		}
	case strings.HasPrefix(method, auditPrefix):
		// The audit log shows every operator's actions: the node's own
		// admins read it, no PoC role, no other state, no node.
		if !id.IsAdmin() || id.State != a.Self.State {
			return status.Errorf(codes.PermissionDenied, "%s is not an admin operator of %s; only admin operators of %s may call AuditService", id, a.Self.State, a.Self.State)
		}
	case strings.HasPrefix(method, healthPrefix):
		// Any verified member node or own operator may check health.
	default:
		// Reflection and anything else: the node's own operators only.
		if id.Kind != identity.KindOperator || id.State != a.Self.State {
			return status.Errorf(codes.PermissionDenied, "%s may not call %s", id, method)
		}
	}
	return nil
}

// authorize reads the caller's chain from ctx and decides.
func (a *Authorizer) authorize(ctx context.Context, method string) (identity.ID, []*x509.Certificate, error) {
	certs, err := chain(ctx)
	if err != nil {
		return identity.ID{}, nil, err
	}
	id, err := a.decide(certs, method, a.Directory.Directory())
	return id, certs, err
}

// Unary is the unary server interceptor.
func (a *Authorizer) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id, _, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		a.log().Warn("call refused", zap.String("method", info.FullMethod), zap.String("caller", id.String()), zap.Error(err))
		return nil, err
	}
	return handler(identity.NewContext(ctx, id), req)
}

// Stream is the stream server interceptor. A stream runs for as long as
// its caller stays trusted: when the directory changes so that it is not,
// Run cancels the stream's context, its sends and receives fail, and it
// ends with the status naming why.
func (a *Authorizer) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id, certs, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		a.log().Warn("call refused", zap.String("method", info.FullMethod), zap.String("caller", id.String()), zap.Error(err))
		return err
	}
	ctx, cancel := context.WithCancelCause(ss.Context())
	defer cancel(nil)
	st := &stream{method: info.FullMethod, chain: certs, id: id, cancel: cancel}
	a.register(st)
	defer a.unregister(st)
	err = handler(srv, &wrapped{ServerStream: ss, ctx: identity.NewContext(ctx, id), st: st})
	if r := st.refusal(); r != nil {
		// Whatever the handler made of its cancelled context, the caller
		// learns why the stream ended.
		return r
	}
	return err
}

// stream is a running stream and what it was authorized with.
type stream struct {
	method string
	chain  []*x509.Certificate
	id     identity.ID
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	dir     *directory.Directory // last checked against
	refused error
}

func (s *stream) refusal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// recheck decides again for s under the directory in force, unless s was
// already checked against it, and ends s if it is refused now.
func (a *Authorizer) recheck(s *stream) {
	dir := a.Directory.Directory()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused != nil || s.dir == dir {
		return
	}
	s.dir = dir
	if _, err := a.decide(s.chain, s.method, dir); err != nil {
		s.refused = err
		s.cancel(err)
		a.log().Warn("stream ended: the directory in force no longer lets its caller call it",
			zap.String("method", s.method), zap.String("caller", s.id.String()), zap.Error(err))
	}
}

func (a *Authorizer) register(s *stream) {
	a.mu.Lock()
	if a.streams == nil {
		a.streams = make(map[*stream]struct{})
	}
	a.streams[s] = struct{}{}
	a.mu.Unlock()
	// The stream was authorized before it was registered: a directory put
	// in force in between, whose sweep did not see the stream, is checked
	// here. (Set stores the new directory before waking Run, so one of the
	// two sees it.)
	a.recheck(s)
}

func (a *Authorizer) unregister(s *stream) {
	a.mu.Lock()
	delete(a.streams, s)
	a.mu.Unlock()
}

// Run ends running streams whose caller a new directory no longer trusts
// (or no longer lets call that method), each time the directory in force
// changes, until ctx is done. The node runs it for as long as it serves.
func (a *Authorizer) Run(ctx context.Context) {
	for {
		// Changed is taken before the sweep reads the directory, so that a
		// change during the sweep wakes the next one.
		changed := a.Directory.Changed()
		a.sweep()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func (a *Authorizer) sweep() {
	a.mu.Lock()
	running := make([]*stream, 0, len(a.streams))
	for s := range a.streams {
		running = append(running, s)
	}
	a.mu.Unlock()
	for _, s := range running {
		a.recheck(s)
	}
}

// Streams returns the number of streams running; for tests and status.
func (a *Authorizer) Streams() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.streams)
}

type wrapped struct {
	grpc.ServerStream
	ctx context.Context
	st  *stream
}

func (w *wrapped) Context() context.Context { return w.ctx }

// SendMsg refuses to send once the stream's caller is refused, so that a
// handler that does not watch its context still ends.
func (w *wrapped) SendMsg(m any) error {
	if err := w.st.refusal(); err != nil {
		return err
	}
	return w.ServerStream.SendMsg(m)
}

// RecvMsg is SendMsg's counterpart for what the caller sends.
func (w *wrapped) RecvMsg(m any) error {
	if err := w.st.refusal(); err != nil {
		return err
	}
	return w.ServerStream.RecvMsg(m)
}

// Caller returns the identity the interceptor put in ctx. Handlers behind
// the interceptor always have one; its absence is a wiring bug.
func Caller(ctx context.Context) (identity.ID, error) {
	id, ok := identity.FromContext(ctx)
	if !ok {
		return identity.ID{}, status.Error(codes.Unauthenticated, "no verified caller identity")
	}
	return id, nil
}
