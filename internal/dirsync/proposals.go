package dirsync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/store"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// describe returns what this node knows of a proposal. st may be nil.
// m.mu is held.
func (m *Manager) describe(sv *pocnetv1.SignedVersion, st *governance.Status) *pocnetv1.Proposal {
	h := governance.Hash(sv.GetVersion())
	p := &pocnetv1.Proposal{Hash: h[:]}
	var pb pocnetv1.DirectoryVersion
	if err := proto.Unmarshal(sv.GetVersion(), &pb); err == nil {
		p.Version = pb.GetVersion()
		p.Change = pb.GetChange()
		p.Description = governance.DescribeChange(pb.GetChange())
		p.IssuedAt = pb.GetIssuedAt()
		if oa := pb.GetChange().GetObserverAdmission(); oa != nil {
			p.SilenceDeadline = oa.GetSilenceDeadline()
		}
		var state string
		switch c := pb.GetChange().GetChange().(type) {
		case *pocnetv1.Change_Admission:
			state = c.Admission.GetState()
		case *pocnetv1.Change_ObserverAdmission:
			state = c.ObserverAdmission.GetState()
		}
		for _, mem := range pb.GetDirectory().GetMembers() {
			if state != "" && mem.GetState() == state {
				p.Member = mem
			}
		}
	}
	for _, s := range sv.GetSignatures() {
		p.Signed = append(p.Signed, s.GetState())
	}
	for _, s := range sv.GetObjections() {
		p.Objected = append(p.Objected, s.GetState())
	}
	parent := m.chain.Latest()
	if st == nil && p.Version == parent.Number()+1 {
		st, _ = governance.Assess(parent, sv, m.cfg.Now())
	}
	p.Rule = governance.DescribeRule(parent.Rule())
	if st != nil {
		p.Needed = uint32(st.Needed)
		p.Missing = st.Missing()
		p.Signed = st.Signed
		p.Objected = st.Objected
		if _, ok := st.Version.Change().GetChange().(*pocnetv1.Change_ObserverAdmission); ok {
			p.Needed = 0
		}
	}
	switch {
	case len(p.Objected) > 0:
		p.State = pocnetv1.ProposalState_PROPOSAL_STATE_OBJECTED
	case p.SilenceDeadline != nil:
		p.State = pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE
	default:
		p.State = pocnetv1.ProposalState_PROPOSAL_STATE_PENDING
	}
	return p
}

// Pending returns how many proposals the node holds undecided. Unlike
// Proposals it assesses none of them: it is cheap enough to poll.
func (m *Manager) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.proposals)
}

// Proposals returns the proposals held, oldest first, then the closed ones
// this node remembers.
func (m *Manager) Proposals() []*pocnetv1.Proposal {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*pocnetv1.Proposal
	for _, sv := range m.proposals {
		out = append(out, m.describe(sv, nil))
	}
	slices.SortFunc(out, func(a, b *pocnetv1.Proposal) int {
		return a.GetIssuedAt().AsTime().Compare(b.GetIssuedAt().AsTime())
	})
	for i := len(m.closed) - 1; i >= 0; i-- {
		out = append(out, m.closed[i])
	}
	return out
}

// Propose makes a decision or an observer admission on the version in
// force, signed by this state, and offers it to the peers.
func (m *Manager) Propose(ctx context.Context, req *pocnetv1.ProposeRequest) (*pocnetv1.Proposal, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	parent := m.chain.Latest()
	now := m.cfg.Now()
	var data []byte
	var err error
	switch p := req.GetProposal().(type) {
	case *pocnetv1.ProposeRequest_Admit:
		if p.Admit.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_STATE {
			return nil, errorf(ErrInvalidArgument, "admit.kind: an admitted member is MEMBER_KIND_STATE; observers are admitted with admit_observer")
		}
		data, err = governance.NextAdmission(parent, p.Admit, now)
	case *pocnetv1.ProposeRequest_AdmitObserver:
		if p.AdmitObserver.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_OBSERVER {
			return nil, errorf(ErrInvalidArgument, "admit_observer.kind: must be MEMBER_KIND_OBSERVER")
		}
		data, err = governance.NextObserverAdmission(parent, p.AdmitObserver, now)
	case *pocnetv1.ProposeRequest_Remove:
		data, err = governance.NextRemoval(parent, p.Remove, now)
	case *pocnetv1.ProposeRequest_Rule:
		data, err = governance.NextRuleChange(parent, p.Rule, now)
	default:
		return nil, errorf(ErrInvalidArgument, "proposal: one of admit, remove, rule or admit_observer is required")
	}
	if err != nil {
		return nil, errorf(ErrInvalidArgument, "%v", err)
	}
	return m.signProposal(ctx, parent, &pocnetv1.SignedVersion{Version: data}, false)
}

