package governance_test

import (
	"crypto/ed25519"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/governance"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// t0 is the genesis time of every test chain: no test depends on the wall
// clock.
var t0 = time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)

// silence is the silence period of every test rule.
const silence = 14 * 24 * time.Hour

// The generated federation has 12 states, XAA to XLL. Chains start with
// some of them; XKK is kept to be admitted and XLL to be admitted as an
// observer.
var generated = sync.OnceValues(func() (*certs.Federation, error) {
	return certs.Generate(certs.Options{Count: 12, Now: func() time.Time { return t0 }})
})

// ten are the states of the ten-member federation.
var ten = []string{"XAA", "XBB", "XCC", "XDD", "XEE", "XFF", "XGG", "XHH", "XII", "XJJ"}

// world holds the keys and entries of the generated states.
type world struct {
	t    testing.TB
	keys map[string]ed25519.PrivateKey
	fed  *certs.Federation
}

func newWorld(t testing.TB) *world {
	t.Helper()
	f, err := generated()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, keys: map[string]ed25519.PrivateKey{}, fed: f}
	for _, s := range f.States {
		w.keys[s.Code] = s.SigningKey
	}
	return w
}

// member returns a copy of state's generated entry.
func (w *world) member(state string) *pocnetv1.Member {
	for _, m := range w.fed.Directory.GetMembers() {
		if m.GetState() == state {
			return proto.Clone(m).(*pocnetv1.Member)
		}
	}
	w.t.Fatalf("no generated state %s", state)
	return nil
}

func (w *world) observer(state string) *pocnetv1.Member {
	m := w.member(state)
	m.Kind = pocnetv1.MemberKind_MEMBER_KIND_OBSERVER
	return m
}

func (w *world) directory(members ...*pocnetv1.Member) *pocnetv1.Directory {
	return &pocnetv1.Directory{FederationId: w.fed.ID, Members: members}
}

func (w *world) states(codes ...string) []*pocnetv1.Member {
	var out []*pocnetv1.Member
	for _, c := range codes {
		out = append(out, w.member(c))
	}
	return out
}

func consensus() *pocnetv1.DecisionRule {
	return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Consensus{Consensus: &pocnetv1.ConsensusRule{}}, SilencePeriod: durationpb.New(silence)}
}

func supermajority(p uint32) *pocnetv1.DecisionRule {
	return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: p}}, SilencePeriod: durationpb.New(silence)}
}

func threshold(n uint32) *pocnetv1.DecisionRule {
	return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Threshold{Threshold: &pocnetv1.ThresholdRule{States: n}}, SilencePeriod: durationpb.New(silence)}
}

func entryUpdate(s string) *pocnetv1.Change {
	return &pocnetv1.Change{Change: &pocnetv1.Change_EntryUpdate{EntryUpdate: &pocnetv1.EntryUpdate{State: s}}}
}

func admission(s string) *pocnetv1.Change {
	return &pocnetv1.Change{Change: &pocnetv1.Change_Admission{Admission: &pocnetv1.Admission{State: s}}}
}

func removal(s string) *pocnetv1.Change {
	return &pocnetv1.Change{Change: &pocnetv1.Change_Removal{Removal: &pocnetv1.Removal{State: s}}}
}

func ruleChange() *pocnetv1.Change {
	return &pocnetv1.Change{Change: &pocnetv1.Change_RuleChange{RuleChange: &pocnetv1.RuleChange{}}}
}

func observerAdmission(s string, deadline time.Time) *pocnetv1.Change {
	return &pocnetv1.Change{Change: &pocnetv1.Change_ObserverAdmission{ObserverAdmission: &pocnetv1.ObserverAdmission{State: s, SilenceDeadline: timestamppb.New(deadline)}}}
}

