package governance_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/governance"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func TestNextVersionsVerifyOnceSigned(t *testing.T) {
	w := newWorld(t)
	g := w.genesis(supermajority(70), "XAA", "XBB", "XCC", "XDD")
	at := t0.Add(time.Hour)
	renamed := w.member("XBB")
	renamed.Name = "Renamed"
	cases := []struct {
		name    string
		make    func() ([]byte, error)
		signers []string
		now     time.Time
	}{
		{"entry update", func() ([]byte, error) { return governance.NextEntryUpdate(g, renamed, at) }, []string{"XBB"}, at},
		{"admission", func() ([]byte, error) { return governance.NextAdmission(g, w.member("XKK"), at) }, []string{"XAA", "XBB", "XCC"}, at},
		{"removal", func() ([]byte, error) { return governance.NextRemoval(g, "XDD", at) }, []string{"XAA", "XBB", "XCC"}, at},
		{"withdrawal", func() ([]byte, error) { return governance.NextRemoval(g, "XDD", at) }, []string{"XDD"}, at},
		{"rule change", func() ([]byte, error) { return governance.NextRuleChange(g, consensus(), at) }, []string{"XAA", "XBB", "XCC"}, at},
		{"observer admission", func() ([]byte, error) { return governance.NextObserverAdmission(g, w.observer("XLL"), at) }, []string{"XAA"}, at.Add(silence)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, err := c.make()
			if err != nil {
				t.Fatal(err)
			}
			v, err := governance.Verify(g, w.sign(data, c.signers...), c.now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if v.Number() != 2 || !v.IssuedAt().Equal(at) {
				t.Fatalf("version %d issued %s, want 2 issued %s", v.Number(), v.IssuedAt(), at)
			}
		})
	}
}

func TestNextRefusesBadInput(t *testing.T) {
	w := newWorld(t)
	g := w.genesis(consensus(), "XAA", "XBB")
	at := t0.Add(time.Hour)
	noKeys := w.member("XBB")
	noKeys.SigningKeys = nil
	observerAsState := w.observer("XLL")
	cases := []struct {
		name string
		make func() ([]byte, error)
		want string
	}{
		{"update of a non-member", func() ([]byte, error) { return governance.NextEntryUpdate(g, w.member("XKK"), at) }, "XKK\" is not a member"},
		{"update leaving no signing key", func() ([]byte, error) { return governance.NextEntryUpdate(g, noKeys, at) }, "signing_keys"},
		{"admission of a member", func() ([]byte, error) { return governance.NextAdmission(g, w.member("XBB"), at) }, "listed twice"},
		{"admission of an observer", func() ([]byte, error) { return governance.NextAdmission(g, observerAsState, at) }, "observers are admitted by observer_admission"},
		{"removal of a non-member", func() ([]byte, error) { return governance.NextRemoval(g, "XKK", at) }, "XKK\" is not a member"},
		{"same rule", func() ([]byte, error) { return governance.NextRuleChange(g, consensus(), at) }, "rule is unchanged"},
		{"no rule", func() ([]byte, error) { return governance.NextRuleChange(g, nil, at) }, "rule: required"},
		{"rule locking out", func() ([]byte, error) { return governance.NextRuleChange(g, threshold(0), at) }, "threshold"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.make()
			if !errors.Is(err, governance.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrInvalid naming %q", err, c.want)
			}
		})
	}
}

