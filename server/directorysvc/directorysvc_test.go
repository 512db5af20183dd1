package directorysvc_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/datakey"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/dirsync"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/store"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/directorysvc"
)

// The service runs here on the node's own directory manager
// (internal/dirsync) over a real Pebble store: XAA's node, in a federation
// founded by XAA, XBB and XCC under consensus, with XDD generated to be
// proposed. What other states sign reaches the manager as their nodes
// offer it (HandleOffer); forks need two nodes and are made on real nodes.

// TestMain checks that no goroutine of the managers or nodes is left.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Pebble goroutines that outlive a closed store briefly are not ours.
		goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2.(*DB).maybeScheduleCompaction"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

// silence is the genesis rule's silence period.
const silence = time.Hour

type node struct {
	t   *testing.T
	fed *certs.Federation
	m   *dirsync.Manager
	svc *directorysvc.Service
}

// newNode starts XAA's directory manager on a fresh store and the service
// on it.
func newNode(t *testing.T) *node {
	t.Helper()
	issued := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	fed, err := certs.Generate(certs.Options{Count: 4, Now: func() time.Time { return issued }})
	if err != nil {
		t.Fatal(err)
	}
	rule := &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Consensus{Consensus: &pocnetv1.ConsensusRule{}}, SilencePeriod: durationpb.New(silence)}
	d := &pocnetv1.Directory{FederationId: fed.ID, Members: fed.Directory.GetMembers()[:3]}
	data, err := governance.Marshal(&pocnetv1.DirectoryVersion{Version: 1, IssuedAt: timestamppb.New(issued), Directory: d, Rule: rule})
	if err != nil {
		t.Fatal(err)
	}
	genesis := &pocnetv1.SignedVersion{Version: data}
	for _, s := range fed.States[:3] {
		sig, err := governance.Sign(s.Code, s.SigningKey, data)
		if err != nil {
			t.Fatal(err)
		}
		genesis.Signatures = append(genesis.Signatures, sig)
	}
	k, err := datakey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ring, err := datakey.NewRing(k)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(t.TempDir(), store.Options{Keys: ring})
	if err != nil {
		t.Fatal(err)
	}
	self := fed.States[0]
	signer, err := envelope.NewSigner(self.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dirsync.New(dirsync.Config{
		State: self.Code, Genesis: genesis, Store: db, Signer: signer,
		SigningKeys: map[string]ed25519.PrivateKey{directory.SigningKeyID(self.SigningKey.Public().(ed25519.PublicKey)): self.SigningKey},
		Logger:      zaptest.NewLogger(t),
	})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(); db.Close() })
	return &node{t: t, fed: fed, m: m, svc: directorysvc.New(directorysvc.Config{Directory: m})}
}

// adminCtx is a call by an admin operator of XAA, as the interceptor
// passes it on.
func (n *node) adminCtx() context.Context {
	return identity.NewContext(context.Background(), identity.Operator(n.fed.ID, "XAA", identity.AdminRole, "duty"))
}

// entry returns a copy of a generated state's directory entry.
func (n *node) entry(state string) *pocnetv1.Member {
	n.t.Helper()
	for _, m := range n.fed.Directory.GetMembers() {
		if m.GetState() == state {
			return proto.Clone(m).(*pocnetv1.Member)
		}
	}
	n.t.Fatalf("no generated state %s", state)
	return nil
}

// rename publishes k entry updates of XAA, each changing its name.
func (n *node) rename(k int) {
	n.t.Helper()
	for range k {
		l := n.m.Latest()
		m, _ := l.Directory().Member("XAA")
		m = proto.Clone(m).(*pocnetv1.Member)
		m.Name = fmt.Sprintf("Testland XAA, version %d", l.Number()+1)
		if _, err := n.m.UpdateEntry(context.Background(), m, 0); err != nil {
			n.t.Fatalf("rename: %v", err)
		}
	}
}

// offer hands the manager a proposal made and signed by state from on the
// version in force, as fetched from from's node, and returns it as held.
func (n *node) offer(from string, data []byte) *pocnetv1.Proposal {
	n.t.Helper()
	sig, err := governance.Sign(from, n.fed.State(from).SigningKey, data)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := n.m.HandleProposals(context.Background(), from, []*pocnetv1.SignedVersion{{Version: data, Signatures: []*pocnetv1.VersionSignature{sig}}}); err != nil {
		n.t.Fatal(err)
	}
	want := governance.Hash(data)
	for _, p := range n.m.Proposals() {
		if bytes.Equal(p.GetHash(), want[:]) {
			return p
		}
	}
	n.t.Fatalf("the manager does not hold the proposal %s offered", from)
	return nil
}

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Errorf("got %v %q, want %v containing %q", st.Code(), st.Message(), code, msg)
	}
}

