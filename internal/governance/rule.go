package governance

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pocnet/pocnet/internal/directory"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Bounds of a DecisionRule.
const (
	// MinSupermajority is the smallest supermajority percentage. Above half,
	// any two quorums share a state, so two conflicting decisions on the same
	// parent can only both pass if some state signed both, which the fork
	// report names.
	MinSupermajority = 51
	// MaxSilencePeriod bounds the silence period, so that a rule cannot put
	// observer admissions out of reach in practice.
	MaxSilencePeriod = 366 * 24 * time.Hour
)

// ValidateRule checks a decision rule governing states state members: one
// of the three rules with sane parameters, and a positive silence period.
// A threshold above states is refused: it could never be met as written,
// which is a mistake to catch when the rule is made (at genesis or in a rule
// change). Once in force, Required caps it at the membership, so that
// members leaving later never lock the federation out.
func ValidateRule(r *pocnetv1.DecisionRule, states int) error {
	if err := validateRuleForm(r); err != nil {
		return err
	}
	if t := r.GetThreshold(); t != nil && uint64(t.GetStates()) > uint64(max(states, 0)) {
		return fmt.Errorf("rule.threshold.states: %d is more than the %d state members: no decision could be taken", t.GetStates(), states)
	}
	return nil
}

// validateRuleForm checks the rule without regard to the membership.
func validateRuleForm(r *pocnetv1.DecisionRule) error {
	if r == nil {
		return errors.New("rule: required")
	}
	switch k := r.GetRule().(type) {
	case *pocnetv1.DecisionRule_Consensus:
	case *pocnetv1.DecisionRule_Supermajority:
		if p := k.Supermajority.GetPercent(); p < MinSupermajority || p > 100 {
			return fmt.Errorf("rule.supermajority.percent: %d is not between %d and 100", p, MinSupermajority)
		}
	case *pocnetv1.DecisionRule_Threshold:
		if k.Threshold.GetStates() == 0 {
			return errors.New("rule.threshold.states: must be at least 1")
		}
	default:
		return errors.New("rule: one of consensus, supermajority or threshold is required")
	}
	sp := r.GetSilencePeriod()
	if sp == nil {
		return errors.New("rule.silence_period: required")
	}
	if err := sp.CheckValid(); err != nil {
		return fmt.Errorf("rule.silence_period: %v", err)
	}
	if d := sp.AsDuration(); d <= 0 || d > MaxSilencePeriod {
		return fmt.Errorf("rule.silence_period: %s is not between 0 and %s", d, MaxSilencePeriod)
	}
	return nil
}

// quorum is the number of signatures r needs from n state members.
// Supermajority rounds up: 70% of 7 is 4.9, so 5 are needed; a percentage is
// a minimum share, never approached from below. Threshold is capped at n.
func quorum(r *pocnetv1.DecisionRule, n int) int {
	switch k := r.GetRule().(type) {
	case *pocnetv1.DecisionRule_Supermajority:
		return (int(k.Supermajority.GetPercent())*n + 99) / 100
	case *pocnetv1.DecisionRule_Threshold:
		return min(int(k.Threshold.GetStates()), n)
	default:
		return n
	}
}

// describe names a rule in messages.
func describe(r *pocnetv1.DecisionRule) string {
	switch k := r.GetRule().(type) {
	case *pocnetv1.DecisionRule_Supermajority:
		return fmt.Sprintf("supermajority of %d%%", k.Supermajority.GetPercent())
	case *pocnetv1.DecisionRule_Threshold:
		return fmt.Sprintf("threshold of %d states", k.Threshold.GetStates())
	default:
		return "consensus"
	}
}