// Sign adds this state's signature to a held proposal.
func (m *Manager) Sign(ctx context.Context, hash []byte) (*pocnetv1.Proposal, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sv, err := m.held(hash)
	if err != nil {
		return nil, err
	}
	return m.signProposal(ctx, m.chain.Latest(), sv, false)
}

// Object adds this state's objection to a held observer admission.
func (m *Manager) Object(ctx context.Context, hash []byte) (*pocnetv1.Proposal, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sv, err := m.held(hash)
	if err != nil {
		return nil, err
	}
	return m.signProposal(ctx, m.chain.Latest(), sv, true)
}

// held returns the proposal named by hash, or why it cannot be signed.
// m.mu is held.
func (m *Manager) held(hash []byte) (*pocnetv1.SignedVersion, error) {
	if len(hash) != 32 {
		return nil, errorf(ErrInvalidArgument, "hash: %d bytes, want 32", len(hash))
	}
	if sv, ok := m.proposals[[32]byte(hash)]; ok {
		return sv, nil
	}
	for _, p := range m.closed {
		if bytes.Equal(p.GetHash(), hash) {
			return nil, errorf(ErrFailedPrecondition, "proposal %x is %s", hash[:8], closedWords(p.GetState()))
		}
	}
	return nil, errorf(ErrNotFound, "no proposal %x on this node", hash[:8])
}

func closedWords(s pocnetv1.ProposalState) string {
	switch s {
	case pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED:
		return "already in force"
	case pocnetv1.ProposalState_PROPOSAL_STATE_SUPERSEDED:
		return "superseded by another version; propose it again on the version in force"
	default:
		return "closed"
	}
}

// signProposal signs (or objects to) sv as this state, keeps it, adopts it
// if that made it valid, and offers it. m.mu is held.
func (m *Manager) signProposal(ctx context.Context, parent *governance.Version, sv *pocnetv1.SignedVersion, objection bool) (*pocnetv1.Proposal, error) {
	now := m.cfg.Now()
	st, err := governance.Assess(parent, sv, now)
	if err != nil {
		return nil, errorf(ErrFailedPrecondition, "%v", err)
	}
	change := st.Version.Change()
	_, isObserver := change.GetChange().(*pocnetv1.Change_ObserverAdmission)
	switch {
	case objection && !isObserver:
		return nil, errorf(ErrFailedPrecondition, "only an observer admission can be objected to; this is a %s", governance.DescribeChange(change))
	case objection && slices.Contains(st.Objected, m.cfg.State):
		return nil, errorf(ErrFailedPrecondition, "%s already objected", m.cfg.State)
	case !objection && slices.Contains(st.Signed, m.cfg.State):
		return nil, errorf(ErrFailedPrecondition, "%s already signed", m.cfg.State)
	}
	if !objection {
		if other := m.signedOther(parent, governance.Hash(sv.GetVersion())); other != nil {
			return nil, errorf(ErrFailedPrecondition, "%s already signed proposal %s (%s) on version %d; a state signs one decision per version, so that two decisions can never both reach the quorum and split the federation. Sign this one after that one is decided, on the version then in force",
				m.cfg.State, short(other.GetHash()), other.GetDescription(), parent.Number())
		}
	}
	key, err := m.signingKey(parent)
	if err != nil {
		return nil, err
	}
	var sig *pocnetv1.VersionSignature
	if objection {
		sig, err = governance.Object(m.cfg.State, key, sv.GetVersion())
	} else {
		sig, err = governance.Sign(m.cfg.State, key, sv.GetVersion())
	}
	if err != nil {
		return nil, err
	}
	keyID := directory.SigningKeyID(key.Public().(ed25519.PublicKey))
	sig.KeyId = keyID
	got := &pocnetv1.SignedVersion{Version: sv.GetVersion()}
	if objection {
		got.Objections = []*pocnetv1.VersionSignature{sig}
	} else {
		got.Signatures = []*pocnetv1.VersionSignature{sig}
	}
	merged, added, _, err := governance.Merge(parent, sv, got, now)
	if err != nil {
		return nil, errorf(ErrFailedPrecondition, "%v", err)
	}
	if added != 1 {
		return nil, errorf(ErrPermissionDenied, "%s may not sign a %s under the rule in force", m.cfg.State, governance.DescribeChange(change))
	}
	h := governance.Hash(sv.GetVersion())
	verb := "signed"
	if objection {
		verb = "objected to"
	}
	if v, err := governance.Verify(parent, merged, now); err == nil {
		if err := m.adoptVerified(ctx, v, m.cfg.State); err != nil {
			return nil, err
		}
		p := m.describe(merged, nil)
		p.State = pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED
		p.Version = v.Number()
		return p, nil
	}
	if err := m.keep(ctx, h, merged); err != nil {
		return nil, err
	}
	m.audit(ctx, fmt.Sprintf("%s %s proposal %s: %s", m.cfg.State, verb, short(h[:]), governance.DescribeChange(change)))
	m.push()
	return m.describe(merged, nil), nil
}

