package governance_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pocnet/pocnet/internal/governance"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// wantErr fails the test unless err is target and contains want.
func wantErr(t *testing.T, err, target error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v containing %q", target, want)
	}
	if !errors.Is(err, target) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q, want %v containing %q", err, target, want)
	}
}

// TestChainSequence runs a ten-member federation through each kind of
// change, with the refusals that belong to each step.
func TestChainSequence(t *testing.T) {
	w := newWorld(t)
	gb := w.sign(w.genesisBytes(supermajority(70), w.states(ten...)...), ten...)
	c, err := governance.NewChain(gb, t0)
	if err != nil {
		t.Fatalf("NewChain: %v", err)
	}
	appendTo := func(t *testing.T, sv *pocnetv1.SignedVersion, at time.Time) *governance.Version {
		t.Helper()
		v, err := c.Add(sv, at)
		if err != nil {
			t.Fatalf("Add: %v", err)
		}
		if c.Latest() != v {
			t.Fatalf("Latest is version %d, not the added %d", c.Latest().Number(), v.Number())
		}
		return v
	}

	// 2: XCC changes its own entry.
	v2 := appendTo(t, w.sign(w.child(c.Latest(), entryUpdate("XCC"), rename("XCC", "Republic of XCC")), "XCC"), now)
	if m, _ := v2.Directory().Member("XCC"); m.GetName() != "Republic of XCC" {
		t.Fatalf("XCC's name is %q", m.GetName())
	}

	// 3: XKK is admitted by 70% of ten: 7 signatures; 6 are refused.
	admit := w.child(v2, admission("XKK"), add(w.member("XKK")))
	_, err = c.Add(w.sign(admit, ten[:6]...), now)
	wantErr(t, err, governance.ErrUnauthorized, "version 3: 6 signatures of the 7 needed under supermajority of 70%; not signed by: XGG, XHH, XII, XJJ")
	v3 := appendTo(t, w.sign(admit, ten[:7]...), now)

	// 4: the rule becomes a threshold of 3, under 70% of eleven: 8.
	eleven := append(slices.Clone(ten), "XKK")
	change := w.child(v3, ruleChange(), setRule(threshold(3)))
	_, err = c.Add(w.sign(change, eleven[4:]...), now)
	wantErr(t, err, governance.ErrUnauthorized, "version 4: 7 signatures of the 8 needed under supermajority of 70%; not signed by: XAA, XBB, XCC, XDD")
	v4 := appendTo(t, w.sign(change, eleven[3:]...), now)

	// 5: XJJ is removed under the threshold: 3 signatures; 2 are refused.
	remove := w.child(v4, removal("XJJ"), drop("XJJ"))
	_, err = c.Add(w.sign(remove, "XKK", "XAA"), now)
	wantErr(t, err, governance.ErrUnauthorized, "version 5: 2 signatures of the 3 needed under threshold of 3 states")
	v5 := appendTo(t, w.sign(remove, "XKK", "XAA", "XHH"), now)

	// 6: XLL is admitted as an observer by silence, proposed by XAA.
	deadline := v5.IssuedAt().Add(time.Hour + silence)
	proposal := w.sign(w.child(v5, observerAdmission("XLL", deadline), add(w.observer("XLL"))), "XAA")
	_, err = c.Add(proposal, deadline.Add(-time.Second))
	wantErr(t, err, governance.ErrNotYetEffective, "version 6: admission of XLL takes effect at ")
	_, err = c.Add(w.object(proposal, "XEE"), deadline)
	wantErr(t, err, governance.ErrObjected, "version 6: admission of XLL objected to by XEE")
	// XJJ was removed in version 5: its objection no longer counts, and is
	// refused rather than ignored.
	_, err = c.Add(w.object(proposal, "XJJ"), deadline)
	wantErr(t, err, governance.ErrUnauthorized, `version 6: objections[0]: "XJJ" is not a member of the directory in force`)
	v6 := appendTo(t, proposal, deadline)
	if m, ok := v6.Directory().Member("XLL"); !ok || m.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_OBSERVER {
		t.Fatalf("XLL after admission: %v", m)
	}

	// A signature from the removed XJJ is refused.
	_, err = c.Add(w.sign(w.child(v6, admission("XJJ"), add(w.member("XJJ"))), "XAA", "XBB", "XJJ"), now)
	wantErr(t, err, governance.ErrUnauthorized, `version 7: signatures[2]: "XJJ" is not a member of the directory in force`)

	// Replays of older or equal versions.
	for _, old := range []*governance.Version{c.Latest(), v3, v2} {
		_, err := c.Add(old.Signed(), now)
		wantErr(t, err, governance.ErrStale, "is already in the chain (version 6 in force)")
	}
	_, err = c.Add(gb, now)
	wantErr(t, err, governance.ErrStale, "version 1 is already the genesis of this chain")

	// A fork: a second valid version 6 on version 5. Refused, reported,
	// never applied.
	sibling := w.sign(w.child(v5, entryUpdate("XBB"), rename("XBB", "B")), "XBB")
	_, err = c.Add(sibling, now)
	var fe *governance.ForkError
	if !errors.As(err, &fe) {
		t.Fatalf("Add of a sibling = %v, want a *ForkError", err)
	}
	if fe.Version != 6 || fe.Parent != v5.Hash() || fe.Have != v6.Hash() || fe.Got != governance.Hash(sibling.GetVersion()) || len(fe.Equivocators) != 0 {
		t.Fatalf("ForkError %+v", fe)
	}
	if c.Latest() != v6 {
		t.Fatalf("the fork was applied: latest is %x", c.Latest().Hash())
	}
	// XAA proposed version 6 and signs a conflicting one: it is named.
	_, err = c.Add(w.sign(w.child(v5, entryUpdate("XAA"), rename("XAA", "A")), "XAA"), now)
	if !errors.As(err, &fe) || !slices.Equal(fe.Equivocators, []string{"XAA"}) || !strings.Contains(err.Error(), "fork at version 6 (parent ") || !strings.HasSuffix(err.Error(), "; signed both: XAA") {
		t.Fatalf("Add of an equivocation = %v", err)
	}
	if got := c.Forks(); len(got) != 2 {
		t.Fatalf("Forks() has %d forks, want 2", len(got))
	}
	// A sibling that does not verify is not a fork: it is refused for
	// what it is.
	_, err = c.Add(w.sign(w.child(v5, entryUpdate("XBB"), rename("XBB", "B2")), "XAA"), now)
	wantErr(t, err, governance.ErrUnauthorized, "version 6: entry of XBB changed but signed by XAA only")

	// Versions whose parent the chain does not hold.
	v6h := v6.Hash()
	_, err = c.Add(w.sign(w.marshal(&pocnetv1.DirectoryVersion{Version: 8, ParentHash: v6h[:]}), "XAA"), now)
	wantErr(t, err, governance.ErrUnknownParent, "version 8: the chain ends at version 6; the versions between are missing")
	forked, err := governance.Verify(v5, sibling, now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Add(w.sign(w.child(forked, entryUpdate("XBB"), rename("XBB", "B3")), "XBB"), now)
	wantErr(t, err, governance.ErrUnknownParent, "version 7: parent ")

	// The chain replays from its genesis to the same version.
	replay, err := governance.NewChain(gb, now)
	if err != nil {
		t.Fatal(err)
	}
	for n := uint64(2); n <= c.Latest().Number(); n++ {
		v, _ := c.Version(n)
		if _, err := replay.Add(v.Signed(), now); err != nil {
			t.Fatalf("replay of version %d: %v", n, err)
		}
	}
	if replay.Latest().Hash() != c.Latest().Hash() {
		t.Fatal("replay ends elsewhere")
	}
	if _, ok := c.Version(0); ok {
		t.Error("Version(0) exists")
	}
	if _, ok := c.Version(7); ok {
		t.Error("Version(7) exists")
	}
}

func TestNewChainRefusesBadGenesis(t *testing.T) {
	w := newWorld(t)
	_, err := governance.NewChain(w.sign(w.genesisBytes(consensus(), w.states(five...)...), "XAA"), now)
	wantErr(t, err, governance.ErrUnauthorized, "version 1: 1 signatures of the 5 needed for a genesis")
}