// Required returns how many signatures change needs and the states whose
// signatures count towards them, under rule, when states are the codes of
// the state members in force (see StateMembers: observers never sign
// decisions). A nil change is a genesis.
//
//   - genesis: every state member (consensus, whatever the rule says: the
//     rule is not in force until the genesis is);
//   - entry update of S: 1, from S alone;
//   - admission, rule change: the rule's quorum of all state members;
//   - removal of R: the rule's quorum of the state members other than R.
//     R cannot be required to consent to its own removal, and its signature
//     does not count towards the others' quorum. A removal that R signs
//     itself is a withdrawal, which Verify accepts on that signature alone.
//     A removal that would leave no state member is refused;
//   - observer admission: 1, the proposing state member; it then needs the
//     silence of all of them.
//
// Quorums: consensus needs all n; supermajority p needs ceil(p*n/100);
// threshold t needs min(t, n).
func Required(rule *pocnetv1.DecisionRule, states []string, change *pocnetv1.Change) (needed int, eligible []string, err error) {
	if err := validateRuleForm(rule); err != nil {
		return 0, nil, err
	}
	eligible = slices.Clone(states)
	slices.Sort(eligible)
	if i := dupIndex(eligible); i >= 0 {
		return 0, nil, fmt.Errorf("state %s is listed twice", eligible[i])
	}
	if len(eligible) == 0 {
		return 0, nil, errors.New("no state member: nobody can sign")
	}
	switch c := change.GetChange().(type) {
	case nil:
		if change != nil {
			return 0, nil, errors.New("change: one of entry_update, admission, removal, rule_change or observer_admission is required")
		}
		return len(eligible), eligible, nil
	case *pocnetv1.Change_EntryUpdate:
		return 1, []string{c.EntryUpdate.GetState()}, nil
	case *pocnetv1.Change_Admission, *pocnetv1.Change_RuleChange:
		return quorum(rule, len(eligible)), eligible, nil
	case *pocnetv1.Change_Removal:
		r := c.Removal.GetState()
		eligible = slices.DeleteFunc(eligible, func(s string) bool { return s == r })
		if len(eligible) == 0 {
			return 0, nil, fmt.Errorf("removal of %s would leave no state member", r)
		}
		return quorum(rule, len(eligible)), eligible, nil
	case *pocnetv1.Change_ObserverAdmission:
		return 1, eligible, nil
	default:
		return 0, nil, fmt.Errorf("change: unknown kind %T", c)
	}
}

// StateMembers returns the codes of d's members of kind MEMBER_KIND_STATE,
// sorted: the members who sign decisions.
func StateMembers(d *directory.Directory) []string {
	var out []string
	for _, s := range d.States() {
		if m, _ := d.Member(s); m.GetKind() == pocnetv1.MemberKind_MEMBER_KIND_STATE {
			out = append(out, s)
		}
	}
	return out
}

// dupIndex returns the index of the first repeated element of a sorted
// slice, or -1.
func dupIndex(sorted []string) int {
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return i
		}
	}
	return -1
}

// DescribeRule names a rule for people, e.g. "supermajority of 70%", with
// its silence period for observer admissions.
func DescribeRule(r *pocnetv1.DecisionRule) string {
	return fmt.Sprintf("%s; observers by silence of %s", describe(r), r.GetSilencePeriod().AsDuration())
}

// DescribeChange says in words what a change does, e.g. "admission of XDD";
// a nil change is the genesis.
func DescribeChange(c *pocnetv1.Change) string {
	switch k := c.GetChange().(type) {
	case *pocnetv1.Change_EntryUpdate:
		return "entry update of " + k.EntryUpdate.GetState()
	case *pocnetv1.Change_Admission:
		return "admission of " + k.Admission.GetState()
	case *pocnetv1.Change_Removal:
		return "removal of " + k.Removal.GetState()
	case *pocnetv1.Change_RuleChange:
		return "rule change"
	case *pocnetv1.Change_ObserverAdmission:
		return "observer admission of " + k.ObserverAdmission.GetState()
	case nil:
		return "genesis"
	default:
		return fmt.Sprintf("unknown change %T", k)
	}
}
