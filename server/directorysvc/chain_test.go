package directorysvc

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// t0 is the genesis time of every test chain; versions follow a minute
// apart, and the chain is verified as of a day later.
var t0 = time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)

// The generated federation has four states: XAA, XBB and XCC found the
// chain, XDD is kept to be proposed for admission.
var generated = sync.OnceValues(func() (*certs.Federation, error) {
	return certs.Generate(certs.Options{Count: 4, Now: func() time.Time { return t0 }})
})

// chainDirectory is a Directory backed by a real governance.Chain of real
// Ed25519 signatures: it plays the manager of XAA's node, signing with XAA's
// key and verifying every version it makes. It records the calls it gets so
// that tests can tell a request refused by the handler from one refused by
// the manager.
type chainDirectory struct {
	t     testing.TB
	fed   *certs.Federation
	self  string
	chain *governance.Chain

	mu        sync.Mutex
	key       ed25519.PrivateKey // self's current signing key
	calls     []string
	proposals []*pocnetv1.Proposal
}

func newChainDirectory(t testing.TB) *chainDirectory {
	t.Helper()
	fed, err := generated()
	if err != nil {
		t.Fatal(err)
	}
	founders := []string{"XAA", "XBB", "XCC"}
	d := &chainDirectory{t: t, fed: fed, self: "XAA", key: fed.State("XAA").SigningKey}
	dir := &pocnetv1.Directory{FederationId: fed.ID}
	for _, s := range founders {
		dir.Members = append(dir.Members, d.entry(s))
	}
	data := d.marshal(&pocnetv1.DirectoryVersion{Version: 1, IssuedAt: timestamppb.New(t0), Directory: dir, Rule: consensus()})
	sv := &pocnetv1.SignedVersion{Version: data}
	for _, s := range founders {
		sv.Signatures = append(sv.Signatures, d.sign(s, fed.State(s).SigningKey, data))
	}
	if d.chain, err = governance.NewChain(sv, t0); err != nil {
		t.Fatalf("genesis: %v", err)
	}
	return d
}

func consensus() *pocnetv1.DecisionRule {
	return &pocnetv1.DecisionRule{
		Rule:          &pocnetv1.DecisionRule_Consensus{Consensus: &pocnetv1.ConsensusRule{}},
		SilencePeriod: durationpb.New(14 * 24 * time.Hour),
	}
}

// entry returns a copy of a generated state's directory entry.
func (d *chainDirectory) entry(state string) *pocnetv1.Member {
	for _, m := range d.fed.Directory.GetMembers() {
		if m.GetState() == state {
			return proto.Clone(m).(*pocnetv1.Member)
		}
	}
	d.t.Fatalf("no generated state %s", state)
	return nil
}

func (d *chainDirectory) marshal(v *pocnetv1.DirectoryVersion) []byte {
	d.t.Helper()
	b, err := governance.Marshal(v)
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

func (d *chainDirectory) sign(state string, key ed25519.PrivateKey, data []byte) *pocnetv1.VersionSignature {
	d.t.Helper()
	sig, err := governance.Sign(state, key, data)
	if err != nil {
		d.t.Fatal(err)
	}
	return sig
}

func (d *chainDirectory) now() time.Time { return t0.Add(24 * time.Hour) }

func (d *chainDirectory) record(call string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, call)
}

// Calls returns the manager calls made so far.
func (d *chainDirectory) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// child builds the version after parent with change, the edit applied to a
// copy of parent's directory and rule, issued a minute after parent.
func (d *chainDirectory) child(parent *governance.Version, change *pocnetv1.Change, edit func(*pocnetv1.DirectoryVersion)) *pocnetv1.DirectoryVersion {
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

// addEntry appends version v, signed by self, to the chain.
func (d *chainDirectory) addEntry(v *pocnetv1.DirectoryVersion) (*governance.Version, error) {
	d.mu.Lock()
	key := d.key
	d.mu.Unlock()
	data := d.marshal(v)
	return d.chain.Add(&pocnetv1.SignedVersion{Version: data, Signatures: []*pocnetv1.VersionSignature{d.sign(d.self, key, data)}}, d.now())
}

// rename publishes n entry updates of self, each renaming it.
func (d *chainDirectory) rename(n int) {
	d.t.Helper()
	for range n {
		latest := d.chain.Latest()
		m, _ := latest.Directory().Member(d.self)
		m = proto.Clone(m).(*pocnetv1.Member)
		m.Name = fmt.Sprintf("Testland XAA, version %d", latest.Number()+1)
		if _, err := d.addEntry(d.child(latest, entryUpdate(d.self), replaceMember(m))); err != nil {
			d.t.Fatal(err)
		}
	}
}

// fork offers the chain a second, different entry update of self on the
// parent of the latest version: a valid sibling, which the chain refuses and
// reports.
func (d *chainDirectory) fork() {
	d.t.Helper()
	latest := d.chain.Latest()
	parent, _ := d.chain.Version(latest.Number() - 1)
	m, _ := parent.Directory().Member(d.self)
	m = proto.Clone(m).(*pocnetv1.Member)
	m.Name = "Testland XAA, the other history"
	var fe *governance.ForkError
	if _, err := d.addEntry(d.child(parent, entryUpdate(d.self), replaceMember(m))); !errors.As(err, &fe) {
		d.t.Fatalf("sibling version: got %v, want a fork", err)
	}
}

func (d *chainDirectory) Latest() *governance.Version { return d.chain.Latest() }

func (d *chainDirectory) Version(n uint64) (*governance.Version, bool) { return d.chain.Version(n) }

func (d *chainDirectory) Forks() []*governance.ForkError { return d.chain.Forks() }

func (d *chainDirectory) UpdateEntry(_ context.Context, m *pocnetv1.Member, base uint64) (*governance.Version, error) {
	d.record("UpdateEntry")
	latest := d.chain.Latest()
	if base != 0 {
		b, ok := d.chain.Version(base)
		if !ok {
			return nil, status.Errorf(codes.FailedPrecondition, "base_version %d is not in the chain", base)
		}
		was, _ := b.Directory().Member(d.self)
		is, _ := latest.Directory().Member(d.self)
		if !proto.Equal(was, is) {
			return nil, status.Errorf(codes.FailedPrecondition, "the entry of %s changed since version %d", d.self, base)
		}
	}
	return d.addEntry(d.child(latest, entryUpdate(d.self), replaceMember(m)))
}

// RotateKeys rotates self's signing key: the old key retired at the new
// version's time, which it signs (it is the key in force). Encryption keys
// are not rotated here.
func (d *chainDirectory) RotateKeys(_ context.Context, signing, encryption bool) (*governance.Version, string, string, error) {
	d.record("RotateKeys")
	if encryption {
		return nil, "", "", status.Error(codes.Unimplemented, "this test manager rotates signing keys only")
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", "", err
	}
	latest := d.chain.Latest()
	m, _ := latest.Directory().Member(d.self)
	m = proto.Clone(m).(*pocnetv1.Member)
	at := timestamppb.New(latest.IssuedAt().Add(time.Minute))
	for _, k := range m.SigningKeys {
		if k.Status == pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
			k.Status, k.RetiredAt = pocnetv1.KeyStatus_KEY_STATUS_RETIRED, at
		}
	}
	pub := certs.PublishSigningKey(key)
	m.SigningKeys = append(m.SigningKeys, pub)
	v, err := d.addEntry(d.child(latest, entryUpdate(d.self), replaceMember(m)))
	if err != nil {
		return nil, "", "", err
	}
	d.mu.Lock()
	d.key = key
	d.mu.Unlock()
	return v, pub.GetKeyId(), "", nil
}

