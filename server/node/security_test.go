package node_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// wantRefusedAtHandshake connects to state's node with cfg and expects the
// node to refuse the TLS handshake: a raw TLS connection gets the node's TLS
// alert, an RPC over gRPC fails with codes.Unavailable, and the node stores
// nothing. alert is the TLS alert expected, e.g. "bad certificate".
func wantRefusedAtHandshake(t *testing.T, f *testfed.Federation, state string, cfg *tls.Config, alert string) {
	t.Helper()
	admin := f.Contact(state, "admin")
	before := take(t, admin)

	// Under TLS 1.3 the client finishes its side of the handshake before the
	// server has checked the client certificate; the server's verdict comes
	// as an alert on the first read.
	raw, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", f.Node(state).Addr, cfg.Clone())
	if err == nil {
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = raw.Read(make([]byte, 1))
		raw.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "tls: "+alert) {
		t.Fatalf("raw TLS connection to %s: %v, want the TLS alert %q refusing the handshake", state, err, alert)
	}

	cc := dialTLS(t, f, state, cfg)
	c := pocnetv1.NewContactServiceClient(cc)
	_, err = c.SendCommunication(ctx(t), &pocnetv1.SendCommunicationRequest{ToState: otherState(f, state), ToRole: "technical", Communication: rfi("should never be stored")})
	if st, _ := status.FromError(err); err == nil || st.Code() != codes.Unavailable {
		t.Fatalf("send over a refused connection: %v (code %v), want Unavailable", err, st.Code())
	}
	// The relay side of the same node refuses the same way.
	_, err = pocnetv1.NewRelayServiceClient(cc).Ping(ctx(t), &pocnetv1.PingRequest{})
	if st, _ := status.FromError(err); err == nil || st.Code() != codes.Unavailable {
		t.Fatalf("ping over a refused connection: %v, want Unavailable", err)
	}
	before.unchanged(t, "after a refused handshake", admin)
}

// presenting is the TLS configuration f.Dial uses: present cert, trust
// only the node of state, verified against state's CA.
func presenting(f *testfed.Federation, state string, cert *tls.Certificate) *tls.Config {
	b := identity.NewBundle(f.Certs.ID, map[string][]*x509.Certificate{state: {f.Certs.State(state).CA.Cert}})
	return identity.ClientConfig(cert, identity.Static{B: b}, identity.Node(f.Certs.ID, state), nil)
}

func otherState(f *testfed.Federation, state string) string {
	for _, s := range f.States() {
		if s != state {
			return s
		}
	}
	return ""
}

// issue makes a certificate with ca for id, valid from notBefore to notAfter.
func issue(t *testing.T, ca *certs.CA, id identity.ID, notBefore, notAfter time.Time) *tls.Certificate {
	t.Helper()
	iss, err := ca.Issue(id, notBefore, notAfter)
	if err != nil {
		t.Fatalf("issue %s: %v", id, err)
	}
	return &iss.TLS
}

func valid() (time.Time, time.Time) {
	return time.Now().Add(-time.Hour), time.Now().Add(24 * time.Hour)
}

func TestNoClientCertificateRefused(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	wantRefusedAtHandshake(t, f, "XAA", &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}, "certificate required")
}

func TestUnknownCARefused(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	nb, na := valid()
	rogue, err := certs.NewCA(f.Certs.ID, "XAA", nb, na)
	if err != nil {
		t.Fatal(err)
	}
	eve := issue(t, rogue, identity.Operator(f.Certs.ID, "XAA", "technical", "eve"), nb, na)
	wantRefusedAtHandshake(t, f, "XAA", presenting(f, "XAA", eve), "bad certificate")
	// The rogue CA cannot speak for XAA's node to a peer either.
	node := issue(t, rogue, identity.Node(f.Certs.ID, "XAA"), nb, na)
	wantRefusedAtHandshake(t, f, "XBB", presenting(f, "XBB", node), "bad certificate")
}

// TestRefusedHandshakeLogged: TLS 1.3 tells a refused client only "bad
// certificate"; the node's log says who was refused and why, so that an
// operator can tell a revoked certificate from an unknown CA or an expired
// one.
func TestRefusedHandshakeLogged(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	f := testfed.Start(t, testfed.Options{LogCore: core})
	nb, na := valid()
	rogue, err := certs.NewCA(f.Certs.ID, "XAA", nb, na)
	if err != nil {
		t.Fatal(err)
	}
	ca := f.Certs.State("XAA").CA
	old := time.Now().Add(-48 * time.Hour)
	eve := identity.Operator(f.Certs.ID, "XAA", "technical", "eve")
	former := identity.Operator(f.Certs.ID, "XAA", "technical", "former")
	for _, c := range []struct {
		name   string
		who    identity.ID
		cert   *tls.Certificate
		reason string // in the logged error
	}{
		{"unknown CA", eve, issue(t, rogue, eve, nb, na), "unknown authority"},
		{"expired", former, issue(t, ca, former, old, old.Add(24*time.Hour)), "expired"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := logs.Len()
			wantRefusedAtHandshake(t, f, "XAA", presenting(f, "XAA", c.cert), "bad certificate")
			var got []string
			for _, e := range logs.All()[before:] {
				if e.Message != "handshake refused" {
					continue
				}
				if node := e.ContextMap()["node"]; node != "XAA" {
					t.Errorf("handshake refused by XAA logged by node %v", node)
				}
				got = append(got, fmt.Sprint(e.ContextMap()["error"]))
			}
			if len(got) == 0 {
				t.Fatalf("no \"handshake refused\" entry in XAA's log")
			}
			for _, g := range got {
				if !strings.Contains(g, c.reason) || !strings.Contains(g, c.who.String()) {
					t.Errorf("logged reason %q does not name %s and say %q", g, c.who, c.reason)
				}
			}
		})
	}
}

