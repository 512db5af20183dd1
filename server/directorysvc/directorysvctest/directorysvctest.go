// Package directorysvctest provides, for tests only, a directorysvc.Directory
// backed by a real governance.Chain: a generated federation's keys sign
// every version, and every version is verified as the chain is built. It
// plays the manager of one state's node (the first founder): entry updates,
// key rotation and proposals are signed with that state's key, and
// proposals other states make are offered to it as if gossiped.
//
// It keeps its proposals in memory, applies a decision once it carries the
// signatures the rule in force requires, and never lets an observer
// admission's silence period end. It is not the node's manager and must
// never be used outside tests.
package directorysvctest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// DefaultGenesis is the genesis time when Options gives none. Versions
// follow a minute apart, and never depend on the wall clock.
var DefaultGenesis = time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)

// DefaultSilence is the silence period of the default rule.
const DefaultSilence = 14 * 24 * time.Hour

// Options say what federation New makes.
type Options struct {
	// Federation is the federation id; default certs.DefaultFederation.
	Federation string
	// States is the number of generated states (XAA, XBB, ...); default 4.
	States int
	// Founders is how many of them, from the first, make the genesis; the
	// others are kept to be proposed for admission. Default States-1.
	Founders int
	// Genesis is when the genesis is issued; default DefaultGenesis.
	Genesis time.Time
	// Rule is the genesis rule; default consensus with DefaultSilence.
	Rule *pocnetv1.DecisionRule
}

// Directory is a chain-backed directory manager for tests. It is safe for
// concurrent use.
type Directory struct {
	t     testing.TB
	fed   *certs.Federation
	self  string
	chain *governance.Chain

	mu    sync.Mutex
	keys  map[string]ed25519.PrivateKey // each state's current signing key
	calls []string
	held  []*held
}

// held is a proposal with the signatures collected for it.
type held struct {
	p          *pocnetv1.Proposal
	data       []byte
	sigs       []*pocnetv1.VersionSignature
	objections []*pocnetv1.VersionSignature
	eligible   []string
}

// Consensus is the consensus rule with silence.
func Consensus(silence time.Duration) *pocnetv1.DecisionRule {
	return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Consensus{Consensus: &pocnetv1.ConsensusRule{}}, SilencePeriod: durationpb.New(silence)}
}

// New generates a federation and starts a chain with its founders' genesis,
// signed by each of them.
func New(t testing.TB, opts Options) *Directory {
	t.Helper()
	if opts.States == 0 {
		opts.States = 4
	}
	if opts.Founders == 0 {
		opts.Founders = max(opts.States-1, 1)
	}
	if opts.Genesis.IsZero() {
		opts.Genesis = DefaultGenesis
	}
	if opts.Rule == nil {
		opts.Rule = Consensus(DefaultSilence)
	}
	genesisTime := opts.Genesis
	fed, err := certs.Generate(certs.Options{Federation: opts.Federation, Count: opts.States, Now: func() time.Time { return genesisTime }})
	if err != nil {
		t.Fatalf("directorysvctest: generate: %v", err)
	}
	d := &Directory{t: t, fed: fed, self: fed.States[0].Code, keys: map[string]ed25519.PrivateKey{}}
	for _, s := range fed.States {
		d.keys[s.Code] = s.SigningKey
	}
	dir := &pocnetv1.Directory{FederationId: fed.ID}
	var founders []string
	for _, s := range fed.States[:opts.Founders] {
		dir.Members = append(dir.Members, d.Entry(s.Code))
		founders = append(founders, s.Code)
	}
	data := d.marshal(&pocnetv1.DirectoryVersion{Version: 1, IssuedAt: timestamppb.New(opts.Genesis), Directory: dir, Rule: opts.Rule})
	sv := &pocnetv1.SignedVersion{Version: data}
	for _, s := range founders {
		sv.Signatures = append(sv.Signatures, d.sign(s, data))
	}
	if d.chain, err = governance.NewChain(sv, opts.Genesis); err != nil {
		t.Fatalf("directorysvctest: genesis: %v", err)
	}
	return d
}

// Federation returns the generated federation: its states' CAs, keys and
// operators.
func (d *Directory) Federation() *certs.Federation { return d.fed }

// Self returns the state whose node this manager plays.
func (d *Directory) Self() string { return d.self }

