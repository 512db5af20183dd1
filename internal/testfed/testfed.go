// Package testfed starts a development federation of real nodes in the test
// process: real certificates from package certs, real mutual TLS on
// 127.0.0.1, real Pebble directories under the test's temporary folder. It
// is for tests only and must never be imported by production code.
package testfed

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/dirsync"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/grpcconf"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/config"
	"github.com/pocnet/pocnet/server/node"
)

// T is what Start needs of a test: testing.TB has it, and so has the
// stand-in StartMain uses where no test is running yet (a TestMain).
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// StartMain starts a federation from a TestMain, where there is no
// testing.TB. It returns the federation and a stop function that stops the
// nodes and removes their files; a failure is returned as an error.
func StartMain(opts Options) (f *Federation, stop func(), err error) {
	m := &mainT{}
	defer func() {
		if p := recover(); p != nil {
			if fe, ok := p.(mainFatal); ok {
				m.stop()
				f, stop, err = nil, nil, errors.New(string(fe))
				return
			}
			panic(p)
		}
	}()
	opts.Quiet = true
	return Start(m, opts), m.stop, nil
}

type mainFatal string

type mainT struct {
	cleanups []func()
	dirs     []string
}

func (m *mainT) Helper()                           {}
func (m *mainT) Fatalf(format string, args ...any) { panic(mainFatal(fmt.Sprintf(format, args...))) }
func (m *mainT) Cleanup(fn func())                 { m.cleanups = append(m.cleanups, fn) }
func (m *mainT) TempDir() string {
	d, err := os.MkdirTemp("", "testfed-")
	if err != nil {
		m.Fatalf("testfed: %v", err)
	}
	m.dirs = append(m.dirs, d)
	return d
}

func (m *mainT) stop() {
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		m.cleanups[i]()
	}
	for _, d := range m.dirs {
		os.RemoveAll(d)
	}
}

// Options configure Start.
type Options struct {
	// States is the number of member states; 0 means 2.
	States int
	// BaseBackoff and MaxBackoff tune the relay; 0 means 20ms and 1s, so
	// that retries in tests are quick.
	BaseBackoff, MaxBackoff time.Duration
	// Now is every node's clock; nil means time.Now.
	Now func() time.Time
	// Quiet drops node logs instead of sending them to the test log.
	Quiet bool
	// LogCore, if set, also receives every node's log entries, each with
	// the field node (the state), for a test to read (zaptest/observer).
	LogCore zapcore.Core
	// Metrics serves every node's metrics on a port of 127.0.0.1
	// (Node.MetricsAddr).
	Metrics bool
	// Directory, if set, edits the generated directory before the genesis
	// is signed and written (to publish extra, retired or revoked keys,
	// say). The result must still validate, and every state member it lists
	// signs the genesis with the key certs generated for it.
	Directory func(*pocnetv1.Directory)
	// Rule is the genesis's decision rule; nil means certs.DefaultRule().
	Rule *pocnetv1.DecisionRule
	// DirectorySyncInterval is the nodes' directory anti-entropy period;
	// 0 means 500ms, so that a node that missed a push catches up quickly.
	DirectorySyncInterval time.Duration
}

// Federation is a running test federation.
type Federation struct {
	t     T
	opts  Options
	Dir   string
	Certs *certs.Federation
	// Genesis is the genesis every founding node started from, as written
	// to Dir/genesis.json: version 1, signed by every state member.
	Genesis *pocnetv1.SignedVersion
	nodes   map[string]*Node
	// members are the participants made by NewMember, by state.
	members map[string]*certs.Member
}

// Node is one running (or stopped) node.
type Node struct {
	State  string
	Addr   string
	Config *config.Config
	node   *node.Node
}

// Start generates a federation, writes it under t.TempDir() and starts one
// node per state. Nodes are stopped in t.Cleanup.
func Start(t T, opts Options) *Federation {
	t.Helper()
	if opts.States == 0 {
		opts.States = 2
	}
	if opts.DirectorySyncInterval == 0 {
		opts.DirectorySyncInterval = 500 * time.Millisecond
	}
	if opts.BaseBackoff == 0 {
		opts.BaseBackoff = 20 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = time.Second
	}
	gen, err := certs.Generate(certs.Options{Count: opts.States, BasePort: 0, Now: opts.Now, Rule: opts.Rule})
	if err != nil {
		t.Fatalf("testfed: generate: %v", err)
	}
	// Listen first so that the directory can carry the real ports.
	listeners := map[string]net.Listener{}
	for _, m := range gen.Directory.GetMembers() {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testfed: listen: %v", err)
		}
		listeners[m.GetState()] = lis
		m.Endpoints = []string{lis.Addr().String()}
	}
	if opts.Directory != nil {
		opts.Directory(gen.Directory)
	}
	f := &Federation{t: t, opts: opts, Dir: t.TempDir(), Certs: gen, nodes: map[string]*Node{}, members: map[string]*certs.Member{}}
	if err := gen.Write(f.Dir); err != nil {
		t.Fatalf("testfed: write: %v", err)
	}
	if f.Genesis, err = governance.LoadGenesis(filepath.Join(f.Dir, certs.GenesisFile)); err != nil {
		t.Fatalf("testfed: %v", err)
	}
	t.Cleanup(f.StopAll)
	for _, st := range gen.States {
		cfg, err := config.Load(filepath.Join(f.Dir, st.Code, "node", "pocnode.yaml"))
		if err != nil {
			t.Fatalf("testfed: %v", err)
		}
		n := &Node{State: st.Code, Addr: listeners[st.Code].Addr().String(), Config: cfg}
		f.nodes[st.Code] = n
		f.start(n, listeners[st.Code])
	}
	return f
}