func TestExpiredCertificateRefused(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	ca := f.Certs.State("XAA").CA
	old := time.Now().Add(-48 * time.Hour)
	expired := issue(t, ca, identity.Operator(f.Certs.ID, "XAA", "technical", "former"), old, old.Add(24*time.Hour))
	wantRefusedAtHandshake(t, f, "XAA", presenting(f, "XAA", expired), "bad certificate")
	// Not yet valid is refused as well.
	future := time.Now().Add(48 * time.Hour)
	early := issue(t, ca, identity.Operator(f.Certs.ID, "XAA", "technical", "early"), future, future.Add(24*time.Hour))
	wantRefusedAtHandshake(t, f, "XAA", presenting(f, "XAA", early), "bad certificate")
}

// TestCAOfOneStateCannotSpeakForAnother: a certificate from XAA's CA naming
// an identity of XBB verifies against no CA: not XBB's (wrong issuer), and
// XAA's is never consulted for an XBB identity.
func TestCAOfOneStateCannotSpeakForAnother(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	ca := f.Certs.State("XAA").CA
	nb, na := valid()
	for _, id := range []identity.ID{
		identity.Operator(f.Certs.ID, "XBB", "technical", "mallory"),
		identity.Operator(f.Certs.ID, "XBB", "admin", "mallory"),
		identity.Node(f.Certs.ID, "XBB"),
	} {
		cert := issue(t, ca, id, nb, na)
		for _, target := range []string{"XBB", "XAA"} {
			t.Run(id.String()+"→"+target, func(t *testing.T) {
				wantRefusedAtHandshake(t, f, target, presenting(f, target, cert), "bad certificate")
			})
		}
	}
}

// TestForeignOperatorRefusedAtHandshake: a valid operator of XBB may use
// XBB's node only.
func TestForeignOperatorRefusedAtHandshake(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	op := &f.Certs.State("XBB").Operator("admin").TLS
	wantRefusedAtHandshake(t, f, "XAA", presenting(f, "XAA", op), "bad certificate")
}

func TestTLS12Refused(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	op := f.Certs.State("XAA").Operator("admin").TLS
	wantRefusedAtHandshake(t, f, "XAA", &tls.Config{
		MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{op}, InsecureSkipVerify: true,
	}, "protocol version not supported")
}

