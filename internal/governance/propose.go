package governance

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Making a version. Each Next function returns the exact bytes of the
// version that follows parent with one change, issued at at (or at the
// parent's issued_at, if that is later, since versions never go back in
// time), after checking everything Verify checks but the signatures: bad
// input is refused here, with the reason, before anyone signs it.

// NextEntryUpdate replaces the entry of m.State with m.
func NextEntryUpdate(parent *Version, m *pocnetv1.Member, at time.Time) ([]byte, error) {
	d := parentDirectory(parent)
	i := slices.IndexFunc(d.Members, func(o *pocnetv1.Member) bool { return o.GetState() == m.GetState() })
	if i < 0 {
		return nil, fmt.Errorf("%w: entry update: %q is not a member", ErrInvalid, m.GetState())
	}
	d.Members[i] = proto.Clone(m).(*pocnetv1.Member)
	return next(parent, &pocnetv1.Change{Change: &pocnetv1.Change_EntryUpdate{EntryUpdate: &pocnetv1.EntryUpdate{State: m.GetState()}}}, d, parent.Rule(), issued(parent, at))
}

// NextAdmission adds the state member m.
func NextAdmission(parent *Version, m *pocnetv1.Member, at time.Time) ([]byte, error) {
	d := parentDirectory(parent)
	d.Members = append(d.Members, proto.Clone(m).(*pocnetv1.Member))
	return next(parent, &pocnetv1.Change{Change: &pocnetv1.Change_Admission{Admission: &pocnetv1.Admission{State: m.GetState()}}}, d, parent.Rule(), issued(parent, at))
}

// NextObserverAdmission adds the observer m by the silence procedure: it
// takes effect at the end of the rule's silence period unless a state
// member objects.
func NextObserverAdmission(parent *Version, m *pocnetv1.Member, at time.Time) ([]byte, error) {
	d := parentDirectory(parent)
	d.Members = append(d.Members, proto.Clone(m).(*pocnetv1.Member))
	at = issued(parent, at)
	deadline := at.Add(parent.Rule().GetSilencePeriod().AsDuration())
	return next(parent, &pocnetv1.Change{Change: &pocnetv1.Change_ObserverAdmission{ObserverAdmission: &pocnetv1.ObserverAdmission{
		State: m.GetState(), SilenceDeadline: timestamppb.New(deadline),
	}}}, d, parent.Rule(), at)
}

// NextRemoval removes the member state.
func NextRemoval(parent *Version, state string, at time.Time) ([]byte, error) {
	d := parentDirectory(parent)
	n := len(d.Members)
	d.Members = slices.DeleteFunc(d.Members, func(o *pocnetv1.Member) bool { return o.GetState() == state })
	if len(d.Members) == n {
		return nil, fmt.Errorf("%w: removal: %q is not a member", ErrInvalid, state)
	}
	return next(parent, &pocnetv1.Change{Change: &pocnetv1.Change_Removal{Removal: &pocnetv1.Removal{State: state}}}, d, parent.Rule(), issued(parent, at))
}

// NextRuleChange replaces the decision rule.
func NextRuleChange(parent *Version, rule *pocnetv1.DecisionRule, at time.Time) ([]byte, error) {
	if rule == nil {
		return nil, fmt.Errorf("%w: rule change: rule: required", ErrInvalid)
	}
	return next(parent, &pocnetv1.Change{Change: &pocnetv1.Change_RuleChange{RuleChange: &pocnetv1.RuleChange{}}}, parentDirectory(parent), rule, issued(parent, at))
}

func parentDirectory(parent *Version) *pocnetv1.Directory {
	return proto.Clone(parent.Directory().Proto()).(*pocnetv1.Directory)
}

func issued(parent *Version, at time.Time) time.Time {
	if at.Before(parent.IssuedAt()) {
		return parent.IssuedAt()
	}
	return at
}

func next(parent *Version, change *pocnetv1.Change, d *pocnetv1.Directory, rule *pocnetv1.DecisionRule, at time.Time) ([]byte, error) {
	ph := parent.Hash()
	data, err := Marshal(&pocnetv1.DirectoryVersion{
		Version:    parent.Number() + 1,
		ParentHash: ph[:],
		IssuedAt:   timestamppb.New(at),
		Directory:  d,
		Rule:       proto.Clone(rule).(*pocnetv1.DecisionRule),
		Change:     change,
	})
	if err != nil {
		return nil, err
	}
	if _, err := prepare(parent, &pocnetv1.SignedVersion{Version: data}, at); err != nil {
		return nil, err
	}
	return data, nil
}

// Status is where a proposal stands against its parent.
type Status struct {
	// Version is the proposed version, checked but for its signatures.
	Version *Version
	// Needed is how many signatures the rule in force requires (1 for an
	// entry update and for an observer admission's proposer).
	Needed int
	// Eligible are the states whose signatures count.
	Eligible []string
	// Signed are the states whose valid signatures the proposal carries.
	Signed []string
	// Objected are the state members who objected (observer admissions).
	Objected []string
	// Deadline is an observer admission's silence deadline.
	Deadline time.Time
	// Ready says Verify accepts the proposal now; NotReady says why not.
	Ready    bool
	NotReady error
}