func (f *Federation) start(n *Node, lis net.Listener) {
	f.t.Helper()
	if err := f.startNode(n, lis); err != nil {
		f.t.Fatalf("testfed: start %s: %v", n.State, err)
	}
}

// startNode starts n on lis. On error, lis is closed.
func (f *Federation) startNode(n *Node, lis net.Listener) error {
	return f.startNodeContext(context.Background(), n, lis)
}

// startNodeContext starts n on lis; ctx bounds the wait of a participant
// not yet admitted. On error, lis is closed.
func (f *Federation) startNodeContext(ctx context.Context, n *Node, lis net.Listener) error {
	cfg := *n.Config
	cfg.Relay.MaxBackoff = f.opts.MaxBackoff
	cfg.Relay.DeliverTimeout = 5 * time.Second
	cfg.ShutdownTimeout = 5 * time.Second
	if f.opts.Metrics {
		cfg.Metrics.Listen = "127.0.0.1:0"
	}
	var log *zap.Logger
	if tt, ok := f.t.(zaptest.TestingT); ok && !f.opts.Quiet {
		log = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel)).With(zap.String("node", n.State))
	} else {
		log = zap.NewNop()
	}
	if f.opts.LogCore != nil {
		log = zap.New(zapcore.NewTee(log.Core(), f.opts.LogCore.With([]zapcore.Field{zap.String("node", n.State)})))
	}
	nd, err := node.Start(node.Options{Config: &cfg, Logger: log, Listener: lis, BaseBackoff: f.opts.BaseBackoff, Now: f.opts.Now,
		Context: ctx, DirectorySyncInterval: f.opts.DirectorySyncInterval})
	if err != nil {
		lis.Close()
		return err
	}
	n.node = nd
	return nil
}

// States returns the member state codes in generation order.
func (f *Federation) States() []string {
	out := make([]string, len(f.Certs.States))
	for i, s := range f.Certs.States {
		out[i] = s.Code
	}
	return out
}

// Node returns the node of state.
func (f *Federation) Node(state string) *Node {
	n, ok := f.nodes[state]
	if !ok {
		f.t.Fatalf("testfed: no state %s", state)
	}
	return n
}

// Stop stops the node of state; its data stays for Restart.
func (f *Federation) Stop(state string) {
	n := f.Node(state)
	if n.node != nil {
		n.node.Stop()
		n.node = nil
	}
}

// Restart starts the node of state again on the same address and data.
func (f *Federation) Restart(state string) {
	f.t.Helper()
	n := f.Node(state)
	f.Stop(state)
	f.start(n, f.relisten(n.Addr))
}

