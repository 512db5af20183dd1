package pocctl

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/client/internal/testpki"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// fakeNode is an in-memory ContactService behind real mutual TLS. It checks
// pocctl's side of the conversation: configuration, dialing, requests and
// output. The node's own behaviour is tested against real nodes elsewhere.
type fakeNode struct {
	pocnetv1.UnimplementedContactServiceServer
	mu       sync.Mutex
	msgs     map[string]*pocnetv1.Message
	byReq    map[string]string
	n        int
	requests []proto.Message
}

func (f *fakeNode) SendCommunication(_ context.Context, req *pocnetv1.SendCommunicationRequest) (*pocnetv1.SendCommunicationResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	if id, ok := f.byReq[req.GetRequestId()]; ok {
		return &pocnetv1.SendCommunicationResponse{Message: f.msgs[id]}, nil
	}
	f.n++
	id := fmt.Sprintf("0198c0de-0000-7000-8000-%012d", f.n)
	m := &pocnetv1.Message{
		Id: id, ThreadId: id, Direction: pocnetv1.Direction_DIRECTION_OUTBOUND, Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION,
		FromState: "XAA", FromRole: "technical", ToState: req.GetToState(), ToRole: req.GetToRole(),
		Communication: req.GetCommunication(), CreatedAt: timestamppb.New(testNow), Status: pocnetv1.Status_STATUS_ACCEPTED,
		RequestId: req.GetRequestId(),
	}
	f.msgs[id] = m
	f.byReq[req.GetRequestId()] = id
	return &pocnetv1.SendCommunicationResponse{Message: m}, nil
}

func (f *fakeNode) GetMessage(_ context.Context, req *pocnetv1.GetMessageRequest) (*pocnetv1.GetMessageResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.msgs[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no message %s", req.GetId())
	}
	return &pocnetv1.GetMessageResponse{Message: m}, nil
}

func (f *fakeNode) ListMessages(_ context.Context, req *pocnetv1.ListMessagesRequest) (*pocnetv1.ListMessagesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &pocnetv1.ListMessagesResponse{}
	for _, m := range f.msgs {
		if m.GetDirection() == req.GetDirection() &&
			(req.GetIncludeArchived() || m.GetLocalState() != pocnetv1.LocalState_LOCAL_STATE_ARCHIVED) {
			resp.Messages = append(resp.Messages, m)
		}
	}
	return resp, nil
}

func (f *fakeNode) SetLocalState(_ context.Context, req *pocnetv1.SetLocalStateRequest) (*pocnetv1.SetLocalStateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	m, ok := f.msgs[req.GetId()]
	if !ok || m.GetDirection() != pocnetv1.Direction_DIRECTION_INBOUND {
		return nil, status.Errorf(codes.NotFound, "no inbound message %s", req.GetId())
	}
	m = proto.Clone(m).(*pocnetv1.Message)
	m.LocalState = req.GetLocalState()
	f.msgs[m.GetId()] = m
	return &pocnetv1.SetLocalStateResponse{Message: m}, nil
}

func (f *fakeNode) GetNodeStatus(context.Context, *pocnetv1.GetNodeStatusRequest) (*pocnetv1.GetNodeStatusResponse, error) {
	return &pocnetv1.GetNodeStatusResponse{FederationId: "pocnet.test", State: "XAA",
		CallerIdentity: "spiffe://pocnet.test/state/XAA/operator/technical/alice", CallerRole: "technical", LastEventSeq: 3}, nil
}

// startFakeNode serves a fakeNode for XAA and returns it with the path of
// an operator configuration file.
func startFakeNode(t *testing.T) (*fakeNode, string) {
	t.Helper()
	ca := testpki.NewCA(t, "XAA")
	self := identity.Node("pocnet.test", "XAA")
	nodeCert := ca.Issue(t, self, x509.ExtKeyUsageServerAuth)
	b := identity.NewBundle("pocnet.test", map[string][]*x509.Certificate{"XAA": {ca.Cert}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(identity.ServerConfig(&nodeCert, identity.Static{B: b}, self, nil))))
	node := &fakeNode{msgs: map[string]*pocnetv1.Message{}, byReq: map[string]string{}}
	pocnetv1.RegisterContactServiceServer(srv, node)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	op := ca.Issue(t, identity.Operator("pocnet.test", "XAA", "technical", "alice"), x509.ExtKeyUsageClientAuth)
	return node, testpki.WriteConfig(t, t.TempDir(), lis.Addr().String(), op, ca)
}