func ruleOf(r *pocnetv1.DecisionRule) *pocnetv1.ProposeRequest {
	return &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Rule{Rule: r}}
}

// TestValidation checks that the handlers refuse bad requests with the
// field named and without calling the manager: the chain and the
// proposals are as they were, although some of the requests (a change with
// no caller) are ones the manager would have carried out.
func TestValidation(t *testing.T) {
	n := newNode(t)
	n.rename(2)
	s, ctx := n.svc, n.adminCtx()
	head := n.m.Latest().Hash()
	xbb := n.entry("XBB")
	observer := n.entry("XDD")
	observer.Kind = pocnetv1.MemberKind_MEMBER_KIND_OBSERVER
	noState := n.entry("XAA")
	noState.State = ""
	super := func(p uint32) *pocnetv1.DecisionRule {
		return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: p}}, SilencePeriod: durationpb.New(time.Hour)}
	}
	threshold := func(k uint32) *pocnetv1.DecisionRule {
		return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Threshold{Threshold: &pocnetv1.ThresholdRule{States: k}}, SilencePeriod: durationpb.New(time.Hour)}
	}
	noSilence := super(70)
	noSilence.SilencePeriod = nil

	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"history limit above the bound", func() error {
			_, err := s.GetHistory(ctx, &pocnetv1.GetHistoryRequest{Limit: 501})
			return err
		}, codes.InvalidArgument, "limit: 501 is more than 500"},
		{"unknown version", func() error {
			_, err := s.GetVersion(ctx, &pocnetv1.GetVersionRequest{Version: 9})
			return err
		}, codes.NotFound, "version 9 not found: the chain ends at version 3"},
		{"update without member", func() error {
			_, err := s.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{BaseVersion: 3})
			return err
		}, codes.InvalidArgument, "member: required"},
		{"update without state", func() error {
			_, err := s.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{Member: noState})
			return err
		}, codes.InvalidArgument, "member.state: required"},
		{"update of another state's entry", func() error {
			_, err := s.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{Member: xbb})
			return err
		}, codes.PermissionDenied, "member.state: XBB is not XAA: a node changes its own state's entry only"},
		{"rotate nothing", func() error {
			_, err := s.RotateKeys(ctx, &pocnetv1.RotateKeysRequest{})
			return err
		}, codes.InvalidArgument, "signing, encryption: at least one is required"},
		{"propose nothing", func() error {
			_, err := s.Propose(ctx, &pocnetv1.ProposeRequest{})
			return err
		}, codes.InvalidArgument, "proposal: one of admit, remove, rule or admit_observer is required"},
		{"admit without entry", func() error {
			_, err := s.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{}})
			return err
		}, codes.InvalidArgument, "admit: required"},
		{"admit without state", func() error {
			_, err := s.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{Admit: noState}})
			return err
		}, codes.InvalidArgument, "admit.state: required"},
		{"admit an observer", func() error {
			_, err := s.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{Admit: observer}})
			return err
		}, codes.InvalidArgument, "admit.kind: MEMBER_KIND_OBSERVER: an observer is admitted with admit_observer"},
		{"admit a state as observer", func() error {
			_, err := s.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_AdmitObserver{AdmitObserver: xbb}})
			return err
		}, codes.InvalidArgument, "admit_observer.kind: MEMBER_KIND_STATE: a state member is admitted with admit"},
		{"admit_observer without entry", func() error {
			_, err := s.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_AdmitObserver{}})
			return err
		}, codes.InvalidArgument, "admit_observer: required"},
		{"remove nobody", func() error {
			_, err := s.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Remove{}})
			return err
		}, codes.InvalidArgument, "remove: required"},
		{"remove a bad code", func() error {
			_, err := s.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Remove{Remove: "xdd"}})
			return err
		}, codes.InvalidArgument, `remove: `},
		{"rule missing", func() error {
			_, err := s.Propose(ctx, ruleOf(nil))
			return err
		}, codes.InvalidArgument, "rule: required"},
		{"supermajority below half", func() error {
			_, err := s.Propose(ctx, ruleOf(super(40)))
			return err
		}, codes.InvalidArgument, "rule.supermajority.percent: 40 is not between 51 and 100"},
		{"threshold above the membership", func() error {
			_, err := s.Propose(ctx, ruleOf(threshold(4)))
			return err
		}, codes.InvalidArgument, "rule.threshold.states: 4 is more than the 3 state members"},
		{"rule without silence period", func() error {
			_, err := s.Propose(ctx, ruleOf(noSilence))
			return err
		}, codes.InvalidArgument, "rule.silence_period: required"},
		{"sign a short hash", func() error {
			_, err := s.Sign(ctx, &pocnetv1.SignRequest{Hash: []byte{1, 2, 3, 4, 5}})
			return err
		}, codes.InvalidArgument, "hash: 5 bytes, want 32"},
		{"object without hash", func() error {
			_, err := s.Object(ctx, &pocnetv1.ObjectRequest{})
			return err
		}, codes.InvalidArgument, "hash: 0 bytes, want 32"},
		{"no caller", func() error {
			_, err := s.GetHistory(context.Background(), &pocnetv1.GetHistoryRequest{})
			return err
		}, codes.Unauthenticated, "no verified caller identity"},
		{"no caller for an entry update", func() error {
			_, err := s.UpdateEntry(context.Background(), &pocnetv1.UpdateEntryRequest{Member: n.entry("XAA")})
			return err
		}, codes.Unauthenticated, "no verified caller identity"},
		{"no caller for a rotation", func() error {
			_, err := s.RotateKeys(context.Background(), &pocnetv1.RotateKeysRequest{Signing: true})
			return err
		}, codes.Unauthenticated, "no verified caller identity"},
		{"no caller for a proposal", func() error {
			_, err := s.Propose(context.Background(), &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{Admit: n.entry("XDD")}})
			return err
		}, codes.Unauthenticated, "no verified caller identity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantStatus(t, tt.call(), tt.code, tt.msg)
		})
	}
	if l := n.m.Latest(); l.Number() != 3 || l.Hash() != head {
		t.Errorf("the chain moved to version %d after refused requests, want 3", l.Number())
	}
	if ps := n.m.Proposals(); len(ps) != 0 {
		t.Errorf("the manager holds proposals after refused requests: %v", ps)
	}
}