// Entry returns a copy of a generated state's directory entry.
func (d *Directory) Entry(state string) *pocnetv1.Member {
	for _, m := range d.fed.Directory.GetMembers() {
		if m.GetState() == state {
			return proto.Clone(m).(*pocnetv1.Member)
		}
	}
	d.t.Fatalf("directorysvctest: no generated state %s", state)
	return nil
}

// Now is the clock of the chain: a minute after the latest version.
func (d *Directory) Now() time.Time { return d.chain.Latest().IssuedAt().Add(time.Minute) }

// Calls returns the names of the manager methods called so far, except
// Latest, Version and Forks.
func (d *Directory) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

func (d *Directory) record(call string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, call)
}

func (d *Directory) marshal(v *pocnetv1.DirectoryVersion) []byte {
	d.t.Helper()
	b, err := governance.Marshal(v)
	if err != nil {
		d.t.Fatalf("directorysvctest: %v", err)
	}
	return b
}

func (d *Directory) sign(state string, data []byte) *pocnetv1.VersionSignature {
	d.t.Helper()
	d.mu.Lock()
	key := d.keys[state]
	d.mu.Unlock()
	sig, err := governance.Sign(state, key, data)
	if err != nil {
		d.t.Fatalf("directorysvctest: %v", err)
	}
	return sig
}

// child builds the version after parent with change, edit applied to a
// copy of parent's directory and rule.
func (d *Directory) child(parent *governance.Version, change *pocnetv1.Change, edit func(*pocnetv1.DirectoryVersion)) *pocnetv1.DirectoryVersion {
	h := parent.Hash()
	v := &pocnetv1.DirectoryVersion{
		Version:    parent.Number() + 1,
		ParentHash: h[:],
		IssuedAt:   timestamppb.New(parent.IssuedAt().Add(time.Minute)),
		Directory:  proto.Clone(parent.Directory().Proto()).(*pocnetv1.Directory),
		Rule:       proto.Clone(parent.Rule()).(*pocnetv1.DecisionRule),
		Change:     change,
	}
	if edit != nil {
		edit(v)
	}
	return v
}

func entryUpdate(s string) *pocnetv1.Change {
	return &pocnetv1.Change{Change: &pocnetv1.Change_EntryUpdate{EntryUpdate: &pocnetv1.EntryUpdate{State: s}}}
}

func replaceMember(m *pocnetv1.Member) func(*pocnetv1.DirectoryVersion) {
	return func(v *pocnetv1.DirectoryVersion) {
		for i, o := range v.Directory.Members {
			if o.GetState() == m.GetState() {
				v.Directory.Members[i] = m
			}
		}
	}
}

// add appends a version signed by signers and marks the proposals it
// replaces superseded.
func (d *Directory) add(sv *pocnetv1.SignedVersion) (*governance.Version, error) {
	v, err := d.chain.Add(sv, d.Now())
	if err != nil {
		return nil, err
	}
	h := v.Hash()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, x := range d.held {
		if x.p.GetVersion() == v.Number() && !bytes.Equal(x.p.GetHash(), h[:]) && !final(x.p) {
			x.p.State = pocnetv1.ProposalState_PROPOSAL_STATE_SUPERSEDED
		}
	}
	return v, nil
}

func final(p *pocnetv1.Proposal) bool {
	switch p.GetState() {
	case pocnetv1.ProposalState_PROPOSAL_STATE_PENDING, pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE:
		return false
	}
	return true
}

// update publishes m as self's entry, signed by self.
func (d *Directory) update(m *pocnetv1.Member) (*governance.Version, error) {
	data := d.marshal(d.child(d.chain.Latest(), entryUpdate(d.self), replaceMember(m)))
	return d.add(&pocnetv1.SignedVersion{Version: data, Signatures: []*pocnetv1.VersionSignature{d.sign(d.self, data)}})
}

// Rename publishes n entry updates of self, each changing its name.
func (d *Directory) Rename(n int) {
	d.t.Helper()
	for range n {
		m, _ := d.chain.Latest().Directory().Member(d.self)
		m = proto.Clone(m).(*pocnetv1.Member)
		m.Name = fmt.Sprintf("Testland %s, version %d", d.self, d.chain.Latest().Number()+1)
		if _, err := d.update(m); err != nil {
			d.t.Fatalf("directorysvctest: rename: %v", err)
		}
	}
}