// marshal serializes v, failing the test on error.
func (w *world) marshal(v *pocnetv1.DirectoryVersion) []byte {
	w.t.Helper()
	b, err := governance.Marshal(v)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

// sign returns data signed by each of signers with its generated key.
func (w *world) sign(data []byte, signers ...string) *pocnetv1.SignedVersion {
	w.t.Helper()
	sv := &pocnetv1.SignedVersion{Version: data}
	for _, s := range signers {
		sig, err := governance.Sign(s, w.keys[s], data)
		if err != nil {
			w.t.Fatal(err)
		}
		sv.Signatures = append(sv.Signatures, sig)
	}
	return sv
}

// object adds each objector's objection to sv.
func (w *world) object(sv *pocnetv1.SignedVersion, objectors ...string) *pocnetv1.SignedVersion {
	w.t.Helper()
	sv = proto.Clone(sv).(*pocnetv1.SignedVersion)
	for _, s := range objectors {
		o, err := governance.Object(s, w.keys[s], sv.GetVersion())
		if err != nil {
			w.t.Fatal(err)
		}
		sv.Objections = append(sv.Objections, o)
	}
	return sv
}

// genesisBytes is version 1 of a federation of members under rule.
func (w *world) genesisBytes(rule *pocnetv1.DecisionRule, members ...*pocnetv1.Member) []byte {
	return w.marshal(&pocnetv1.DirectoryVersion{Version: 1, IssuedAt: timestamppb.New(t0), Directory: w.directory(members...), Rule: rule})
}

// genesis is version 1 of a federation of codes under rule, signed by all.
func (w *world) genesis(rule *pocnetv1.DecisionRule, codes ...string) *governance.Version {
	w.t.Helper()
	v, err := governance.Verify(nil, w.sign(w.genesisBytes(rule, w.states(codes...)...), codes...), t0)
	if err != nil {
		w.t.Fatalf("genesis: %v", err)
	}
	return v
}

// child returns the bytes of parent's child, issued an hour after parent,
// with change and the edit applied to a copy of parent's directory and rule.
func (w *world) child(parent *governance.Version, change *pocnetv1.Change, edit func(*pocnetv1.DirectoryVersion)) []byte {
	w.t.Helper()
	h := parent.Hash()
	v := &pocnetv1.DirectoryVersion{
		Version:    parent.Number() + 1,
		ParentHash: h[:],
		IssuedAt:   timestamppb.New(parent.IssuedAt().Add(time.Hour)),
		Directory:  proto.Clone(parent.Directory().Proto()).(*pocnetv1.Directory),
		Rule:       proto.Clone(parent.Rule()).(*pocnetv1.DecisionRule),
		Change:     change,
	}
	if edit != nil {
		edit(v)
	}
	return w.marshal(v)
}

// Edits of a version's directory.

func rename(state, name string) func(*pocnetv1.DirectoryVersion) {
	return func(v *pocnetv1.DirectoryVersion) {
		for _, m := range v.Directory.Members {
			if m.State == state {
				m.Name = name
			}
		}
	}
}

func add(m *pocnetv1.Member) func(*pocnetv1.DirectoryVersion) {
	return func(v *pocnetv1.DirectoryVersion) { v.Directory.Members = append(v.Directory.Members, m) }
}

func drop(state string) func(*pocnetv1.DirectoryVersion) {
	return func(v *pocnetv1.DirectoryVersion) {
		v.Directory.Members = slices.DeleteFunc(v.Directory.Members, func(m *pocnetv1.Member) bool { return m.State == state })
	}
}

func setRule(r *pocnetv1.DecisionRule) func(*pocnetv1.DirectoryVersion) {
	return func(v *pocnetv1.DirectoryVersion) { v.Rule = r }
}

func both(edits ...func(*pocnetv1.DirectoryVersion)) func(*pocnetv1.DirectoryVersion) {
	return func(v *pocnetv1.DirectoryVersion) {
		for _, e := range edits {
			e(v)
		}
	}
}

// all returns codes except those in but.
func all(codes []string, but ...string) []string {
	return slices.DeleteFunc(slices.Clone(codes), func(s string) bool { return slices.Contains(but, s) })
}