func numbers(vs []*pocnetv1.VersionSummary) []uint64 {
	var out []uint64
	for _, v := range vs {
		out = append(out, v.GetVersion())
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for n := from; n >= to && n >= 1; n-- {
		out = append(out, n)
	}
	return out
}

func TestHistoryPaging(t *testing.T) {
	n := newNode(t)
	n.rename(59) // versions 1 to 60
	ctx := n.adminCtx()
	tests := []struct {
		before uint64
		limit  uint32
		want   []uint64
	}{
		{0, 0, seq(60, 11)}, // default 50
		{0, 3, seq(60, 58)},
		{0, 500, seq(60, 1)},
		{58, 3, seq(57, 55)},
		{4, 10, seq(3, 1)},
		{2, 0, []uint64{1}},
		{1, 0, nil},
		{61, 2, seq(60, 59)},
		{1000, 2, seq(60, 59)}, // past the latest: from the latest
	}
	latest := n.m.Latest()
	h := latest.Hash()
	for _, tt := range tests {
		resp, err := n.svc.GetHistory(ctx, &pocnetv1.GetHistoryRequest{BeforeVersion: tt.before, Limit: tt.limit})
		if err != nil {
			t.Fatalf("before %d limit %d: %v", tt.before, tt.limit, err)
		}
		if got := numbers(resp.GetVersions()); !slices.Equal(got, tt.want) {
			t.Errorf("before %d limit %d: versions %v, want %v", tt.before, tt.limit, got, tt.want)
		}
		if resp.GetHead().GetVersion() != 60 || !bytes.Equal(resp.GetHead().GetHash(), h[:]) {
			t.Errorf("head %d %x, want 60 %x", resp.GetHead().GetVersion(), resp.GetHead().GetHash(), h)
		}
	}

	// Paging with the last version of each page reaches the genesis once.
	var all []uint64
	before := uint64(0)
	for range 10 {
		resp, err := n.svc.GetHistory(ctx, &pocnetv1.GetHistoryRequest{BeforeVersion: before, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, numbers(resp.GetVersions())...)
		if len(resp.GetVersions()) < 7 {
			break
		}
		before = resp.GetVersions()[len(resp.GetVersions())-1].GetVersion()
	}
	if !slices.Equal(all, seq(60, 1)) {
		t.Errorf("paged through %v", all)
	}
}

func TestHistorySummaries(t *testing.T) {
	n := newNode(t)
	n.rename(2)
	resp, err := n.svc.GetHistory(n.adminCtx(), &pocnetv1.GetHistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetVersions()) != 3 || len(resp.GetForks()) != 0 {
		t.Fatalf("got %d versions, %d forks", len(resp.GetVersions()), len(resp.GetForks()))
	}
	for _, sum := range resp.GetVersions() {
		v, _ := n.m.Version(sum.GetVersion())
		h := v.Hash()
		if !bytes.Equal(sum.GetHash(), h[:]) || !sum.GetIssuedAt().AsTime().Equal(v.IssuedAt()) {
			t.Errorf("version %d: hash %x at %v, want %x at %v", sum.GetVersion(), sum.GetHash(), sum.GetIssuedAt().AsTime(), h, v.IssuedAt())
		}
	}
	latest, genesis := resp.GetVersions()[0], resp.GetVersions()[2]
	if latest.GetDescription() != "entry update of XAA" || latest.GetChange().GetEntryUpdate().GetState() != "XAA" ||
		!slices.Equal(latest.GetSigners(), []string{"XAA"}) {
		t.Errorf("latest summary: %v", latest)
	}
	if genesis.GetDescription() != "genesis" || genesis.GetChange() != nil ||
		!slices.Equal(genesis.GetSigners(), []string{"XAA", "XBB", "XCC"}) {
		t.Errorf("genesis summary: %v", genesis)
	}
	// The summary holds a copy: changing it leaves the chain as it is.
	latest.GetChange().GetEntryUpdate().State = "XZZ"
	if v := n.m.Latest(); governance.DescribeChange(v.Change()) != "entry update of XAA" {
		t.Errorf("the chain's version changed through its summary: %s", governance.DescribeChange(v.Change()))
	}
}

// TestHistoryReportsForks: XAA and XBB change their own entries while the
// other's node is down; once both run, each node's history names the
// fork, with both hashes, on every page.
func TestHistoryReportsForks(t *testing.T) {
	f := testfed.Start(t, testfed.Options{States: 2})
	update := func(state string, lang string) {
		t.Helper()
		m, _ := f.Node(state).Directory().Latest().Directory().Member(state)
		m = proto.Clone(m).(*pocnetv1.Member)
		m.PointsOfContact[0].Languages = []string{"en", lang}
		if _, err := f.Node(state).Directory().UpdateEntry(context.Background(), m, 1); err != nil {
			t.Fatal(err)
		}
	}
	f.Stop("XBB")
	update("XAA", "de")
	f.Stop("XAA")
	f.Restart("XBB")
	update("XBB", "nl")
	f.Restart("XAA")
	testfed.WaitFor(t, "the fork reported at XAA", func() bool { return len(f.Node("XAA").Directory().Forks()) > 0 })

	admin := f.Certs.State("XAA").Operator("admin")
	ds := pocnetv1.NewDirectoryServiceClient(f.Dial("XAA", &admin.TLS))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := ds.GetHistory(ctx, &pocnetv1.GetHistoryRequest{BeforeVersion: 2, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetForks()) != 1 || !slices.Equal(numbers(resp.GetVersions()), []uint64{1}) {
		t.Fatalf("page before version 2: versions %v, forks %v", numbers(resp.GetVersions()), resp.GetForks())
	}
	have, got := f.Node("XAA").Directory().Latest().Hash(), f.Node("XBB").Directory().Latest().Hash()
	fk := resp.GetForks()[0]
	if fk.GetVersion() != 2 || !bytes.Equal(fk.GetHaveHash(), have[:]) || !bytes.Equal(fk.GetGotHash(), got[:]) || len(fk.GetEquivocators()) != 0 {
		t.Errorf("fork %v, want version 2 have %x got %x signed by nobody twice", fk, have, got)
	}
	if bytes.Equal(fk.GetHaveHash(), fk.GetGotHash()) {
		t.Error("fork with one hash")
	}
}

func TestGetVersion(t *testing.T) {
	n := newNode(t)
	n.rename(2)
	ctx := n.adminCtx()
	for _, k := range []uint64{0, 1, 2, 3} {
		resp, err := n.svc.GetVersion(ctx, &pocnetv1.GetVersionRequest{Version: k})
		if err != nil {
			t.Fatalf("version %d: %v", k, err)
		}
		want := k
		if k == 0 {
			want = 3
		}
		v, _ := n.m.Version(want)
		if !proto.Equal(resp.GetSigned(), v.Signed()) {
			t.Errorf("version %d: signed version is not the chain's", k)
		}
		if resp.GetVersion().GetVersion() != want || !proto.Equal(resp.GetVersion().GetDirectory(), v.Directory().Proto()) ||
			!proto.Equal(resp.GetVersion().GetRule(), v.Rule()) {
			t.Errorf("version %d: decoded version %d does not match", k, resp.GetVersion().GetVersion())
		}
		// What an operator exports verifies as the chain's own version.
		parent, _ := n.m.Version(want - 1)
		if want == 1 {
			parent = nil
		}
		if _, err := governance.Verify(parent, resp.GetSigned(), time.Now()); err != nil {
			t.Errorf("exported version %d does not verify: %v", want, err)
		}
	}
}

func TestUpdateEntry(t *testing.T) {
	n := newNode(t)
	ctx := n.adminCtx()
	m := n.entry("XAA")
	m.Endpoints = []string{"xaa.example:7401"}
	resp, err := n.svc.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{Member: m, BaseVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	v := resp.GetVersion()
	if v.GetVersion() != 2 || v.GetDescription() != "entry update of XAA" || !slices.Equal(v.GetSigners(), []string{"XAA"}) {
		t.Errorf("version %v", v)
	}
	if got, _ := n.m.Source().Directory().Member("XAA"); !slices.Equal(got.GetEndpoints(), m.Endpoints) {
		t.Errorf("endpoints in force: %v", got.GetEndpoints())
	}
	// Edited from version 1 again: the entry changed since, and the
	// manager's refusal reaches the caller as it is.
	m.Endpoints = []string{"xaa.example:7402"}
	_, err = n.svc.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{Member: m, BaseVersion: 1})
	wantStatus(t, err, codes.FailedPrecondition, "the entry of XAA changed after version 1 (now version 2); read it again and reapply the edit")
	_, err = n.svc.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{Member: m, BaseVersion: 9})
	wantStatus(t, err, codes.InvalidArgument, "base_version: 9 is not a version of this chain (latest 2)")
	if l := n.m.Latest().Number(); l != 2 {
		t.Errorf("version %d after refused updates, want 2", l)
	}
}

func TestRotateKeys(t *testing.T) {
	n := newNode(t)
	ctx := n.adminCtx()
	resp, err := n.svc.RotateKeys(ctx, &pocnetv1.RotateKeysRequest{Signing: true, Encryption: true})
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.GetVersion(); v.GetVersion() != 2 || v.GetDescription() != "entry update of XAA" ||
		!strings.HasPrefix(resp.GetSigningKeyId(), "ed25519:") || !strings.HasPrefix(resp.GetEncryptionKeyId(), "mlkem768x25519:") {
		t.Errorf("rotate: %v", resp)
	}
	dir := n.m.Latest().Directory()
	if k, ok := dir.SigningKey("XAA", resp.GetSigningKeyId()); !ok || k.GetStatus() != pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
		t.Errorf("new signing key %s not active in force: %v", resp.GetSigningKeyId(), k)
	}
	if k, ok := dir.SealingKey("XAA"); !ok || k.GetKeyId() != resp.GetEncryptionKeyId() {
		t.Errorf("senders seal to %v, want %s", k, resp.GetEncryptionKeyId())
	}
	// The next version is signed with the new key.
	m, _ := dir.Member("XAA")
	m = proto.Clone(m).(*pocnetv1.Member)
	m.Name = "Testland XAA, rotated"
	if _, err := n.svc.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{Member: m, BaseVersion: 2}); err != nil {
		t.Fatalf("update after rotation: %v", err)
	}
	if sigs := n.m.Latest().Signed().GetSignatures(); len(sigs) != 1 || sigs[0].GetKeyId() != resp.GetSigningKeyId() {
		t.Errorf("version 3 signed with %v, want the new key %s", sigs, resp.GetSigningKeyId())
	}
}