// Fork offers the chain a second, different entry update of self on the
// parent of the latest version: a valid sibling, which the chain refuses
// and reports. The latest version must be an entry update of self.
func (d *Directory) Fork() {
	d.t.Helper()
	latest := d.chain.Latest()
	parent, _ := d.chain.Version(latest.Number() - 1)
	m, _ := parent.Directory().Member(d.self)
	m = proto.Clone(m).(*pocnetv1.Member)
	m.Name = fmt.Sprintf("Testland %s, the other history", d.self)
	data := d.marshal(d.child(parent, entryUpdate(d.self), replaceMember(m)))
	_, err := d.chain.Add(&pocnetv1.SignedVersion{Version: data, Signatures: []*pocnetv1.VersionSignature{d.sign(d.self, data)}}, d.Now())
	var fe *governance.ForkError
	if !errors.As(err, &fe) {
		d.t.Fatalf("directorysvctest: sibling version: got %v, want a fork", err)
	}
}

// Latest implements directorysvc.Directory.
func (d *Directory) Latest() *governance.Version { return d.chain.Latest() }

// Version implements directorysvc.Directory.
func (d *Directory) Version(n uint64) (*governance.Version, bool) { return d.chain.Version(n) }

// Forks implements directorysvc.Directory.
func (d *Directory) Forks() []*governance.ForkError { return d.chain.Forks() }

// UpdateEntry implements directorysvc.Directory.
func (d *Directory) UpdateEntry(_ context.Context, m *pocnetv1.Member, base uint64) (*governance.Version, error) {
	d.record("UpdateEntry")
	if base != 0 {
		b, ok := d.chain.Version(base)
		if !ok {
			return nil, status.Errorf(codes.FailedPrecondition, "base_version %d is not in the chain", base)
		}
		was, _ := b.Directory().Member(d.self)
		is, _ := d.chain.Latest().Directory().Member(d.self)
		if !proto.Equal(was, is) {
			return nil, status.Errorf(codes.FailedPrecondition, "the entry of %s changed since version %d", d.self, base)
		}
	}
	v, err := d.update(m)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return v, nil
}

// RotateKeys implements directorysvc.Directory: the old keys retired in the
// version that publishes the new ones, which the old signing key signs.
func (d *Directory) RotateKeys(_ context.Context, signing, encryption bool) (*governance.Version, string, string, error) {
	d.record("RotateKeys")
	latest := d.chain.Latest()
	m, _ := latest.Directory().Member(d.self)
	m = proto.Clone(m).(*pocnetv1.Member)
	at := timestamppb.New(latest.IssuedAt().Add(time.Minute))
	var newKey ed25519.PrivateKey
	var sid, eid string
	if signing {
		k, err := envelope.GenerateSigningKey()
		if err != nil {
			return nil, "", "", err
		}
		for _, old := range m.SigningKeys {
			if old.Status == pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
				old.Status, old.RetiredAt = pocnetv1.KeyStatus_KEY_STATUS_RETIRED, at
			}
		}
		pub := certs.PublishSigningKey(k)
		m.SigningKeys = append(m.SigningKeys, pub)
		newKey, sid = k, pub.GetKeyId()
	}
	if encryption {
		k, err := envelope.GenerateEncryptionKey()
		if err != nil {
			return nil, "", "", err
		}
		for _, old := range m.EncryptionKeys {
			if old.Status == pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
				old.Status = pocnetv1.KeyStatus_KEY_STATUS_RETIRED
			}
		}
		pub := certs.PublishEncryptionKey(k)
		m.EncryptionKeys = append(m.EncryptionKeys, pub)
		eid = pub.GetKeyId()
	}
	v, err := d.update(m)
	if err != nil {
		return nil, "", "", err
	}
	if newKey != nil {
		d.mu.Lock()
		d.keys[d.self] = newKey
		d.mu.Unlock()
	}
	return v, sid, eid, nil
}

// Propose implements directorysvc.Directory.
func (d *Directory) Propose(_ context.Context, req *pocnetv1.ProposeRequest) (*pocnetv1.Proposal, error) {
	d.record("Propose")
	return d.propose(d.self, req)
}

