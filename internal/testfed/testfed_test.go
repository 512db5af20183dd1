package testfed_test

import (
	"context"
	"crypto/ed25519"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestGenesis: the nodes start from a genesis signed by every state with
// the keys the federation exposes, under the rule asked for.
func TestGenesis(t *testing.T) {
	rule := &pocnetv1.DecisionRule{
		Rule:          &pocnetv1.DecisionRule_Threshold{Threshold: &pocnetv1.ThresholdRule{States: 2}},
		SilencePeriod: durationpb.New(time.Hour),
	}
	f := testfed.Start(t, testfed.Options{States: 3, Rule: rule, Directory: func(d *pocnetv1.Directory) {
		d.Members[2].Name = "Edited before signing"
	}})
	c, err := governance.NewChain(f.Genesis, time.Now())
	if err != nil {
		t.Fatalf("NewChain(f.Genesis): %v", err)
	}
	v := c.Latest()
	if !proto.Equal(v.Rule(), rule) || !slices.Equal(v.Signers(), f.States()) || !proto.Equal(v.Directory().Proto(), f.Certs.Directory) {
		t.Fatalf("genesis: rule %v, signers %v", v.Rule(), v.Signers())
	}
	if m, _ := v.Directory().Member("XCC"); m.GetName() != "Edited before signing" {
		t.Errorf("the Directory edit is not in the genesis: %q", m.GetName())
	}
	for _, s := range f.States() {
		id := directory.SigningKeyID(f.SigningKey(s).Public().(ed25519.PublicKey))
		if _, err := v.Directory().SigningKeyValid(s, id, time.Now()); err != nil {
			t.Errorf("SigningKey(%s): %v", s, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := f.Contact("XBB", "admin").GetDirectory(ctx, &pocnetv1.GetDirectoryRequest{})
	if err != nil || !proto.Equal(resp.GetDirectory(), f.Certs.Directory) {
		t.Fatalf("the node's directory is not the genesis's: %v", err)
	}
}

// TestNewMember: a participant's node does not start while the directory
// does not list it; once the members admit it, it starts from the genesis,
// catches up and is reachable, without any node being restarted.
func TestNewMember(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	m := f.NewMember("XDD", false)
	if m.Entry.GetState() != "XDD" || m.Entry.GetEndpoints()[0] != f.Node("XDD").Addr {
		t.Fatalf("entry %v, node at %s", m.Entry, f.Node("XDD").Addr)
	}
	if !f.SigningKey("XDD").Equal(m.SigningKey) {
		t.Fatal("SigningKey(XDD) is not the member's key")
	}
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := f.StartMemberContext(short, "XDD")
	cancelShort()
	if err == nil || !strings.Contains(err.Error(), "XDD is not a member of the federation's directory") {
		t.Fatalf("StartMember before admission = %v", err)
	}
	if obs := f.NewMember("XOO", true); obs.Entry.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_OBSERVER {
		t.Fatalf("observer entry kind %v", obs.Entry.GetKind())
	}

	// The members admit XDD under the default rule (70% of two states:
	// both), on their running nodes.
	bg := context.Background()
	p, err := f.Node("XAA").Directory().Propose(bg, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{Admit: m.Entry}})
	if err != nil {
		t.Fatal(err)
	}
	testfed.WaitFor(t, "XBB holds the proposal", func() bool {
		for _, q := range f.Node("XBB").Directory().Proposals() {
			if string(q.GetHash()) == string(p.GetHash()) {
				return true
			}
		}
		return false
	})
	if _, err := f.Node("XBB").Directory().Sign(bg, p.GetHash()); err != nil {
		t.Fatal(err)
	}
	// The participant's node, started from its own copy of the genesis,
	// learns the chain from the members' nodes.
	if err := f.StartMember("XDD"); err != nil {
		t.Fatalf("StartMember after admission: %v", err)
	}
	if err := f.StartMember("XDD"); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("StartMember twice = %v", err)
	}
	if n := f.Node("XDD").Directory().Latest().Number(); n != 2 {
		t.Fatalf("XDD started at directory version %d, want 2", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sent, err := f.Contact("XAA", "technical").SendCommunication(ctx, &pocnetv1.SendCommunicationRequest{
		ToState: "XDD", ToRole: "technical", Communication: &pocnetv1.Communication{
			Kind: pocnetv1.Kind_KIND_NOTIFICATION, Urgency: pocnetv1.Urgency_URGENCY_ROUTINE,
			Subject: "Welcome", Body: "Welcome to the federation.", Language: "en",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	adminA := f.Contact("XAA", "admin")
	testfed.WaitFor(t, "delivery to the new member", func() bool {
		r, err := adminA.GetMessage(ctx, &pocnetv1.GetMessageRequest{Id: sent.GetMessage().GetId()})
		return err == nil && r.GetMessage().GetStatus() == pocnetv1.Status_STATUS_DELIVERED
	})
	f.Restart("XDD")
}