// signedOther returns another decision on parent this state signed. m.mu
// is held.
func (m *Manager) signedOther(parent *governance.Version, except [32]byte) *pocnetv1.Proposal {
	for h, sv := range m.proposals {
		if h == except || !slices.ContainsFunc(sv.GetSignatures(), func(s *pocnetv1.VersionSignature) bool { return s.GetState() == m.cfg.State }) {
			continue
		}
		if p := m.describe(sv, nil); p.GetVersion() == parent.Number()+1 && p.GetChange().GetEntryUpdate() == nil {
			return p
		}
	}
	return nil
}

// UpdateEntry replaces this state's entry, signed by this state alone, and
// puts it in force at once.
func (m *Manager) UpdateEntry(ctx context.Context, mem *pocnetv1.Member, baseVersion uint64) (*governance.Version, error) {
	if mem == nil {
		return nil, errorf(ErrInvalidArgument, "member: required")
	}
	if mem.GetState() != m.cfg.State {
		return nil, errorf(ErrPermissionDenied, "member.state: %q is not this node's state %s; a state changes its own entry only", mem.GetState(), m.cfg.State)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	parent := m.chain.Latest()
	if baseVersion != 0 && baseVersion != parent.Number() {
		base, ok := m.chain.Version(baseVersion)
		if !ok {
			return nil, errorf(ErrInvalidArgument, "base_version: %d is not a version of this chain (latest %d)", baseVersion, parent.Number())
		}
		was, _ := base.Directory().Member(m.cfg.State)
		now, _ := parent.Directory().Member(m.cfg.State)
		if !proto.Equal(was, now) {
			return nil, errorf(ErrFailedPrecondition, "the entry of %s changed after version %d (now version %d); read it again and reapply the edit", m.cfg.State, baseVersion, parent.Number())
		}
	}
	return m.updateEntry(ctx, parent, mem)
}

// updateEntry signs and adopts an entry update. m.mu is held.
func (m *Manager) updateEntry(ctx context.Context, parent *governance.Version, mem *pocnetv1.Member) (*governance.Version, error) {
	data, err := governance.NextEntryUpdate(parent, mem, m.cfg.Now())
	if err != nil {
		return nil, errorf(ErrInvalidArgument, "%v", err)
	}
	key, err := m.signingKey(parent)
	if err != nil {
		return nil, err
	}
	sig, err := governance.Sign(m.cfg.State, key, data)
	if err != nil {
		return nil, err
	}
	sv := &pocnetv1.SignedVersion{Version: data, Signatures: []*pocnetv1.VersionSignature{sig}}
	return m.adopt(ctx, sv, m.cfg.State)
}

// RotateKeys makes new keys for this state, stores their private halves,
// and publishes them: the new signing key ACTIVE and the old ones RETIRED
// from now (a backlog signed before stays valid), the new encryption key
// ACTIVE (senders seal to it) and the old ones RETIRED (still opened).
func (m *Manager) RotateKeys(ctx context.Context, signing, encryption bool) (v *governance.Version, signingKeyID, encryptionKeyID string, err error) {
	if !signing && !encryption {
		return nil, "", "", errorf(ErrInvalidArgument, "rotate signing, encryption or both")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	parent := m.chain.Latest()
	cur, ok := parent.Directory().Member(m.cfg.State)
	if !ok {
		return nil, "", "", errorf(ErrPermissionDenied, "%s is not a member", m.cfg.State)
	}
	mem := proto.Clone(cur).(*pocnetv1.Member)
	now := m.cfg.Now()
	if now.Before(parent.IssuedAt()) {
		now = parent.IssuedAt()
	}
	stored := map[string][]byte{}
	var newSigning ed25519.PrivateKey
	var encKey hpke.PrivateKey
	if signing {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, "", "", err
		}
		signingKeyID = directory.SigningKeyID(pub)
		for _, k := range mem.SigningKeys {
			if k.GetStatus() == pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
				k.Status = pocnetv1.KeyStatus_KEY_STATUS_RETIRED
				// What the node signs until the new version is in force
				// (its store's fsync) is made after now: the old key
				// stays valid a little longer, for that. Revoking, not
				// retiring, is for a key that must stop at once.
				k.RetiredAt = timestamppb.New(now.Add(RetireGrace))
			}
		}
		mem.SigningKeys = append(mem.SigningKeys, &pocnetv1.SigningKey{KeyId: signingKeyID, PublicKey: pub, Status: pocnetv1.KeyStatus_KEY_STATUS_ACTIVE})
		stored[signingKeyID] = priv.Seed()
		newSigning = priv
	}
	if encryption {
		priv, err := directory.KEM().GenerateKey()
		if err != nil {
			return nil, "", "", err
		}
		pub := priv.PublicKey().Bytes()
		encryptionKeyID = directory.EncryptionKeyID(pub)
		for _, k := range mem.EncryptionKeys {
			if k.GetStatus() == pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
				k.Status = pocnetv1.KeyStatus_KEY_STATUS_RETIRED
			}
		}
		mem.EncryptionKeys = append(mem.EncryptionKeys, &pocnetv1.EncryptionKey{KeyId: encryptionKeyID, PublicKey: pub, Status: pocnetv1.KeyStatus_KEY_STATUS_ACTIVE})
		b, err := priv.Bytes()
		if err != nil {
			return nil, "", "", err
		}
		stored[encryptionKeyID] = b
		encKey = priv
	}
	// The private halves are stored before any version names them, and the
	// node opens with the new encryption key from then on: a peer may seal
	// to it as soon as it holds the version.
	err = m.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		for id, b := range stored {
			if err := tx.PutPrivateKey(id, b); err != nil {
				return err
			}
		}
		tx.Audit(&pocnetv1.AuditRecord{OccurredAt: timestamppb.New(m.cfg.Now()), Action: pocnetv1.AuditAction_AUDIT_ACTION_DIRECTORY, Actor: m.cfg.State,
			Detail: "new keys made and stored: " + strings.Join(slices.Sorted(maps.Keys(stored)), ", ")})
		return nil
	})
	if err != nil {
		return nil, "", "", err
	}
	if encKey != nil {
		m.cfg.AddEncryptionKey(encryptionKeyID, encKey)
	}
	if newSigning != nil {
		m.keys[signingKeyID] = newSigning
	}
	v, err = m.updateEntry(ctx, parent, mem)
	if err != nil {
		return nil, "", "", err
	}
	return v, signingKeyID, encryptionKeyID, nil
}

// nextDeadline returns the earliest silence deadline of a held observer
// admission still ahead, or zero. m.mu is held.
func (m *Manager) nextDeadline(now time.Time) time.Time {
	var next time.Time
	for _, sv := range m.proposals {
		var pb pocnetv1.DirectoryVersion
		if proto.Unmarshal(sv.GetVersion(), &pb) != nil || len(sv.GetObjections()) > 0 {
			continue
		}
		if oa := pb.GetChange().GetObserverAdmission(); oa != nil {
			d := oa.GetSilenceDeadline().AsTime()
			if !d.Before(now) && (next.IsZero() || d.Before(next)) {
				next = d
			}
		}
	}
	return next
}