// Offer holds a proposal made and signed by state from, as if its node had
// gossiped it here, and returns it as it stands.
func (d *Directory) Offer(from string, req *pocnetv1.ProposeRequest) *pocnetv1.Proposal {
	d.t.Helper()
	p, err := d.propose(from, req)
	if err != nil {
		d.t.Fatalf("directorysvctest: offer from %s: %v", from, err)
	}
	return p
}

func (d *Directory) propose(from string, req *pocnetv1.ProposeRequest) (*pocnetv1.Proposal, error) {
	latest := d.chain.Latest()
	var change *pocnetv1.Change
	var edit func(*pocnetv1.DirectoryVersion)
	var member *pocnetv1.Member
	admit := func(m *pocnetv1.Member, kind pocnetv1.MemberKind) {
		member = proto.Clone(m).(*pocnetv1.Member)
		member.Kind = kind
		edit = func(v *pocnetv1.DirectoryVersion) { v.Directory.Members = append(v.Directory.Members, member) }
	}
	issued := latest.IssuedAt().Add(time.Minute)
	switch p := req.GetProposal().(type) {
	case *pocnetv1.ProposeRequest_Admit:
		admit(p.Admit, pocnetv1.MemberKind_MEMBER_KIND_STATE)
		change = &pocnetv1.Change{Change: &pocnetv1.Change_Admission{Admission: &pocnetv1.Admission{State: member.GetState()}}}
	case *pocnetv1.ProposeRequest_AdmitObserver:
		admit(p.AdmitObserver, pocnetv1.MemberKind_MEMBER_KIND_OBSERVER)
		deadline := timestamppb.New(issued.Add(latest.Rule().GetSilencePeriod().AsDuration()))
		change = &pocnetv1.Change{Change: &pocnetv1.Change_ObserverAdmission{ObserverAdmission: &pocnetv1.ObserverAdmission{State: member.GetState(), SilenceDeadline: deadline}}}
	case *pocnetv1.ProposeRequest_Remove:
		change = &pocnetv1.Change{Change: &pocnetv1.Change_Removal{Removal: &pocnetv1.Removal{State: p.Remove}}}
		edit = func(v *pocnetv1.DirectoryVersion) {
			v.Directory.Members = slices.DeleteFunc(v.Directory.Members, func(m *pocnetv1.Member) bool { return m.GetState() == p.Remove })
		}
	case *pocnetv1.ProposeRequest_Rule:
		change = &pocnetv1.Change{Change: &pocnetv1.Change_RuleChange{RuleChange: &pocnetv1.RuleChange{}}}
		edit = func(v *pocnetv1.DirectoryVersion) { v.Rule = proto.Clone(p.Rule).(*pocnetv1.DecisionRule) }
	default:
		return nil, status.Error(codes.InvalidArgument, "proposal: required")
	}
	if r := change.GetRemoval(); r != nil {
		if _, ok := latest.Directory().Member(r.GetState()); !ok {
			return nil, status.Errorf(codes.FailedPrecondition, "%s is not a member", r.GetState())
		}
	}
	if member != nil {
		if _, ok := latest.Directory().Member(member.GetState()); ok {
			return nil, status.Errorf(codes.FailedPrecondition, "%s is a member already", member.GetState())
		}
	}
	v := d.child(latest, change, edit)
	data := d.marshal(v)
	needed, eligible, err := governance.Required(latest.Rule(), governance.StateMembers(latest.Directory()), change)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	h := governance.Hash(data)
	x := &held{
		data:     data,
		sigs:     []*pocnetv1.VersionSignature{d.sign(from, data)},
		eligible: eligible,
		p: &pocnetv1.Proposal{
			Hash:        h[:],
			Version:     v.GetVersion(),
			Change:      change,
			Description: governance.DescribeChange(change),
			IssuedAt:    v.GetIssuedAt(),
			State:       pocnetv1.ProposalState_PROPOSAL_STATE_PENDING,
			Rule:        governance.DescribeRule(latest.Rule()),
			Needed:      uint32(needed),
			Signed:      []string{from},
			Member:      member,
		},
	}
	if oa := change.GetObserverAdmission(); oa != nil {
		x.p.State, x.p.Needed, x.p.SilenceDeadline = pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE, 0, oa.GetSilenceDeadline()
	} else {
		x.p.Missing = slices.DeleteFunc(slices.Clone(eligible), func(s string) bool { return s == from })
	}
	d.mu.Lock()
	d.held = append(d.held, x)
	d.mu.Unlock()
	if err := d.adopt(x); err != nil {
		return nil, err
	}
	return d.snapshot(x), nil
}