// Propose signs the proposed version as its first signer and holds it as
// pending, with the signatures the rule in force requires.
func (d *chainDirectory) Propose(_ context.Context, req *pocnetv1.ProposeRequest) (*pocnetv1.Proposal, error) {
	d.record("Propose")
	latest := d.chain.Latest()
	var change *pocnetv1.Change
	var edit func(*pocnetv1.DirectoryVersion)
	var member *pocnetv1.Member
	switch p := req.GetProposal().(type) {
	case *pocnetv1.ProposeRequest_Admit:
		member = proto.Clone(p.Admit).(*pocnetv1.Member)
		member.Kind = pocnetv1.MemberKind_MEMBER_KIND_STATE
		change = &pocnetv1.Change{Change: &pocnetv1.Change_Admission{Admission: &pocnetv1.Admission{State: member.GetState()}}}
		edit = func(v *pocnetv1.DirectoryVersion) { v.Directory.Members = append(v.Directory.Members, member) }
	case *pocnetv1.ProposeRequest_Remove:
		change = &pocnetv1.Change{Change: &pocnetv1.Change_Removal{Removal: &pocnetv1.Removal{State: p.Remove}}}
		edit = func(v *pocnetv1.DirectoryVersion) {
			v.Directory.Members = slices.DeleteFunc(v.Directory.Members, func(m *pocnetv1.Member) bool { return m.GetState() == p.Remove })
		}
	default:
		return nil, status.Errorf(codes.Unimplemented, "this test manager proposes admissions and removals only")
	}
	v := d.child(latest, change, edit)
	data := d.marshal(v)
	needed, eligible, err := governance.Required(latest.Rule(), governance.StateMembers(latest.Directory()), change)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	h := governance.Hash(data)
	p := &pocnetv1.Proposal{
		Hash:        h[:],
		Version:     v.GetVersion(),
		Change:      change,
		Description: governance.DescribeChange(change),
		IssuedAt:    v.GetIssuedAt(),
		State:       pocnetv1.ProposalState_PROPOSAL_STATE_PENDING,
		Rule:        governance.DescribeRule(latest.Rule()),
		Needed:      uint32(needed),
		Signed:      []string{d.self},
		Missing:     slices.DeleteFunc(eligible, func(s string) bool { return s == d.self }),
		Member:      member,
	}
	d.mu.Lock()
	d.proposals = append(d.proposals, p)
	d.mu.Unlock()
	return p, nil
}

func (d *chainDirectory) held(hash []byte) (*pocnetv1.Proposal, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.proposals {
		if string(p.GetHash()) == string(hash) {
			return p, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no proposal %x", hash[:4])
}

// Sign finds the proposal; self signed every proposal it holds already.
func (d *chainDirectory) Sign(_ context.Context, hash []byte) (*pocnetv1.Proposal, error) {
	d.record("Sign")
	return d.held(hash)
}

// Object finds the proposal; only observer admissions are objected to.
func (d *chainDirectory) Object(_ context.Context, hash []byte) (*pocnetv1.Proposal, error) {
	d.record("Object")
	p, err := d.held(hash)
	if err != nil {
		return nil, err
	}
	return nil, status.Errorf(codes.FailedPrecondition, "%s is not an observer admission: only those are objected to", p.GetDescription())
}

func (d *chainDirectory) Proposals() []*pocnetv1.Proposal {
	d.record("Proposals")
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.proposals)
}

// adminCtx is a call by an admin operator of XAA, as the interceptor
// passes it on.
func adminCtx(fed *certs.Federation) context.Context {
	return identity.NewContext(context.Background(), identity.Operator(fed.ID, "XAA", identity.AdminRole, "duty"))
}