// TestServiceByIdentityKind: nodes call RelayService only, operators
// ContactService only, and an operator's role must be one its state lists.
func TestServiceByIdentityKind(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	adminA := f.Contact("XAA", "admin")
	before := take(t, adminA)
	nb, na := valid()
	legal := issue(t, f.Certs.State("XAA").CA, identity.Operator(f.Certs.ID, "XAA", "legal", "counsel"), nb, na)

	nodeAsOperator := pocnetv1.NewContactServiceClient(f.Dial("XAA", &f.Certs.State("XBB").Node.TLS))
	operatorAsNode := pocnetv1.NewRelayServiceClient(f.Dial("XAA", &f.Certs.State("XAA").Operator("technical").TLS))
	adminAsNode := pocnetv1.NewRelayServiceClient(f.Dial("XAA", &f.Certs.State("XAA").Operator("admin").TLS))
	legalOp := pocnetv1.NewContactServiceClient(f.Dial("XAA", legal))

	env := build(t, signer(t, f, "XBB"), commHeader(f, "XBB", "XAA", rfi("via an operator"), time.Now()), commPayload(rfi("via an operator")))
	tests := []struct {
		name string
		call func() error
		msg  string
	}{
		{"node sends a communication", func() error {
			_, err := nodeAsOperator.SendCommunication(ctx(t), &pocnetv1.SendCommunicationRequest{ToState: "XBB", ToRole: "technical", FromRole: "technical", Communication: rfi("x")})
			return err
		}, "is not an operator"},
		{"node reads the directory", func() error {
			_, err := nodeAsOperator.GetDirectory(ctx(t), &pocnetv1.GetDirectoryRequest{})
			return err
		}, "is not an operator"},
		{"node watches events", func() error {
			stream, err := nodeAsOperator.WatchEvents(ctx(t), &pocnetv1.WatchEventsRequest{})
			if err != nil {
				return err
			}
			return recvErr(stream)
		}, "is not an operator"},
		{"operator delivers", func() error {
			_, err := operatorAsNode.Deliver(ctx(t), &pocnetv1.DeliverRequest{Envelopes: []*pocnetv1.Envelope{env}})
			return err
		}, "is not a node"},
		{"operator pings", func() error {
			_, err := operatorAsNode.Ping(ctx(t), &pocnetv1.PingRequest{})
			return err
		}, "is not a node"},
		{"admin delivers", func() error {
			_, err := adminAsNode.Deliver(ctx(t), &pocnetv1.DeliverRequest{Envelopes: []*pocnetv1.Envelope{env}})
			return err
		}, "is not a node"},
		{"unlisted role sends", func() error {
			_, err := legalOp.SendCommunication(ctx(t), &pocnetv1.SendCommunicationRequest{ToState: "XBB", ToRole: "technical", Communication: rfi("x")})
			return err
		}, `role "legal"`},
		{"unlisted role reads status", func() error {
			_, err := legalOp.GetNodeStatus(ctx(t), &pocnetv1.GetNodeStatusRequest{})
			return err
		}, `role "legal"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.call(), "PermissionDenied", tc.msg)
		})
	}
	before.unchanged(t, "after refused calls", adminA)
}

// TestRoleSeesOnlyItsOwn: an operator of one PoC role neither reads nor
// answers what is addressed to another role; admin sees everything.
func TestRoleSeesOnlyItsOwn(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	techA := f.Contact("XAA", "technical")
	policyA := f.Contact("XAA", "policy")
	policyB := f.Contact("XBB", "policy")
	adminB := f.Contact("XBB", "admin")

	forTech := send(t, techA, "XBB", "technical", rfi("For the CERT only"))
	waitStatus(t, techA, forTech.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	id := forTech.GetId()

	tests := []struct {
		name string
		call func() error
	}{
		{"GetMessage", func() error {
			_, err := policyB.GetMessage(ctx(t), &pocnetv1.GetMessageRequest{Id: id})
			return err
		}},
		{"GetThread", func() error {
			_, err := policyB.GetThread(ctx(t), &pocnetv1.GetThreadRequest{Id: id})
			return err
		}},
		{"Acknowledge", func() error {
			_, err := policyB.Acknowledge(ctx(t), &pocnetv1.AcknowledgeRequest{Id: id})
			return err
		}},
		{"Respond", func() error {
			_, err := policyB.Respond(ctx(t), &pocnetv1.RespondRequest{Id: id, Communication: rfi("Re: For the CERT only")})
			return err
		}},
		{"Decline", func() error {
			_, err := policyB.Decline(ctx(t), &pocnetv1.DeclineRequest{Id: id, Reason: "not ours"})
			return err
		}},
		{"SetLocalState", func() error {
			_, err := policyB.SetLocalState(ctx(t), &pocnetv1.SetLocalStateRequest{Id: id, LocalState: pocnetv1.LocalState_LOCAL_STATE_ARCHIVED})
			return err
		}},
	}
	before := take(t, adminB)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.call(), "PermissionDenied", `belongs to role "technical"`)
		})
	}
	before.unchanged(t, "XBB after refused reads and answers", adminB)
	if m := get(t, adminB, id); m.GetLocalState() != pocnetv1.LocalState_LOCAL_STATE_NEW || len(m.GetAnswerIds()) != 0 {
		t.Fatalf("refused calls changed the message: local state %v, answers %v", m.GetLocalState(), m.GetAnswerIds())
	}
	if m := get(t, techA, id); m.GetStatus() != pocnetv1.Status_STATUS_DELIVERED {
		t.Fatalf("sender sees %v after refused answers, want DELIVERED", m.GetStatus())
	}

	// A communication for the policy desk, received after the one above.
	forPolicy := send(t, policyA, "XBB", "policy", rfi("For the policy desk"))
	waitStatus(t, policyA, forPolicy.GetId(), pocnetv1.Status_STATUS_DELIVERED)

	for _, m := range inbox(t, policyB) {
		if m.GetId() == id {
			t.Fatal("the policy operator's inbox lists a message for technical")
		}
	}
	if in := inbox(t, policyB); len(in) != 1 || in[0].GetId() != forPolicy.GetId() {
		t.Fatalf("policy inbox has %d messages, want only %s", len(in), forPolicy.GetId())
	}
	// Events are in commit order: the policy operator's first event must be
	// its own message, the earlier technical one skipped.
	if ev := firstEvent(t, policyB); ev.GetMessageId() != forPolicy.GetId() {
		t.Fatalf("policy operator's first event is for %s (role %q), want %s", ev.GetMessageId(), ev.GetRole(), forPolicy.GetId())
	}

	// Admin sees both.
	if m := get(t, adminB, id); m.GetCommunication().GetSubject() != "For the CERT only" {
		t.Fatalf("admin reads %v", m)
	}
	if in := inbox(t, adminB); len(in) != 2 {
		t.Fatalf("admin inbox has %d messages, want 2", len(in))
	}
	if ev := firstEvent(t, adminB); ev.GetMessageId() != id {
		t.Fatalf("admin's first event is for %s, want %s", ev.GetMessageId(), id)
	}
	if _, err := adminB.GetThread(ctx(t), &pocnetv1.GetThreadRequest{Id: id}); err != nil {
		t.Fatalf("admin thread: %v", err)
	}
}
