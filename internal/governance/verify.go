package governance

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protopath"
	"google.golang.org/protobuf/reflect/protorange"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pocnet/pocnet/internal/directory"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// MaxSize bounds a signed version: a directory of directory.MaxSize and
// room for its signatures.
const MaxSize = directory.MaxSize + 1<<20

// MaxClockSkew is how far in the future a version's issued_at may be. More
// is refused: since every later version must be issued no earlier than its
// parent, one version dated far ahead would block every change until then.
const MaxClockSkew = 5 * time.Minute

// Errors Verify and Chain return, wrapped with the reason.
var (
	// ErrInvalid: the version does not decode, does not follow its parent,
	// or does not change exactly what it declares.
	ErrInvalid = errors.New("invalid directory version")
	// ErrUnauthorized: a signature does not verify or may not sign this
	// change, or the signatures do not reach what the rule requires.
	ErrUnauthorized = errors.New("directory version not authorized")
	// ErrObjected: a state member objected to an observer admission.
	ErrObjected = errors.New("observer admission objected to")
	// ErrNotYetEffective: an observer admission whose silence period has
	// not ended. It may verify later, unless someone objects meanwhile.
	ErrNotYetEffective = errors.New("observer admission not yet effective")
	// ErrStale: a version not newer than the chain's latest, and not a fork.
	ErrStale = errors.New("stale directory version")
	// ErrUnknownParent: a version whose parent is not in the chain.
	ErrUnknownParent = errors.New("unknown parent version")
)

// Version is a verified directory version. It is immutable.
type Version struct {
	pb       *pocnetv1.DirectoryVersion
	signed   *pocnetv1.SignedVersion
	hash     [sha256.Size]byte
	dir      *directory.Directory
	signers  []string
	issuedAt time.Time
}

// Number returns the version number; 1 is the genesis.
func (v *Version) Number() uint64 { return v.pb.GetVersion() }

// Hash returns the SHA-256 of the version's exact bytes.
func (v *Version) Hash() [sha256.Size]byte { return v.hash }

// IssuedAt returns when the version was made.
func (v *Version) IssuedAt() time.Time { return v.issuedAt }

// Directory returns the validated directory of this version.
func (v *Version) Directory() *directory.Directory { return v.dir }

// Rule returns the decision rule in force from this version on. Callers
// must not modify it.
func (v *Version) Rule() *pocnetv1.DecisionRule { return v.pb.GetRule() }

// Change returns what this version changed; nil for the genesis. Callers
// must not modify it.
func (v *Version) Change() *pocnetv1.Change { return v.pb.GetChange() }

// Signers returns the states whose signatures the version carries, in the
// order it carries them.
func (v *Version) Signers() []string { return slices.Clone(v.signers) }

// Signed returns the version as received, with its signatures. Callers must
// not modify it.
func (v *Version) Signed() *pocnetv1.SignedVersion { return v.signed }

// Parse decodes a signed version from untrusted bytes. It does not verify
// anything but the encoding.
func Parse(data []byte) (*pocnetv1.SignedVersion, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(data), MaxSize)
	}
	sv := &pocnetv1.SignedVersion{}
	if err := proto.Unmarshal(data, sv); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if hasUnknown(sv) {
		return nil, fmt.Errorf("%w: unknown fields", ErrInvalid)
	}
	return sv, nil
}

// decode returns the version sv carries and its hash.
func decode(sv *pocnetv1.SignedVersion) (*pocnetv1.DirectoryVersion, [sha256.Size]byte, error) {
	var h [sha256.Size]byte
	if sv == nil || len(sv.GetVersion()) == 0 {
		return nil, h, fmt.Errorf("%w: version: required", ErrInvalid)
	}
	if len(sv.GetVersion()) > MaxSize {
		return nil, h, fmt.Errorf("%w: version: %d bytes, more than %d", ErrInvalid, len(sv.GetVersion()), MaxSize)
	}
	pb := &pocnetv1.DirectoryVersion{}
	if err := proto.Unmarshal(sv.GetVersion(), pb); err != nil {
		return nil, h, fmt.Errorf("%w: version: %v", ErrInvalid, err)
	}
	// Signers approve exact bytes. A field this node does not know would be
	// approved by them yet ignored here, so the version is refused instead
	// of being applied with a meaning nobody agreed to.
	if hasUnknown(pb) {
		return nil, h, fmt.Errorf("%w: version %d: unknown fields", ErrInvalid, pb.GetVersion())
	}
	return pb, Hash(sv.GetVersion()), nil
}

