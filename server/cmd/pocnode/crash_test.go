package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// pocnodeBin is the pocnode binary built once for every test of this file.
var pocnodeBin string

// TestMain builds pocnode with the toolchain running the tests. A test
// binary built with -race builds pocnode with -race too, which also lets
// the build reuse the packages already compiled for the test.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pocnode-crash-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pocnodeBin = filepath.Join(dir, "pocnode")
	args := []string{"build", "-o", pocnodeBin}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building pocnode: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// fed is a federation of pocnode processes.
type fed struct {
	t      *testing.T
	dir    string
	gen    *certs.Federation
	listen map[string]string // where each node listens (may differ from the directory's endpoint)
	procs  map[string]*proc
	runs   int
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// newFed generates a two-state federation whose directory lists endpoints,
// and writes it under a temporary folder.
func newFed(t *testing.T, endpoints map[string]string) *fed {
	t.Helper()
	gen, err := certs.Generate(certs.Options{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	f := &fed{t: t, dir: t.TempDir(), gen: gen, listen: map[string]string{}, procs: map[string]*proc{}}
	for _, m := range gen.Directory.GetMembers() {
		m.Endpoints = []string{endpoints[m.GetState()]}
		f.listen[m.GetState()] = endpoints[m.GetState()]
	}
	if err := gen.Write(f.dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for s := range f.procs {
			f.kill(s)
		}
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(f.dir, "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("---- %s ----\n%s", filepath.Base(l), b)
			}
		}
	})
	return f
}

func (f *fed) configPath(state string) string {
	return filepath.Join(f.dir, state, "node", "pocnode.yaml")
}

// editConfig rewrites state's pocnode.yaml.
func (f *fed) editConfig(state string, edit func(string) string) {
	f.t.Helper()
	p := f.configPath(state)
	b, err := os.ReadFile(p)
	if err != nil {
		f.t.Fatal(err)
	}
	out := edit(string(b))
	if out == string(b) {
		f.t.Fatalf("editing %s changed nothing", p)
	}
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// start runs state's node as a child process and waits until it answers.
func (f *fed) start(state string) {
	f.t.Helper()
	if p := f.procs[state]; p != nil {
		f.t.Fatalf("%s is already running", state)
	}
	f.runs++
	logPath := filepath.Join(f.dir, fmt.Sprintf("%02d-%s.log", f.runs, state))
	logFile, err := os.Create(logPath)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(pocnodeBin, "--config", f.configPath(state))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		f.t.Fatalf("start %s: %v", state, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	f.procs[state] = p
	admin := f.client(state, "admin")
	testfed.WaitFor(f.t, state+" to answer", func() bool {
		select {
		case <-p.done:
			f.t.Fatalf("%s exited at start: %v", state, cmd.ProcessState)
		default:
		}
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := admin.GetNodeStatus(cctx, &pocnetv1.GetNodeStatusRequest{})
		return err == nil
	})
}

// kill ends state's node with SIGKILL: no shutdown code runs.
func (f *fed) kill(state string) {
	p := f.procs[state]
	if p == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
	delete(f.procs, state)
}

// client returns a ContactService client of state's node for the operator
// acting for role. It reconnects quickly when the node comes back.
func (f *fed) client(state, role string) pocnetv1.ContactServiceClient {
	f.t.Helper()
	st := f.gen.State(state)
	b := identity.NewBundle(f.gen.ID, map[string][]*x509.Certificate{state: {st.CA.Cert}})
	cfg := identity.ClientConfig(&st.Operator(role).TLS, identity.Static{B: b}, identity.Node(f.gen.ID, state), nil)
	cc, err := grpc.NewClient(f.listen[state],
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond}, MinConnectTimeout: 2 * time.Second}),
	)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { cc.Close() })
	return pocnetv1.NewContactServiceClient(cc)
}

func cctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func comm(subject string) *pocnetv1.Communication {
	return &pocnetv1.Communication{
		Kind: pocnetv1.Kind_KIND_NOTIFICATION, Urgency: pocnetv1.Urgency_URGENCY_ROUTINE,
		Subject: subject, Body: "Crash-safety test.", Language: "en",
	}
}