// relisten listens again on addr, which a stopped node just released.
func (f *Federation) relisten(addr string) net.Listener {
	f.t.Helper()
	var lis net.Listener
	var err error
	// The port was just released; another process may take it in between,
	// which a test on a shared machine must report rather than hide.
	for i := 0; i < 50; i++ {
		if lis, err = net.Listen("tcp", addr); err == nil {
			return lis
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("testfed: re-listen on %s: %v", addr, err)
	return nil
}

// StopAll stops every running node.
func (f *Federation) StopAll() {
	for s := range f.nodes {
		f.Stop(s)
	}
}

// OperatorConfigFile returns the pocctl.yaml of the operator of state acting
// for role ("admin", "technical", "policy" or "diplomatic").
func (f *Federation) OperatorConfigFile(state, role string) string {
	op := f.operator(state, role)
	return filepath.Join(f.Dir, state, "operators", certs.OperatorDir(op), "pocctl.yaml")
}

func (f *Federation) operator(state, role string) *certs.Issued {
	f.t.Helper()
	op := f.state(state).Operator(role)
	if op == nil {
		f.t.Fatalf("testfed: %s has no operator for role %q", state, role)
	}
	return op
}

// state returns the PKI and keys of a founding state or of a participant
// made by NewMember.
func (f *Federation) state(code string) *certs.State {
	f.t.Helper()
	if st := f.Certs.State(code); st != nil {
		return st
	}
	if m, ok := f.members[code]; ok {
		return m.State
	}
	f.t.Fatalf("testfed: no state %s", code)
	return nil
}

// SigningKey returns the key state signs envelopes and directory versions
// with: a founding state's or a participant's made by NewMember.
func (f *Federation) SigningKey(state string) ed25519.PrivateKey {
	f.t.Helper()
	return f.state(state).SigningKey
}

// Dial connects to the node of state as an arbitrary TLS certificate, trusting
// the node's own CA. Tests use it to present certificates of their own.
func (f *Federation) Dial(state string, cert *tls.Certificate) *grpc.ClientConn {
	f.t.Helper()
	st := f.state(state)
	bundle := identity.NewBundle(f.Certs.ID, map[string][]*x509.Certificate{state: {st.CA.Cert}})
	tlsCfg := identity.ClientConfig(cert, identity.Static{B: bundle}, identity.Node(f.Certs.ID, state), nil)
	cc, err := grpc.NewClient(f.Node(state).Addr, append(grpcconf.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))...)
	if err != nil {
		f.t.Fatalf("testfed: dial %s: %v", state, err)
	}
	f.t.Cleanup(func() { cc.Close() })
	return cc
}

// Contact returns a ContactService client of state's node for the operator
// acting for role.
func (f *Federation) Contact(state, role string) pocnetv1.ContactServiceClient {
	return pocnetv1.NewContactServiceClient(f.Dial(state, &f.operator(state, role).TLS))
}

// Relay returns a RelayService client of target's node, presenting the node
// certificate of state from.
func (f *Federation) Relay(from, target string) pocnetv1.RelayServiceClient {
	return pocnetv1.NewRelayServiceClient(f.Dial(target, &f.state(from).Node.TLS))
}

// NewMember makes the material of one participant joining the federation,
// as pocfed member does: its own CA, node and operator certificates, keys
// and directory entry (observer: of kind OBSERVER), written under
// Dir/<state> with a node configuration reading a copy of Genesis. Its node
// gets a 127.0.0.1 port now, which its entry lists, but does not start:
// the members admit the entry first, then the test calls StartMember. The
// participant's operators and keys are reachable like a founding state's
// (Contact, Relay, SigningKey, OperatorConfigFile).
func (f *Federation) NewMember(state string, observer bool) *certs.Member {
	f.t.Helper()
	if f.Certs.State(state) != nil || f.members[state] != nil {
		f.t.Fatalf("testfed: %s is already in the federation", state)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatalf("testfed: listen: %v", err)
	}
	// Only the port is wanted now: the node listens again when it starts.
	addr := lis.Addr().String()
	lis.Close()
	m, err := certs.NewMember(certs.MemberOptions{Federation: f.Certs.ID, State: state, Observer: observer, Endpoint: addr, Now: f.opts.Now})
	if err != nil {
		f.t.Fatalf("testfed: %v", err)
	}
	dir := filepath.Join(f.Dir, state)
	if err := m.Write(dir, f.Genesis); err != nil {
		f.t.Fatalf("testfed: %v", err)
	}
	cfg, err := config.Load(filepath.Join(dir, "node", "pocnode.yaml"))
	if err != nil {
		f.t.Fatalf("testfed: %v", err)
	}
	f.members[state] = m
	f.nodes[state] = &Node{State: state, Addr: addr, Config: cfg}
	return m
}

// StartMember starts the node of a participant made by NewMember, on the
// address its entry lists, and waits until the members have admitted it
// (its node asks theirs for the directory). It returns the node's refusal,
// if any, rather than failing the test, so that a test can also show that
// a participant not yet admitted does not start (StartMemberContext with a
// short deadline); it may be called again later.
func (f *Federation) StartMember(state string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return f.StartMemberContext(ctx, state)
}

// StartMemberContext is StartMember with the wait for admission bounded by
// ctx.
func (f *Federation) StartMemberContext(ctx context.Context, state string) error {
	f.t.Helper()
	if f.members[state] == nil {
		f.t.Fatalf("testfed: %s was not made by NewMember", state)
	}
	n := f.Node(state)
	if n.node != nil {
		return fmt.Errorf("testfed: the node of %s is already running", state)
	}
	return f.startNodeContext(ctx, n, f.relisten(n.Addr))
}

// Directory returns the running node's directory manager.
func (n *Node) Directory() *dirsync.Manager { return n.node.Directory() }

// WaitFor calls cond until it returns true or the deadline passes; it fails
// the test with what on timeout. It polls state that real components change;
// it never asserts on how long they took.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ReloadCertificates makes the running node read its certificate files
// again, as SIGHUP does.
func (n *Node) ReloadCertificates() error { return n.node.ReloadCertificates() }

// MetricsAddr is where the node serves /metrics (Options.Metrics), or "".
func (n *Node) MetricsAddr() string { return n.node.MetricsAddr() }