// hasUnknown says whether m or any message in it has unknown fields.
func hasUnknown(m proto.Message) bool {
	found := false
	_ = protorange.Range(m.ProtoReflect(), func(p protopath.Values) error {
		if msg, ok := p.Index(-1).Value.Interface().(protoreflect.Message); ok && len(msg.GetUnknown()) > 0 {
			found = true
			return protorange.Terminate
		}
		return nil
	})
	return found
}

// Verify checks sv as the child of parent, or as a genesis when parent is
// nil, and returns the verified version. now is used only to refuse a
// version issued in the future and to tell whether an observer admission's
// silence period has ended; key validity is judged at the version's
// issued_at, against the keys of the directory in force (the parent's, or
// for a genesis its own), so that a chain verifies the same way whenever it
// is replayed.
func Verify(parent *Version, sv *pocnetv1.SignedVersion, now time.Time) (*Version, error) {
	v, err := prepare(parent, sv, now)
	if err != nil {
		return nil, err
	}
	if parent == nil {
		if err := verifyGenesis(v); err != nil {
			return nil, err
		}
		return v, nil
	}
	if err := authorize(parent, v, now); err != nil {
		return nil, err
	}
	return v, nil
}

// prepare checks everything Verify checks but the signatures: the encoding,
// the link to parent, the times, the directory and, after the genesis,
// that the version changes exactly what it declares.
func prepare(parent *Version, sv *pocnetv1.SignedVersion, now time.Time) (*Version, error) {
	pb, h, err := decode(sv)
	if err != nil {
		return nil, err
	}
	n := pb.GetVersion()
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("%w: version %d: %s", ErrInvalid, n, fmt.Sprintf(format, a...))
	}
	if parent == nil {
		if n != 1 {
			return nil, invalid("a genesis is version 1")
		}
		if len(pb.GetParentHash()) != 0 {
			return nil, invalid("parent_hash: a genesis has none")
		}
		if pb.GetChange() != nil {
			return nil, invalid("change: a genesis has none")
		}
	} else {
		if n != parent.Number()+1 {
			return nil, invalid("does not follow version %d", parent.Number())
		}
		if ph := parent.Hash(); !bytes.Equal(pb.GetParentHash(), ph[:]) {
			return nil, invalid("parent_hash %s is not the hash of version %d (%s)", short(pb.GetParentHash()), parent.Number(), short(ph[:]))
		}
	}
	if pb.GetIssuedAt() == nil {
		return nil, invalid("issued_at: required")
	}
	if err := pb.GetIssuedAt().CheckValid(); err != nil {
		return nil, invalid("issued_at: %v", err)
	}
	at := pb.GetIssuedAt().AsTime()
	if at.After(now.Add(MaxClockSkew)) {
		return nil, invalid("issued_at %s is in the future", at.UTC().Format(time.RFC3339))
	}
	if parent != nil && at.Before(parent.IssuedAt()) {
		return nil, invalid("issued_at %s is before version %d's %s", at.UTC().Format(time.RFC3339), parent.Number(), parent.IssuedAt().UTC().Format(time.RFC3339))
	}
	if pb.GetDirectory() == nil {
		return nil, invalid("directory: required")
	}
	dir, err := directory.New(pb.GetDirectory())
	if err != nil {
		return nil, fmt.Errorf("%w: version %d: directory: %w", ErrInvalid, n, err)
	}
	v := &Version{pb: pb, signed: sv, hash: h, dir: dir, issuedAt: at}
	if parent == nil {
		return v, nil
	}
	if dir.Federation() != parent.Directory().Federation() {
		return nil, invalid("directory.federation_id: %q is not the federation's %q", dir.Federation(), parent.Directory().Federation())
	}
	if err := verifyChange(parent, v); err != nil {
		return nil, err
	}
	return v, nil
}

