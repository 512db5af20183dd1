package node_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestTenNodeFederationGovernsItself runs ten real nodes over mutual TLS,
// each with its own Pebble store, and changes their directory while they
// run, without restarting any of them:
//   - an entry update made on one node converges on all ten;
//   - a new member admitted under a 70% supermajority (7 of 10 signatures,
//     each made on the signer's own node) joins from the genesis alone and
//     exchanges communications with the others;
//   - a node certificate its own state revokes is refused by every node,
//     while the state's node goes on with the certificate that replaced it.
func TestTenNodeFederationGovernsItself(t *testing.T) {
	if testing.Short() {
		t.Skip("ten nodes")
	}
	rule := &pocnetv1.DecisionRule{
		Rule:          &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: 70}},
		SilencePeriod: durationpb.New(72 * time.Hour),
	}
	f := testfed.Start(t, testfed.Options{States: 10, Rule: rule, Quiet: true})
	states := f.States()
	bg := context.Background()
	converged := func(what string, n uint64, codes []string) {
		t.Helper()
		testfed.WaitFor(t, what, func() bool {
			var h [32]byte
			for i, s := range codes {
				l := f.Node(s).Directory().Latest()
				if l.Number() != n {
					return false
				}
				if i == 0 {
					h = l.Hash()
				} else if l.Hash() != h {
					t.Fatalf("%s holds another version %d than %s", s, n, codes[0])
				}
			}
			return true
		})
	}

	// 1. XDD changes its own entry on its own node: every node has it.
	entry := proto.Clone(member(t, f, "XDD")).(*pocnetv1.Member)
	entry.PointsOfContact[0].Languages = []string{"en", "fr", "es"}
	if _, err := f.Node("XDD").Directory().UpdateEntry(bg, entry, 1); err != nil {
		t.Fatal(err)
	}
	converged("the entry update on all ten", 2, states)
	for _, s := range states {
		if got, _ := f.Node(s).Directory().Source().Directory().Member("XDD"); !proto.Equal(got, entry) {
			t.Fatalf("%s does not have XDD's new entry in force:\n%v\nwant\n%v", s, got, entry)
		}
	}

	// 2. XKK is admitted: proposed on XAA, signed on six more nodes.
	xkk := f.NewMember("XKK", false)
	p, err := f.Node("XAA").Directory().Propose(bg, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{Admit: xkk.Entry}})
	if err != nil {
		t.Fatal(err)
	}
	if p.GetNeeded() != 7 {
		t.Fatalf("admission needs %d signatures, want 7 of 10 under 70%%", p.GetNeeded())
	}
	for _, s := range states[1:6] {
		held(t, f, s, p.GetHash())
		q, err := f.Node(s).Directory().Sign(bg, p.GetHash())
		if err != nil {
			t.Fatalf("%s signs: %v", s, err)
		}
		if q.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_PENDING || !slices.Contains(q.GetSigned(), s) || !slices.Contains(q.GetSigned(), "XAA") {
			t.Fatalf("after %s signed: %v with %v", s, q.GetState(), q.GetSigned())
		}
	}
	// Signatures travel between nodes: XGG's node holds all six.
	testfed.WaitFor(t, "XGG holds six signatures", func() bool {
		for _, q := range f.Node("XGG").Directory().Proposals() {
			if string(q.GetHash()) == string(p.GetHash()) {
				return len(q.GetSigned()) == 6 && q.GetNeeded() == 7
			}
		}
		return false
	})
	for _, s := range states {
		if f.Node(s).Directory().Latest().Number() != 2 {
			t.Fatalf("%s adopted the admission one signature short", s)
		}
	}
	if q, err := f.Node("XGG").Directory().Sign(bg, p.GetHash()); err != nil || q.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED {
		t.Fatalf("the seventh signature: %v, %v", q.GetState(), err)
	}
	converged("the admission on all ten", 3, states)
	if err := f.StartMember("XKK"); err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(states), "XKK")
	converged("XKK caught up", 3, all)
	toXKK := send(t, f.Contact("XEE", "technical"), "XKK", "technical", rfi("welcome"))
	fromXKK := send(t, f.Contact("XKK", "technical"), "XJJ", "technical", rfi("hello from the new member"))
	waitStatus(t, f.Contact("XEE", "admin"), toXKK.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	waitStatus(t, f.Contact("XKK", "admin"), fromXKK.GetId(), pocnetv1.Status_STATUS_DELIVERED)

	// 3. XCC replaces its node certificate, then revokes the old one.
	cc := f.Certs.State("XCC")
	old := cc.Node
	now := time.Now()
	renewed, err := cc.CA.Issue(identity.Node(f.Certs.ID, "XCC"), now.Add(-time.Minute), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.Node("XCC").Config
	if err := os.WriteFile(cfg.TLS.Cert, renewed.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.TLS.Key, renewed.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Node("XCC").ReloadCertificates(); err != nil {
		t.Fatal(err)
	}
	// Before the revocation the old certificate is still accepted.
	if _, err := f.Relay("XCC", "XBB").Ping(ctxT(t), &pocnetv1.PingRequest{}); err != nil {
		t.Fatalf("old certificate before its revocation: %v", err)
	}
	sum := sha256.Sum256(old.Cert.Raw)
	entry = proto.Clone(member(t, f, "XCC")).(*pocnetv1.Member)
	entry.RevokedCertificates = append(entry.RevokedCertificates, &pocnetv1.RevokedCertificate{Sha256: sum[:], RevokedAt: timestamppb.New(now), Reason: "key compromise"})
	if _, err := f.Node("XCC").Directory().UpdateEntry(bg, entry, 0); err != nil {
		t.Fatal(err)
	}
	converged("the revocation on all eleven", 4, all)
	for _, s := range all {
		if s == "XCC" {
			continue
		}
		// A connection opened with the old certificate is refused.
		conn := f.Dial(s, &old.TLS)
		_, err := pocnetv1.NewRelayServiceClient(conn).Ping(ctxT(t), &pocnetv1.PingRequest{})
		if err == nil {
			t.Fatalf("%s accepted XCC's revoked certificate", s)
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.Unauthenticated {
			t.Fatalf("%s: revoked certificate refused with %v, want a handshake failure", s, err)
		}
		// The renewed one is accepted.
		if _, err := pocnetv1.NewRelayServiceClient(f.Dial(s, &renewed.TLS)).Ping(ctxT(t), &pocnetv1.PingRequest{}); err != nil {
			t.Fatalf("%s refused XCC's renewed certificate: %v", s, err)
		}
	}
	// XCC's node goes on with the renewed certificate.
	m := send(t, f.Contact("XCC", "technical"), "XHH", "technical", rfi("after the revocation"))
	waitStatus(t, f.Contact("XCC", "admin"), m.GetId(), pocnetv1.Status_STATUS_DELIVERED)
}

// member returns state's entry in the directory in force at its own node.
func member(t *testing.T, f *testfed.Federation, state string) *pocnetv1.Member {
	t.Helper()
	m, ok := f.Node(state).Directory().Source().Directory().Member(state)
	if !ok {
		t.Fatalf("%s is not a member", state)
	}
	return m
}

// held waits until state's node holds the proposal.
func held(t *testing.T, f *testfed.Federation, state string, hash []byte) {
	t.Helper()
	testfed.WaitFor(t, fmt.Sprintf("%s holds proposal %x", state, hash[:4]), func() bool {
		for _, p := range f.Node(state).Directory().Proposals() {
			if string(p.GetHash()) == string(hash) {
				return true
			}
		}
		return false
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
