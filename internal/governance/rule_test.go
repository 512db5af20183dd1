package governance_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pocnet/pocnet/internal/governance"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func TestRequired(t *testing.T) {
	one, two, three := ten[:1], ten[:2], ten[:3]
	seven := ten[:7]
	deadline := t0.Add(silence)
	tests := []struct {
		name         string
		rule         *pocnetv1.DecisionRule
		states       []string
		change       *pocnetv1.Change
		needed       int
		eligible     []string
		wantEligible bool // check eligible against the field
	}{
		{"consensus of 1", consensus(), one, admission("XKK"), 1, one, true},
		{"consensus of 3", consensus(), three, admission("XKK"), 3, three, true},
		{"consensus of 10", consensus(), ten, ruleChange(), 10, ten, true},
		// ceil(70 * n / 100): 0.7, 1.4, 2.1, 4.9 and 7 round up.
		{"70% of 1", supermajority(70), one, admission("XKK"), 1, one, true},
		{"70% of 2", supermajority(70), two, admission("XKK"), 2, two, true},
		{"70% of 3", supermajority(70), three, admission("XKK"), 3, three, true},
		{"70% of 7", supermajority(70), seven, admission("XKK"), 5, seven, true},
		{"70% of 10", supermajority(70), ten, admission("XKK"), 7, ten, true},
		{"51% of 2", supermajority(51), two, admission("XKK"), 2, two, true},
		{"51% of 4", supermajority(51), ten[:4], admission("XKK"), 3, ten[:4], true},
		{"51% of 100 states is 51", supermajority(51), hundred(), admission("XKK"), 51, nil, false},
		{"67% of 3", supermajority(67), three, admission("XKK"), 3, three, true},
		{"66% of 3", supermajority(66), three, admission("XKK"), 2, three, true},
		{"100% of 7", supermajority(100), seven, ruleChange(), 7, seven, true},
		{"threshold 3 of 10", threshold(3), ten, admission("XKK"), 3, ten, true},
		// A threshold above the membership is capped, so that members
		// leaving never lock the federation out.
		{"threshold 5 of 3 is capped", threshold(5), three, ruleChange(), 3, three, true},
		{"threshold 1 of 1", threshold(1), one, ruleChange(), 1, one, true},
		// Removal: the removed state is not part of the electorate.
		{"consensus removal of 10", consensus(), ten, removal("XCC"), 9, all(ten, "XCC"), true},
		{"70% removal of 10 counts 9", supermajority(70), ten, removal("XCC"), 7, all(ten, "XCC"), true},
		{"70% removal of 7 counts 6", supermajority(70), seven, removal("XAA"), 5, all(seven, "XAA"), true},
		{"threshold 3 removal of 3 counts 2", threshold(3), three, removal("XBB"), 2, all(three, "XBB"), true},
		{"consensus removal of 2", consensus(), two, removal("XAA"), 1, []string{"XBB"}, true},
		{"removal of an observer counts every state", consensus(), three, removal("XLL"), 3, three, true},
		{"entry update", consensus(), ten, entryUpdate("XDD"), 1, []string{"XDD"}, true},
		{"entry update of an observer", consensus(), ten, entryUpdate("XLL"), 1, []string{"XLL"}, true},
		{"observer admission needs a proposer", supermajority(70), ten, observerAdmission("XLL", deadline), 1, ten, true},
		{"genesis is consensus under any rule", threshold(1), seven, nil, 7, seven, true},
		{"unsorted states", consensus(), []string{"XCC", "XAA", "XBB"}, admission("XKK"), 3, three, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			needed, eligible, err := governance.Required(tt.rule, tt.states, tt.change)
			if err != nil {
				t.Fatalf("Required: %v", err)
			}
			if needed != tt.needed {
				t.Errorf("needed = %d, want %d", needed, tt.needed)
			}
			if tt.wantEligible && !slices.Equal(eligible, tt.eligible) {
				t.Errorf("eligible = %v, want %v", eligible, tt.eligible)
			}
		})
	}
}

// hundred returns 100 distinct codes.
func hundred() []string {
	var out []string
	for a := 'A'; a <= 'Z' && len(out) < 100; a++ {
		for b := 'A'; b <= 'Z' && len(out) < 100; b++ {
			out = append(out, "X"+string(a)+string(b))
		}
	}
	return out
}

func TestRequiredRefuses(t *testing.T) {
	noSilence := consensus()
	noSilence.SilencePeriod = nil
	zeroSilence := consensus()
	zeroSilence.SilencePeriod = durationpb.New(0)
	longSilence := consensus()
	longSilence.SilencePeriod = durationpb.New(governance.MaxSilencePeriod + time.Second)
	tests := []struct {
		name   string
		rule   *pocnetv1.DecisionRule
		states []string
		change *pocnetv1.Change
		want   string
	}{
		{"nil rule", nil, ten, admission("XKK"), "rule: required"},
		{"no rule kind", &pocnetv1.DecisionRule{SilencePeriod: durationpb.New(silence)}, ten, admission("XKK"),
			"rule: one of consensus, supermajority or threshold is required"},
		{"supermajority of half", supermajority(50), ten, admission("XKK"), "rule.supermajority.percent: 50 is not between 51 and 100"},
		{"supermajority of 0", supermajority(0), ten, admission("XKK"), "rule.supermajority.percent: 0 is not between 51 and 100"},
		{"supermajority above 100", supermajority(101), ten, admission("XKK"), "rule.supermajority.percent: 101 is not between 51 and 100"},
		{"threshold 0", threshold(0), ten, admission("XKK"), "rule.threshold.states: must be at least 1"},
		{"no silence period", noSilence, ten, admission("XKK"), "rule.silence_period: required"},
		{"zero silence period", zeroSilence, ten, admission("XKK"), "rule.silence_period: 0s is not between 0 and 8784h0m0s"},
		{"silence period too long", longSilence, ten, admission("XKK"), "rule.silence_period: 8784h0m1s is not between 0 and 8784h0m0s"},
		{"no state member", consensus(), nil, admission("XKK"), "no state member: nobody can sign"},
		{"state twice", consensus(), []string{"XAA", "XBB", "XAA"}, admission("XKK"), "state XAA is listed twice"},
		// A member removing itself from a federation of one would leave
		// nobody to take any decision.
		{"removal of the last state", consensus(), one(), removal("XAA"), "removal of XAA would leave no state member"},
		{"empty change", consensus(), ten, &pocnetv1.Change{}, "change: one of entry_update, admission, removal, rule_change or observer_admission is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := governance.Required(tt.rule, tt.states, tt.change)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Required error = %v, want %q", err, tt.want)
			}
		})
	}
}

func one() []string { return ten[:1] }

func TestValidateRuleLockout(t *testing.T) {
	// A rule that could never be met as written is refused when it is made.
	err := governance.ValidateRule(threshold(11), 10)
	if err == nil || !strings.Contains(err.Error(), "rule.threshold.states: 11 is more than the 10 state members: no decision could be taken") {
		t.Fatalf("ValidateRule(threshold 11 of 10) = %v", err)
	}
	for _, r := range []*pocnetv1.DecisionRule{threshold(10), supermajority(100), consensus()} {
		if err := governance.ValidateRule(r, 10); err != nil {
			t.Errorf("ValidateRule(%v, 10) = %v", r, err)
		}
	}
}