func verifyGenesis(v *Version) error {
	states := StateMembers(v.dir)
	if len(states) == 0 {
		return fmt.Errorf("%w: version 1: directory: a genesis needs at least one state member", ErrInvalid)
	}
	if err := ValidateRule(v.Rule(), len(states)); err != nil {
		return fmt.Errorf("%w: version 1: %v", ErrInvalid, err)
	}
	if len(v.signed.GetObjections()) != 0 {
		return fmt.Errorf("%w: version 1: objections: only an observer admission can be objected to", ErrInvalid)
	}
	signers, err := verifySignatures(v.dir, v.signed.GetSignatures(), versionDomain, v.signed.GetVersion(), v.issuedAt, "signatures")
	if err != nil {
		return fmt.Errorf("%w: version 1: %v", ErrUnauthorized, err)
	}
	v.signers = signers
	if err := onlyFrom(signers, states, "a genesis is signed by its state members"); err != nil {
		return fmt.Errorf("%w: version 1: %v", ErrUnauthorized, err)
	}
	if missing := without(states, signers); len(missing) > 0 {
		return fmt.Errorf("%w: version 1: %d signatures of the %d needed for a genesis (every state member); not signed by: %s",
			ErrUnauthorized, len(states)-len(missing), len(states), strings.Join(missing, ", "))
	}
	return nil
}

// verifyChange checks that v differs from parent by exactly the change it
// declares, and nothing else.
func verifyChange(parent, v *Version) error {
	old, cur := parent.Directory(), v.Directory()
	changed, added, removed := diff(old, cur)
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("%w: version %d: %s", ErrInvalid, v.Number(), fmt.Sprintf(format, a...))
	}
	if !proto.Equal(withoutMembers(old.Proto()), withoutMembers(cur.Proto())) {
		return invalid("directory: fields other than members changed")
	}
	ruleSame := proto.Equal(parent.Rule(), v.Rule())
	exactly := func(what string, want string, got []string, others ...[]string) error {
		if len(got) != 1 || got[0] != want {
			return invalid("%s of %s declared, but the directory has %s", what, want, describeDiff(changed, added, removed))
		}
		for _, o := range others {
			if len(o) != 0 {
				return invalid("%s of %s: the directory also has %s", what, want, describeDiff(changed, added, removed))
			}
		}
		if !ruleSame {
			return invalid("%s of %s: the rule changed too", what, want)
		}
		return nil
	}
	switch c := v.Change().GetChange().(type) {
	case *pocnetv1.Change_EntryUpdate:
		s := c.EntryUpdate.GetState()
		if _, ok := old.Member(s); !ok {
			return invalid("entry update: %s is not a member (a new member is admitted)", s)
		}
		if err := exactly("entry update", s, changed, added, removed); err != nil {
			return err
		}
		o, _ := old.Member(s)
		m, _ := cur.Member(s)
		if o.GetKind() != m.GetKind() {
			return invalid("entry update of %s: kind changed from %v to %v", s, o.GetKind(), m.GetKind())
		}
	case *pocnetv1.Change_Admission:
		s := c.Admission.GetState()
		if err := exactly("admission", s, added, changed, removed); err != nil {
			return err
		}
		if m, _ := cur.Member(s); m.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_STATE {
			return invalid("admission of %s: kind is %v; observers are admitted by observer_admission", s, m.GetKind())
		}
	case *pocnetv1.Change_ObserverAdmission:
		s := c.ObserverAdmission.GetState()
		if err := exactly("observer admission", s, added, changed, removed); err != nil {
			return err
		}
		if m, _ := cur.Member(s); m.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_OBSERVER {
			return invalid("observer admission of %s: kind is %v, not MEMBER_KIND_OBSERVER", s, m.GetKind())
		}
		dl := c.ObserverAdmission.GetSilenceDeadline()
		if dl == nil {
			return invalid("observer admission of %s: silence_deadline: required", s)
		}
		if err := dl.CheckValid(); err != nil {
			return invalid("observer admission of %s: silence_deadline: %v", s, err)
		}
		period := parent.Rule().GetSilencePeriod().AsDuration()
		if earliest := v.IssuedAt().Add(period); dl.AsTime().Before(earliest) {
			return invalid("observer admission of %s: silence_deadline %s is before issued_at plus the silence period of %s (%s)",
				s, dl.AsTime().UTC().Format(time.RFC3339), period, earliest.UTC().Format(time.RFC3339))
		}
	case *pocnetv1.Change_Removal:
		s := c.Removal.GetState()
		if err := exactly("removal", s, removed, changed, added); err != nil {
			return err
		}
		if len(StateMembers(cur)) == 0 {
			return invalid("removal of %s would leave no state member", s)
		}
	case *pocnetv1.Change_RuleChange:
		if len(changed)+len(added)+len(removed) != 0 {
			return invalid("rule change: the directory also has %s", describeDiff(changed, added, removed))
		}
		if ruleSame {
			return invalid("rule change: the rule is unchanged")
		}
		if err := ValidateRule(v.Rule(), len(StateMembers(cur))); err != nil {
			return invalid("rule change: %v", err)
		}
	case nil:
		return invalid("change: required after the genesis")
	default:
		return invalid("change: unknown kind %T", c)
	}
	return nil
}