func TestCommandsAgainstFakeNode(t *testing.T) {
	node, cfg := startFakeNode(t)

	code, out, errOut := run(t, "", "--config", cfg, "send", "--to", "XBB", "--role", "technical", "--kind", "rfi",
		"--urgency", "urgent", "--subject", "Scanning", "--body", "Seen?", "--request-id", "req-1", "--exercise")
	if code != ExitOK {
		t.Fatalf("send: exit %d, stderr %q", code, errOut)
	}
	want := "Sent        0198c0de-0000-7000-8000-000000000001\n" +
		"To          XBB/technical\n" +
		"Status      ACCEPTED — stored by your node (XAA), waiting for delivery to XBB\n" +
		"Request id  req-1\n"
	if out != want {
		t.Errorf("send output:\n%s\nwant:\n%s", out, want)
	}

	// The same request id again: the same message, as JSON.
	code, out, errOut = run(t, "", "--config", cfg, "-o", "json", "send", "--to", "XBB", "--role", "technical", "--kind", "rfi",
		"--subject", "Scanning", "--request-id", "req-1")
	if code != ExitOK {
		t.Fatalf("send json: exit %d, stderr %q", code, errOut)
	}
	var m struct {
		ID        string `json:"id"`
		Status    string `json:"status"`
		RequestID string `json:"requestId"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("send json output %q: %v", out, err)
	}
	if m.ID != "0198c0de-0000-7000-8000-000000000001" || m.Status != "STATUS_ACCEPTED" || m.RequestID != "req-1" {
		t.Errorf("send json = %+v", m)
	}
	if !strings.HasPrefix(out, "{\n  \"") {
		t.Errorf("json not indented: %q", out)
	}

	code, out, _ = run(t, "", "--config", cfg, "sent")
	if code != ExitOK || !strings.Contains(out, "[EXERCISE] Scanning") || !strings.Contains(out, "ACCEPTED") {
		t.Errorf("sent: exit %d\n%s", code, out)
	}

	// An inbound message is marked read when shown, unless --keep-new.
	in := &pocnetv1.Message{Id: "in-1", Direction: pocnetv1.Direction_DIRECTION_INBOUND, Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION,
		FromState: "XBB", FromRole: "technical", ToState: "XAA", ToRole: "technical", LocalState: pocnetv1.LocalState_LOCAL_STATE_NEW,
		ReceivedAt:    timestamppb.New(testNow.Add(-time.Minute)),
		Communication: &pocnetv1.Communication{Kind: pocnetv1.Kind_KIND_NOTIFICATION, Subject: "Heads-up", Body: "Patch now."}}
	node.mu.Lock()
	node.msgs["in-1"] = in
	node.mu.Unlock()
	code, out, _ = run(t, "", "--config", cfg, "show", "--keep-new", "in-1")
	if code != ExitOK || !strings.Contains(out, "Local state  new (never sent to anyone)") {
		t.Errorf("show --keep-new: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, "", "--config", cfg, "show", "in-1")
	if code != ExitOK || !strings.Contains(out, "Local state  read (never sent to anyone)") || !strings.Contains(out, "  Patch now.\n") {
		t.Errorf("show: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, "", "--config", cfg, "inbox")
	if code != ExitOK || !strings.Contains(out, "in-1") || !strings.Contains(out, "read") {
		t.Errorf("inbox: exit %d\n%s", code, out)
	}

	// A node error: exit 1, what failed, the node's message and the code.
	code, out, errOut = run(t, "", "--config", cfg, "show", "nope")
	if code != ExitError || out != "" || errOut != "pocctl: get message nope: no message nope (NotFound)\n" {
		t.Errorf("show nope: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = run(t, "", "--config", cfg, "archive", "0198c0de-0000-7000-8000-000000000001")
	if code != ExitError || !strings.Contains(errOut, "(NotFound)") {
		t.Errorf("archive outbound: exit %d, stderr %q", code, errOut)
	}

	code, out, _ = run(t, "", "--config", cfg, "status")
	if code != ExitOK || !strings.Contains(out, "You are         spiffe://pocnet.test/state/XAA/operator/technical/alice (role technical)") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
}

func TestUnreachableNode(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	ca := testpki.NewCA(t, "XAA")
	op := ca.Issue(t, identity.Operator("pocnet.test", "XAA", "technical", "alice"), x509.ExtKeyUsageClientAuth)
	cfg := testpki.WriteConfig(t, t.TempDir(), dead, op, ca)
	code, out, errOut := run(t, "", "--config", cfg, "--timeout", "5s", "status")
	if code != ExitError || out != "" {
		t.Fatalf("status: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, s := range []string{"pocctl: cannot reach node spiffe://pocnet.test/state/XAA/node at " + dead, "(Unavailable)", "(configuration " + cfg + ")"} {
		if !strings.Contains(errOut, s) {
			t.Errorf("stderr %q does not contain %q", errOut, s)
		}
	}
	if strings.Count(errOut, "\n") != 1 {
		t.Errorf("stderr is not one line: %q", errOut)
	}
}