// adopt appends a decision to the chain once it has the signatures needed.
func (d *Directory) adopt(x *held) error {
	d.mu.Lock()
	ready := x.p.GetState() == pocnetv1.ProposalState_PROPOSAL_STATE_PENDING && len(x.sigs) >= int(x.p.GetNeeded())
	sv := &pocnetv1.SignedVersion{Version: x.data, Signatures: slices.Clone(x.sigs)}
	d.mu.Unlock()
	if !ready {
		return nil
	}
	if _, err := d.add(sv); err != nil {
		return status.Errorf(codes.FailedPrecondition, "the signed proposal does not verify: %v", err)
	}
	d.mu.Lock()
	x.p.State = pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED
	d.mu.Unlock()
	return nil
}

func (d *Directory) snapshot(x *held) *pocnetv1.Proposal {
	d.mu.Lock()
	defer d.mu.Unlock()
	return proto.Clone(x.p).(*pocnetv1.Proposal)
}

func (d *Directory) find(hash []byte) (*held, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, x := range d.held {
		if bytes.Equal(x.p.GetHash(), hash) {
			return x, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no proposal %x is held by this node", hash)
}

// Sign implements directorysvc.Directory.
func (d *Directory) Sign(_ context.Context, hash []byte) (*pocnetv1.Proposal, error) {
	d.record("Sign")
	x, err := d.find(hash)
	if err != nil {
		return nil, err
	}
	p := d.snapshot(x)
	switch {
	case p.GetState() == pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE:
		return nil, status.Errorf(codes.FailedPrecondition, "the %s takes effect by silence: there is nothing to sign", p.GetDescription())
	case p.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_PENDING:
		return nil, status.Errorf(codes.FailedPrecondition, "the %s is no longer pending", p.GetDescription())
	case slices.Contains(p.GetSigned(), d.self):
		return nil, status.Errorf(codes.FailedPrecondition, "%s signed the %s already", d.self, p.GetDescription())
	case !slices.Contains(x.eligible, d.self):
		return nil, status.Errorf(codes.FailedPrecondition, "%s does not sign the %s", d.self, p.GetDescription())
	}
	sig := d.sign(d.self, x.data)
	d.mu.Lock()
	x.sigs = append(x.sigs, sig)
	x.p.Signed = append(x.p.Signed, d.self)
	x.p.Missing = slices.DeleteFunc(x.p.Missing, func(s string) bool { return s == d.self })
	d.mu.Unlock()
	if err := d.adopt(x); err != nil {
		return nil, err
	}
	return d.snapshot(x), nil
}

// Object implements directorysvc.Directory.
func (d *Directory) Object(_ context.Context, hash []byte) (*pocnetv1.Proposal, error) {
	d.record("Object")
	x, err := d.find(hash)
	if err != nil {
		return nil, err
	}
	p := d.snapshot(x)
	if p.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE {
		return nil, status.Errorf(codes.FailedPrecondition, "the %s is not an observer admission in its silence period: only those are objected to", p.GetDescription())
	}
	d.mu.Lock()
	key := d.keys[d.self]
	d.mu.Unlock()
	o, err := governance.Object(d.self, key, x.data)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	x.objections = append(x.objections, o)
	x.p.State = pocnetv1.ProposalState_PROPOSAL_STATE_OBJECTED
	x.p.Objected = append(x.p.Objected, d.self)
	d.mu.Unlock()
	return d.snapshot(x), nil
}

// Proposals implements directorysvc.Directory.
func (d *Directory) Proposals() []*pocnetv1.Proposal {
	d.record("Proposals")
	d.mu.Lock()
	held := slices.Clone(d.held)
	d.mu.Unlock()
	out := make([]*pocnetv1.Proposal, len(held))
	for i, x := range held {
		out[i] = d.snapshot(x)
	}
	return out
}

// Caller is a unary server interceptor that puts the verified TLS peer's
// identity in the context, as the node's own interceptor (server/auth)
// does, so that a test server can serve directorysvc without the node. It
// authorizes nothing.
func Caller(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "not TLS")
	}
	id, _, err := identity.PeerID(ti.State)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	return handler(identity.NewContext(ctx, id), req)
}