// diff compares two directories member by member. Order in the list has no
// meaning, so moving a member is no change.
func diff(old, cur *directory.Directory) (changed, added, removed []string) {
	for _, s := range cur.States() {
		m, _ := cur.Member(s)
		if o, ok := old.Member(s); !ok {
			added = append(added, s)
		} else if !proto.Equal(o, m) {
			changed = append(changed, s)
		}
	}
	for _, s := range old.States() {
		if _, ok := cur.Member(s); !ok {
			removed = append(removed, s)
		}
	}
	return changed, added, removed
}

func describeDiff(changed, added, removed []string) string {
	var parts []string
	if len(changed) > 0 {
		parts = append(parts, "changed "+strings.Join(changed, ", "))
	}
	if len(added) > 0 {
		parts = append(parts, "added "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		parts = append(parts, "removed "+strings.Join(removed, ", "))
	}
	if len(parts) == 0 {
		return "no member change"
	}
	return strings.Join(parts, "; ")
}

func withoutMembers(d *pocnetv1.Directory) *pocnetv1.Directory {
	c := proto.Clone(d).(*pocnetv1.Directory)
	c.Members = nil
	return c
}

// authorize checks v's signatures (and objections) against the directory
// and rule of parent.
func authorize(parent, v *Version, now time.Time) error {
	n := v.Number()
	unauthorized := func(format string, a ...any) error {
		return fmt.Errorf("%w: version %d: %s", ErrUnauthorized, n, fmt.Sprintf(format, a...))
	}
	inForce := parent.Directory()
	change := v.Change()
	_, isObserver := change.GetChange().(*pocnetv1.Change_ObserverAdmission)
	if !isObserver && len(v.signed.GetObjections()) != 0 {
		return fmt.Errorf("%w: version %d: objections: only an observer admission can be objected to", ErrInvalid, n)
	}
	signers, err := verifySignatures(inForce, v.signed.GetSignatures(), versionDomain, v.signed.GetVersion(), v.issuedAt, "signatures")
	if err != nil {
		return unauthorized("%v", err)
	}
	v.signers = signers
	states := StateMembers(inForce)
	needed, eligible, err := Required(parent.Rule(), states, change)
	if err != nil {
		return unauthorized("%v", err)
	}
	switch c := change.GetChange().(type) {
	case *pocnetv1.Change_EntryUpdate:
		s := c.EntryUpdate.GetState()
		if !slices.Contains(signers, s) {
			if len(signers) == 0 {
				return unauthorized("entry of %s changed but not signed", s)
			}
			return unauthorized("entry of %s changed but signed by %s only", s, strings.Join(signers, ", "))
		}
		if others := without(signers, []string{s}); len(others) > 0 {
			return unauthorized("entry update of %s also signed by %s: an entry is changed by its own member's signature alone", s, strings.Join(others, ", "))
		}
		return nil
	case *pocnetv1.Change_Removal:
		s := c.Removal.GetState()
		if slices.Contains(signers, s) {
			// A withdrawal: the member's own signature suffices. Others may
			// have signed with it, but only members who could sign a
			// removal.
			return onlyFromErr(unauthorized, signers, append(slices.Clone(eligible), s), "a removal is signed by state members or by the member withdrawing")
		}
	case *pocnetv1.Change_ObserverAdmission:
		if err := onlyFrom(signers, eligible, "observer admissions are proposed by state members"); err != nil {
			return unauthorized("%v", err)
		}
		if len(signers) == 0 {
			return unauthorized("observer admission of %s is proposed by no state member", c.ObserverAdmission.GetState())
		}
		objectors, err := verifySignatures(inForce, v.signed.GetObjections(), objectionDomain, v.signed.GetVersion(), v.issuedAt, "objections")
		if err != nil {
			return unauthorized("%v", err)
		}
		if err := onlyFrom(objectors, states, "only state members object"); err != nil {
			return unauthorized("%v", err)
		}
		if len(objectors) > 0 {
			return fmt.Errorf("%w: version %d: admission of %s objected to by %s", ErrObjected, n, c.ObserverAdmission.GetState(), strings.Join(objectors, ", "))
		}
		if dl := c.ObserverAdmission.GetSilenceDeadline().AsTime(); now.Before(dl) {
			return fmt.Errorf("%w: version %d: admission of %s takes effect at %s unless a state member objects", ErrNotYetEffective, n, c.ObserverAdmission.GetState(), dl.UTC().Format(time.RFC3339))
		}
		return nil
	}
	if err := onlyFrom(signers, eligible, "observers and a member being removed do not sign decisions"); err != nil {
		return unauthorized("%v", err)
	}
	if len(signers) < needed {
		return unauthorized("%d signatures of the %d needed under %s; not signed by: %s",
			len(signers), needed, describe(parent.Rule()), strings.Join(without(eligible, signers), ", "))
	}
	return nil
}

// verifySignatures checks each signature in sigs over data: a member of d,
// one signature per member, a key that member publishes and that was valid
// at at, and a signature that verifies. It returns the signers in order.
func verifySignatures(d *directory.Directory, sigs []*pocnetv1.VersionSignature, domain string, data []byte, at time.Time, field string) ([]string, error) {
	input := signingInput(domain, data)
	var signers []string
	for i, sig := range sigs {
		f := fmt.Sprintf("%s[%d]", field, i)
		s := sig.GetState()
		if _, ok := d.Member(s); !ok {
			return nil, fmt.Errorf("%s: %q is not a member of the directory in force", f, s)
		}
		if slices.Contains(signers, s) {
			return nil, fmt.Errorf("%s: %s signed twice", f, s)
		}
		pub, err := d.SigningKeyValid(s, sig.GetKeyId(), at)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f, err)
		}
		if len(sig.GetSignature()) != ed25519.SignatureSize || !ed25519.Verify(pub, input, sig.GetSignature()) {
			return nil, fmt.Errorf("%s: signature of %s does not verify with key %s", f, s, sig.GetKeyId())
		}
		signers = append(signers, s)
	}
	return signers, nil
}

// onlyFrom refuses a signer not in allowed.
func onlyFrom(signers, allowed []string, why string) error {
	for _, s := range signers {
		if !slices.Contains(allowed, s) {
			return fmt.Errorf("signature of %s may not count: %s", s, why)
		}
	}
	return nil
}

func onlyFromErr(wrap func(string, ...any) error, signers, allowed []string, why string) error {
	if err := onlyFrom(signers, allowed, why); err != nil {
		return wrap("%v", err)
	}
	return nil
}

// without returns the elements of a not in b, in a's order.
func without(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// short is the first 8 bytes of a hash in hex, for messages.
func short(h []byte) string {
	if len(h) > 8 {
		h = h[:8]
	}
	return fmt.Sprintf("%x", h)
}