func TestNextNeverGoesBackInTime(t *testing.T) {
	w := newWorld(t)
	g := w.genesis(consensus(), "XAA", "XBB")
	if _, err := governance.NextEntryUpdate(g, w.member("XAA"), t0); !errors.Is(err, governance.ErrInvalid) {
		t.Fatalf("an unchanged entry: %v, want ErrInvalid", err)
	}
	m := w.member("XAA")
	m.Name = "Later"
	data, err := governance.NextEntryUpdate(g, m, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	v, err := governance.Verify(g, w.sign(data, "XAA"), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !v.IssuedAt().Equal(t0) {
		t.Fatalf("issued %s, want the parent's %s", v.IssuedAt(), t0)
	}
}

func TestAssessCountsWhatIsMissing(t *testing.T) {
	w := newWorld(t)
	g := w.genesis(supermajority(70), "XAA", "XBB", "XCC", "XDD", "XEE")
	at := t0.Add(time.Hour)
	data, err := governance.NextAdmission(g, w.member("XKK"), at)
	if err != nil {
		t.Fatal(err)
	}
	st, err := governance.Assess(g, w.sign(data, "XAA", "XCC"), at)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready || st.Needed != 4 || !slices.Equal(st.Signed, []string{"XAA", "XCC"}) || !slices.Equal(st.Missing(), []string{"XBB", "XDD", "XEE"}) {
		t.Fatalf("status ready=%v needed=%d signed=%v missing=%v", st.Ready, st.Needed, st.Signed, st.Missing())
	}
	if !errors.Is(st.NotReady, governance.ErrUnauthorized) {
		t.Fatalf("NotReady = %v", st.NotReady)
	}
	st, err = governance.Assess(g, w.sign(data, "XAA", "XCC", "XBB", "XEE"), at)
	if err != nil || !st.Ready {
		t.Fatalf("four of five under 70%%: %v %+v", err, st)
	}

	// An observer admission waits, then takes effect; one objection stops it.
	obs, err := governance.NextObserverAdmission(g, w.observer("XLL"), at)
	if err != nil {
		t.Fatal(err)
	}
	st, err = governance.Assess(g, w.sign(obs, "XBB"), at)
	if err != nil || st.Ready || !errors.Is(st.NotReady, governance.ErrNotYetEffective) || !st.Deadline.Equal(at.Add(silence)) {
		t.Fatalf("during silence: %v %+v", err, st)
	}
	st, err = governance.Assess(g, w.sign(obs, "XBB"), at.Add(silence))
	if err != nil || !st.Ready {
		t.Fatalf("after silence: %v %+v", err, st)
	}
	st, err = governance.Assess(g, w.object(w.sign(obs, "XBB"), "XDD"), at.Add(silence))
	if err != nil || st.Ready || !errors.Is(st.NotReady, governance.ErrObjected) || !slices.Equal(st.Objected, []string{"XDD"}) {
		t.Fatalf("objected: %v %+v", err, st)
	}

	// A signature that does not verify fails the assessment.
	bad := w.sign(data, "XAA")
	bad.Signatures[0].Signature[0] ^= 1
	if _, err := governance.Assess(g, bad, at); !errors.Is(err, governance.ErrUnauthorized) {
		t.Fatalf("bad signature: %v", err)
	}
}

func TestMergeKeepsOnlyValidSignatures(t *testing.T) {
	w := newWorld(t)
	members := []string{"XAA", "XBB", "XCC", "XDD"}
	g := w.genesis(threshold(3), members...)
	at := t0.Add(time.Hour)
	data, err := governance.NextAdmission(g, w.member("XKK"), at)
	if err != nil {
		t.Fatal(err)
	}
	have := w.sign(data, "XAA")
	got := w.sign(data, "XBB", "XCC", "XAA")
	forged := proto.Clone(got.Signatures[0]).(*pocnetv1.VersionSignature)
	forged.State = "XDD" // XBB's signature claimed for XDD
	got.Signatures = append(got.Signatures, forged)
	objection := w.object(w.sign(data), "XCC").Objections[0]
	got.Objections = append(got.Objections, objection) // not an observer admission

	merged, added, dropped, err := governance.Merge(g, have, got, at)
	if err != nil {
		t.Fatal(err)
	}
	if added != 2 || dropped != 2 {
		t.Fatalf("added %d dropped %d, want 2 and 2", added, dropped)
	}
	if len(have.Signatures) != 1 {
		t.Fatalf("Merge modified have")
	}
	if _, err := governance.Verify(g, merged, at); err != nil {
		t.Fatalf("merged: %v", err)
	}
	// Merging again adds nothing: gossip converges.
	if _, added, _, err := governance.Merge(g, merged, got, at); err != nil || added != 0 {
		t.Fatalf("second merge added %d: %v", added, err)
	}
	// Two different versions never merge.
	other, err := governance.NextAdmission(g, w.member("XJJ"), at)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := governance.Merge(g, have, w.sign(other, "XBB"), at); !errors.Is(err, governance.ErrInvalid) {
		t.Fatalf("merging different versions: %v", err)
	}
	// A signature by an observer never counts for a decision.
	g2 := w.genesis(consensus(), "XAA", "XBB")
	obsData, err := governance.NextObserverAdmission(g2, w.observer("XLL"), at)
	if err != nil {
		t.Fatal(err)
	}
	v3, err := governance.Verify(g2, w.sign(obsData, "XAA"), at.Add(silence))
	if err != nil {
		t.Fatal(err)
	}
	adm, err := governance.NextAdmission(v3, w.member("XKK"), at.Add(silence))
	if err != nil {
		t.Fatal(err)
	}
	_, added, dropped, err = governance.Merge(v3, w.sign(adm, "XAA"), w.sign(adm, "XLL", "XBB"), at.Add(silence))
	if err != nil || added != 1 || dropped != 1 {
		t.Fatalf("observer's signature: added %d dropped %d err %v", added, dropped, err)
	}
}

func TestChainAppendTakesOnlyTheLatestsChild(t *testing.T) {
	w := newWorld(t)
	g := w.genesis(consensus(), "XAA", "XBB")
	c, err := governance.NewChain(g.Signed(), t0)
	if err != nil {
		t.Fatal(err)
	}
	m := w.member("XAA")
	m.Name = "Renamed"
	data, err := governance.NextEntryUpdate(g, m, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	v, err := governance.Verify(g, w.sign(data, "XAA"), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Append(v); err != nil || c.Latest() != v {
		t.Fatalf("Append of the child: %v", err)
	}
	if err := c.Append(v); !errors.Is(err, governance.ErrUnknownParent) || c.Latest().Number() != 2 {
		t.Fatalf("Append of a version whose parent is not the latest: %v", err)
	}
}