// sendN sends n communications to XBB with request ids prefix-00.., all of
// which must be ACCEPTED, and returns their ids in order.
func sendN(t *testing.T, c pocnetv1.ContactServiceClient, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		resp, err := c.SendCommunication(cctx(t), &pocnetv1.SendCommunicationRequest{
			RequestId: fmt.Sprintf("%s-%02d", prefix, i), ToState: "XBB", ToRole: "technical",
			Communication: comm(fmt.Sprintf("%s %d", prefix, i)),
		})
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if st := resp.GetMessage().GetStatus(); st != pocnetv1.Status_STATUS_ACCEPTED {
			t.Fatalf("send %d: status %v, want ACCEPTED", i, st)
		}
		ids[i] = resp.GetMessage().GetId()
	}
	return ids
}

func list(t *testing.T, c pocnetv1.ContactServiceClient, dir pocnetv1.Direction) []*pocnetv1.Message {
	t.Helper()
	resp, err := c.ListMessages(cctx(t), &pocnetv1.ListMessagesRequest{Direction: dir, PageSize: 500, IncludeArchived: true})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if resp.GetNextPageToken() != "" {
		t.Fatal("more than one page of messages")
	}
	return resp.GetMessages()
}

// statuses maps message id to status for the outbound messages of c's node.
func statuses(t *testing.T, c pocnetv1.ContactServiceClient) map[string]pocnetv1.Status {
	out := map[string]pocnetv1.Status{}
	for _, m := range list(t, c, pocnetv1.Direction_DIRECTION_OUTBOUND) {
		out[m.GetId()] = m.GetStatus()
	}
	return out
}

func allHave(st map[string]pocnetv1.Status, ids []string, want pocnetv1.Status) bool {
	for _, id := range ids {
		if st[id] != want {
			return false
		}
	}
	return true
}

// receivedCounts reads the whole event log of admin's node and counts
// MESSAGE_RECEIVED events per message id.
func receivedCounts(t *testing.T, admin pocnetv1.ContactServiceClient) map[string]int {
	t.Helper()
	st, err := admin.GetNodeStatus(cctx(t), &pocnetv1.GetNodeStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	if st.GetLastEventSeq() == 0 {
		return n
	}
	wctx, cancel := context.WithCancel(cctx(t))
	defer cancel()
	stream, err := admin.WatchEvents(wctx, &pocnetv1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		if resp.GetEvent().GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED {
			n[resp.GetEvent().GetMessageId()]++
		}
		if resp.GetEvent().GetSeq() >= st.GetLastEventSeq() {
			return n
		}
	}
}

// wantEachOnce checks that XBB holds each of ids exactly once, in its inbox
// and in its event log, and holds total inbound messages in all.
func wantEachOnce(t *testing.T, adminB pocnetv1.ContactServiceClient, ids []string, total int) {
	t.Helper()
	in := list(t, adminB, pocnetv1.Direction_DIRECTION_INBOUND)
	seen := map[string]int{}
	for _, m := range in {
		seen[m.GetId()]++
	}
	if len(in) != total || len(seen) != total {
		t.Fatalf("XBB inbox: %d messages, %d distinct; want %d", len(in), len(seen), total)
	}
	events := receivedCounts(t, adminB)
	if len(events) != total {
		t.Fatalf("XBB has MESSAGE_RECEIVED events for %d messages, want %d", len(events), total)
	}
	for _, id := range ids {
		if seen[id] != 1 || events[id] != 1 {
			t.Fatalf("message %s: %d times in XBB's inbox, %d MESSAGE_RECEIVED events; want 1 and 1", id, seen[id], events[id])
		}
	}
}

// TestKillBetweenAcceptAndDelivery: what a node accepted survives kill -9
// and is delivered exactly once when both nodes are up again.
func TestKillBetweenAcceptAndDelivery(t *testing.T) {
	f := newFed(t, map[string]string{"XAA": freeAddr(t), "XBB": freeAddr(t)})
	f.start("XAA")
	tech := f.client("XAA", "technical")
	ids := sendN(t, tech, "accept", 50)

	f.kill("XAA")
	f.start("XBB")
	f.start("XAA")

	adminA, adminB := f.client("XAA", "admin"), f.client("XBB", "admin")
	testfed.WaitFor(t, "all 50 to be DELIVERED at XAA", func() bool {
		return allHave(statuses(t, adminA), ids, pocnetv1.Status_STATUS_DELIVERED)
	})
	wantEachOnce(t, adminB, ids, 50)

	// Retrying every request after the crash creates nothing new.
	again := sendN2(t, tech, "accept", 50)
	for i := range ids {
		if again[i].GetId() != ids[i] {
			t.Fatalf("retry %d created %s, want %s", i, again[i].GetId(), ids[i])
		}
	}
	if n := len(list(t, adminA, pocnetv1.Direction_DIRECTION_OUTBOUND)); n != 50 {
		t.Fatalf("XAA holds %d outbound messages after the retries, want 50", n)
	}
	wantEachOnce(t, adminB, ids, 50)
}

// sendN2 is sendN for retries: the returned messages may have any status.
func sendN2(t *testing.T, c pocnetv1.ContactServiceClient, prefix string, n int) []*pocnetv1.Message {
	t.Helper()
	out := make([]*pocnetv1.Message, n)
	for i := range n {
		resp, err := c.SendCommunication(cctx(t), &pocnetv1.SendCommunicationRequest{
			RequestId: fmt.Sprintf("%s-%02d", prefix, i), ToState: "XBB", ToRole: "technical",
			Communication: comm(fmt.Sprintf("%s %d", prefix, i)),
		})
		if err != nil {
			t.Fatalf("retry %d: %v", i, err)
		}
		out[i] = resp.GetMessage()
	}
	return out
}

// proxy forwards TCP connections to a backend. With blackhole set it still
// forwards what clients send but drops everything the backend answers.
type proxy struct {
	lis       net.Listener
	backend   string
	blackhole atomic.Bool
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]bool
}

