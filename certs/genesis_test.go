package certs_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/governance"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func threshold(n uint32) *pocnetv1.DecisionRule {
	return &pocnetv1.DecisionRule{
		Rule:          &pocnetv1.DecisionRule_Threshold{Threshold: &pocnetv1.ThresholdRule{States: n}},
		SilencePeriod: durationpb.New(time.Hour),
	}
}

// TestGenesis: the genesis holds the directory and the rule, is issued at
// the federation's time, and verifies as the start of a chain: every state
// signed it with the key its entry publishes.
func TestGenesis(t *testing.T) {
	f := generate(t, certs.Options{Count: 3})
	if !proto.Equal(f.Options().Rule, certs.DefaultRule()) {
		t.Fatalf("default rule = %v", f.Options().Rule)
	}
	if r := certs.DefaultRule(); r.GetSupermajority().GetPercent() != 70 || r.GetSilencePeriod().AsDuration() != 72*time.Hour {
		t.Fatalf("DefaultRule() = %v", r)
	}
	sv, err := f.Genesis()
	if err != nil {
		t.Fatalf("Genesis: %v", err)
	}
	c, err := governance.NewChain(sv, t0)
	if err != nil {
		t.Fatalf("NewChain: %v", err)
	}
	v := c.Latest()
	if v.Number() != 1 || !v.IssuedAt().Equal(t0) || !proto.Equal(v.Rule(), certs.DefaultRule()) || !proto.Equal(v.Directory().Proto(), f.Directory) {
		t.Fatalf("genesis: version %d issued %s, rule %v", v.Number(), v.IssuedAt(), v.Rule())
	}
	if got := v.Signers(); !slices.Equal(got, []string{"XAA", "XBB", "XCC"}) {
		t.Fatalf("signers = %v", got)
	}

	// The options' rule is the genesis's, and a later edit of the returned
	// options changes nothing.
	f = generate(t, certs.Options{Count: 3, Rule: threshold(2)})
	f.Options().Rule.GetThreshold().States = 3
	if sv, err = f.Genesis(); err != nil {
		t.Fatal(err)
	}
	if c, err = governance.NewChain(sv, t0); err != nil || !proto.Equal(c.Latest().Rule(), threshold(2)) {
		t.Fatalf("genesis with threshold(2): %v", err)
	}
}

// TestGenesisFollowsEditedDirectory: the genesis is made from the directory
// as it is when asked for; an observer does not sign it, and a directory the
// founders could not sign is refused with the reason.
func TestGenesisFollowsEditedDirectory(t *testing.T) {
	f := generate(t, certs.Options{Count: 3})
	f.Directory.Members[2].Kind = pocnetv1.MemberKind_MEMBER_KIND_OBSERVER
	f.Directory.Members[0].Endpoints = []string{"127.0.0.1:9999"}
	sv, err := f.Genesis()
	if err != nil {
		t.Fatalf("Genesis: %v", err)
	}
	c, err := governance.NewChain(sv, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Latest().Signers(); !slices.Equal(got, []string{"XAA", "XBB"}) {
		t.Errorf("signers = %v, want the state members only", got)
	}
	if ep := c.Latest().Directory().Endpoints("XAA"); !slices.Equal(ep, []string{"127.0.0.1:9999"}) {
		t.Errorf("XAA endpoints = %v", ep)
	}

	// A state member whose key certs did not make cannot sign.
	other := generate(t, certs.Options{States: []string{"XZZ"}})
	f.Directory.Members = append(f.Directory.Members, other.Directory.Members[0])
	if _, err := f.Genesis(); err == nil || !strings.Contains(err.Error(), "state member XZZ was not generated") {
		t.Errorf("Genesis with a foreign state member = %v", err)
	}

	// A rule the state members cannot meet.
	f = generate(t, certs.Options{Count: 2, Rule: threshold(2)})
	f.Directory.Members[1].Kind = pocnetv1.MemberKind_MEMBER_KIND_OBSERVER
	if _, err := f.Genesis(); !errors.Is(err, governance.ErrInvalid) || !strings.Contains(err.Error(), "rule.threshold.states: 2 is more than the 1 state members") {
		t.Errorf("Genesis with an unreachable threshold = %v", err)
	}
	// Write refuses it before writing anything.
	dir := filepath.Join(t.TempDir(), "fed")
	if err := f.Write(dir); err == nil {
		t.Error("Write wrote a federation whose genesis does not verify")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a refused Write created %s", dir)
	}
}

func TestRuleOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		rule *pocnetv1.DecisionRule
		want string
	}{
		{"threshold above the states", threshold(4), "certs: Rule: rule.threshold.states: 4 is more than the 3 state members"},
		{"no kind", &pocnetv1.DecisionRule{SilencePeriod: durationpb.New(time.Hour)}, "certs: Rule: rule: one of consensus"},
		{"low supermajority", &pocnetv1.DecisionRule{
			Rule:          &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: 50}},
			SilencePeriod: durationpb.New(time.Hour),
		}, "certs: Rule: rule.supermajority.percent: 50"},
		{"no silence period", &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Consensus{Consensus: &pocnetv1.ConsensusRule{}}}, "certs: Rule: rule.silence_period: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := certs.Generate(certs.Options{Count: 3, Rule: tt.rule, Now: fixedNow})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Generate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestWriteRefusesExistingGenesis(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, certs.GenesisFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := generate(t, certs.Options{Count: 1}).Write(dir)
	if !errors.Is(err, certs.ErrExists) || !strings.Contains(err.Error(), filepath.Join(dir, "genesis.json")) {
		t.Fatalf("Write over a genesis.json = %v", err)
	}
}