func TestProposals(t *testing.T) {
	n := newNode(t)
	s, ctx := n.svc, n.adminCtx()
	resp, err := s.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{Admit: n.entry("XDD")}})
	if err != nil {
		t.Fatal(err)
	}
	admit := resp.GetProposal()
	if len(admit.GetHash()) != 32 || admit.GetVersion() != 2 || admit.GetDescription() != "admission of XDD" || admit.GetNeeded() != 3 ||
		admit.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_PENDING || admit.GetMember().GetState() != "XDD" ||
		!slices.Equal(admit.GetSigned(), []string{"XAA"}) || !slices.Equal(admit.GetMissing(), []string{"XBB", "XCC"}) {
		t.Errorf("proposal %v", admit)
	}
	// The manager's refusals reach the caller as they are.
	_, err = s.Sign(ctx, &pocnetv1.SignRequest{Hash: admit.GetHash()})
	wantStatus(t, err, codes.FailedPrecondition, "XAA already signed")
	_, err = s.Object(ctx, &pocnetv1.ObjectRequest{Hash: admit.GetHash()})
	wantStatus(t, err, codes.FailedPrecondition, "only an observer admission can be objected to; this is a admission of XDD")
	_, err = s.Sign(ctx, &pocnetv1.SignRequest{Hash: bytes.Repeat([]byte{7}, 32)})
	wantStatus(t, err, codes.NotFound, "no proposal 0707070707070707 on this node")
	// An entry that names no kind is refused by the manager: the admission
	// says the kind it gives, and pocctl fills it in.
	entry := n.entry("XDD")
	entry.Kind = pocnetv1.MemberKind_MEMBER_KIND_UNSPECIFIED
	_, err = s.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_AdmitObserver{AdmitObserver: entry}})
	wantStatus(t, err, codes.InvalidArgument, "admit_observer.kind: must be MEMBER_KIND_OBSERVER")

	// XBB's node offers an observer admission of XDD; it waits out its
	// silence period, and XAA's objection stops it.
	entry.Kind = pocnetv1.MemberKind_MEMBER_KIND_OBSERVER
	data, err := governance.NextObserverAdmission(n.m.Latest(), entry, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	obs := n.offer("XBB", data)
	if obs.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE || obs.GetMember().GetKind() != pocnetv1.MemberKind_MEMBER_KIND_OBSERVER ||
		!obs.GetSilenceDeadline().AsTime().Equal(obs.GetIssuedAt().AsTime().Add(silence)) {
		t.Errorf("observer admission %v", obs)
	}
	objected, err := s.Object(ctx, &pocnetv1.ObjectRequest{Hash: obs.GetHash()})
	if err != nil {
		t.Fatal(err)
	}
	if p := objected.GetProposal(); p.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_OBJECTED || !slices.Equal(p.GetObjected(), []string{"XAA"}) {
		t.Errorf("after the objection: %v", p)
	}

	// XAA's entry update is version 2: both proposals are superseded.
	m := n.entry("XAA")
	m.Name = "Republic of Testland"
	if _, err := s.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{Member: m}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Sign(ctx, &pocnetv1.SignRequest{Hash: admit.GetHash()})
	wantStatus(t, err, codes.FailedPrecondition, "is superseded by another version; propose it again on the version in force")

	// XBB's node offers to remove XCC; XAA's signature completes it.
	data, err = governance.NextRemoval(n.m.Latest(), "XCC", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	removal := n.offer("XBB", data)
	signed, err := s.Sign(ctx, &pocnetv1.SignRequest{Hash: removal.GetHash()})
	if err != nil {
		t.Fatal(err)
	}
	if p := signed.GetProposal(); p.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED || p.GetVersion() != 3 || !slices.Equal(p.GetSigned(), []string{"XBB", "XAA"}) {
		t.Errorf("removal after signing: %v", p)
	}
	if _, ok := n.m.Source().Directory().Member("XCC"); ok || n.m.Latest().Number() != 3 {
		t.Errorf("version %d in force still lists XCC", n.m.Latest().Number())
	}

	list, err := s.ListProposals(ctx, &pocnetv1.ListProposalsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]pocnetv1.ProposalState{}
	for _, p := range list.GetProposals() {
		states[p.GetDescription()] = p.GetState()
	}
	want := map[string]pocnetv1.ProposalState{
		"admission of XDD":          pocnetv1.ProposalState_PROPOSAL_STATE_SUPERSEDED,
		"observer admission of XDD": pocnetv1.ProposalState_PROPOSAL_STATE_SUPERSEDED,
		"removal of XCC":            pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED,
	}
	if len(list.GetProposals()) != 3 || !maps.Equal(states, want) {
		t.Errorf("proposals listed: %v, want %v", states, want)
	}
}