func newProxy(t *testing.T, backend string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, backend: backend, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) Addr() string { return p.lis.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *proxy) handle(c net.Conn) {
	defer p.wg.Done()
	s, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.Close()
		return
	}
	p.track(c, true)
	p.track(s, true)
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(s, c)
		done <- struct{}{}
	}()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			if n > 0 && !p.blackhole.Load() {
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	<-done
	c.Close()
	s.Close()
	<-done
	p.track(c, false)
	p.track(s, false)
}

func (p *proxy) close() {
	p.lis.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestKillBetweenDeliveryAndReceipt: XBB stored the envelopes but XAA never
// got the receipts, then XAA was killed. After its restart XAA delivers
// again, XBB answers with the receipts it already issued, and nothing is
// stored twice.
func TestKillBetweenDeliveryAndReceipt(t *testing.T) {
	backend := freeAddr(t)
	px := newProxy(t, backend)
	f := newFed(t, map[string]string{"XAA": freeAddr(t), "XBB": px.Addr()})
	// XBB listens behind the proxy; XAA reaches it only through the proxy.
	f.editConfig("XBB", func(s string) string {
		return strings.Replace(s, "listen: "+px.Addr()+"\n", "listen: "+backend+"\n", 1)
	})
	f.listen["XBB"] = backend
	f.editConfig("XAA", func(s string) string {
		return s + "relay:\n  deliver_timeout: 500ms\n  max_backoff: 1s\n"
	})
	f.start("XBB")
	f.start("XAA")
	tech := f.client("XAA", "technical")
	adminA, adminB := f.client("XAA", "admin"), f.client("XBB", "admin")

	// A first delivery proves the connection through the proxy is healthy;
	// a new connection could not complete its handshake once answers are
	// dropped.
	warm := sendN(t, tech, "warm-up", 1)
	testfed.WaitFor(t, "the warm-up message to be DELIVERED", func() bool {
		return allHave(statuses(t, adminA), warm, pocnetv1.Status_STATUS_DELIVERED)
	})

	px.blackhole.Store(true)
	const n = 20
	ids := sendN(t, tech, "receipt", n)
	testfed.WaitFor(t, "XBB to store all 20", func() bool {
		return len(list(t, adminB, pocnetv1.Direction_DIRECTION_INBOUND)) == n+1
	})
	st := statuses(t, adminA)
	if !allHave(st, ids, pocnetv1.Status_STATUS_ACCEPTED) {
		t.Fatalf("with receipts dropped, XAA shows statuses other than ACCEPTED: %v", st)
	}

	f.kill("XAA")
	px.blackhole.Store(false)
	f.start("XAA")
	testfed.WaitFor(t, "all 20 to be DELIVERED at XAA", func() bool {
		return allHave(statuses(t, adminA), ids, pocnetv1.Status_STATUS_DELIVERED)
	})
	wantEachOnce(t, adminB, append(warm, ids...), n+1)

	// The receipt XAA holds is the one XBB issued when it first stored each.
	for _, id := range ids {
		ra, err := adminA.GetMessage(cctx(t), &pocnetv1.GetMessageRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		rb, err := adminB.GetMessage(cctx(t), &pocnetv1.GetMessageRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := proto.MarshalOptions{Deterministic: true}.Marshal(ra.GetMessage().GetReceipt())
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(rb.GetMessage().GetReceipt())
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Fatalf("message %s: XAA holds a receipt that differs from the one XBB issued", id)
		}
	}
}