// Missing returns the eligible states that have not signed.
func (s *Status) Missing() []string { return without(s.Eligible, s.Signed) }

// Assess checks a proposal as the child of parent and says where it stands
// at now. It fails, with the reason, if the proposal is not a valid child
// whatever its signatures, or if a signature or objection it carries does
// not verify; Merge never keeps such signatures.
func Assess(parent *Version, sv *pocnetv1.SignedVersion, now time.Time) (*Status, error) {
	if parent == nil {
		return nil, fmt.Errorf("%w: a proposal has a parent", ErrInvalid)
	}
	v, err := prepare(parent, sv, now)
	if err != nil {
		return nil, err
	}
	inForce := parent.Directory()
	signers, err := verifySignatures(inForce, sv.GetSignatures(), versionDomain, sv.GetVersion(), v.issuedAt, "signatures")
	if err != nil {
		return nil, fmt.Errorf("%w: version %d: %v", ErrUnauthorized, v.Number(), err)
	}
	objectors, err := verifySignatures(inForce, sv.GetObjections(), objectionDomain, sv.GetVersion(), v.issuedAt, "objections")
	if err != nil {
		return nil, fmt.Errorf("%w: version %d: %v", ErrUnauthorized, v.Number(), err)
	}
	needed, eligible, err := Required(parent.Rule(), StateMembers(inForce), v.Change())
	if err != nil {
		return nil, fmt.Errorf("%w: version %d: %v", ErrUnauthorized, v.Number(), err)
	}
	st := &Status{Version: v, Needed: needed, Eligible: eligible, Signed: signers, Objected: objectors}
	if oa := v.Change().GetObserverAdmission(); oa != nil {
		st.Deadline = oa.GetSilenceDeadline().AsTime()
	}
	// The signatures verified above; authorize counts them.
	if err := authorize(parent, v, now); err != nil {
		st.NotReady = err
	} else {
		st.Ready = true
	}
	return st, nil
}

// Merge adds to have the signatures and objections of got that have lacks:
// nodes that collect signatures for the same proposal end up with the
// union. Both must carry the same version bytes, a valid child of parent.
// A signature or objection of got that does not verify, or that may not
// count for this change (an observer signing a decision, an objection to
// anything but an observer admission), is dropped and counted, never kept:
// one bad signature from a peer must not spoil a proposal for everyone.
// The result is a new message; have and got are not modified.
func Merge(parent *Version, have, got *pocnetv1.SignedVersion, now time.Time) (merged *pocnetv1.SignedVersion, added, dropped int, err error) {
	if !bytes.Equal(have.GetVersion(), got.GetVersion()) {
		return nil, 0, 0, fmt.Errorf("%w: merging two different versions", ErrInvalid)
	}
	v, err := prepare(parent, have, now)
	if err != nil {
		return nil, 0, 0, err
	}
	signers, objectors, err := allowed(parent, v)
	if err != nil {
		return nil, 0, 0, err
	}
	merged = proto.Clone(have).(*pocnetv1.SignedVersion)
	add := func(into *[]*pocnetv1.VersionSignature, sigs []*pocnetv1.VersionSignature, domain string, may []string) {
		for _, sig := range sigs {
			if slices.ContainsFunc(*into, func(o *pocnetv1.VersionSignature) bool { return o.GetState() == sig.GetState() }) {
				continue // one signature per state; the first kept stays
			}
			if !slices.Contains(may, sig.GetState()) {
				dropped++
				continue
			}
			if _, err := verifySignatures(parent.Directory(), []*pocnetv1.VersionSignature{sig}, domain, have.GetVersion(), v.issuedAt, "signature"); err != nil {
				dropped++
				continue
			}
			*into = append(*into, proto.Clone(sig).(*pocnetv1.VersionSignature))
			added++
		}
	}
	add(&merged.Signatures, got.GetSignatures(), versionDomain, signers)
	add(&merged.Objections, got.GetObjections(), objectionDomain, objectors)
	return merged, added, dropped, nil
}

// allowed returns who may sign a version and who may object to it, under
// parent.
func allowed(parent *Version, v *Version) (signers, objectors []string, err error) {
	states := StateMembers(parent.Directory())
	_, eligible, err := Required(parent.Rule(), states, v.Change())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: version %d: %v", ErrUnauthorized, v.Number(), err)
	}
	switch c := v.Change().GetChange().(type) {
	case *pocnetv1.Change_Removal:
		eligible = append(eligible, c.Removal.GetState()) // a withdrawal
	case *pocnetv1.Change_ObserverAdmission:
		objectors = states
	}
	return eligible, objectors, nil
}
