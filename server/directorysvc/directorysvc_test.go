package directorysvc_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pocnet/pocnet/internal/dirsync"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/directorysvc"
	"github.com/pocnet/pocnet/server/directorysvc/directorysvctest"
)

// The node's directory manager and the test one are what the service
// adapts.
var (
	_ directorysvc.Directory = (*dirsync.Manager)(nil)
	_ directorysvc.Directory = (*directorysvctest.Directory)(nil)
)

// newDirectory is a chain of XAA, XBB and XCC played by XAA's node, with
// XDD kept to be proposed for admission.
func newDirectory(t *testing.T) (*directorysvctest.Directory, *directorysvc.Service) {
	t.Helper()
	d := directorysvctest.New(t, directorysvctest.Options{})
	return d, directorysvc.New(directorysvc.Config{Directory: d})
}

// adminCtx is a call by an admin operator of XAA, as the interceptor
// passes it on.
func adminCtx(d *directorysvctest.Directory) context.Context {
	return identity.NewContext(context.Background(), identity.Operator(d.Federation().ID, "XAA", identity.AdminRole, "duty"))
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
// field named and without calling the manager.
func TestValidation(t *testing.T) {
	d, s := newDirectory(t)
	d.Rename(2)
	ctx := adminCtx(d)
	xbb := d.Entry("XBB")
	observer := d.Entry("XDD")
	observer.Kind = pocnetv1.MemberKind_MEMBER_KIND_OBSERVER
	noState := d.Entry("XAA")
	noState.State = ""
	super := func(p uint32) *pocnetv1.DecisionRule {
		return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: p}}, SilencePeriod: durationpb.New(time.Hour)}
	}
	threshold := func(n uint32) *pocnetv1.DecisionRule {
		return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Threshold{Threshold: &pocnetv1.ThresholdRule{States: n}}, SilencePeriod: durationpb.New(time.Hour)}
	}
	silent := directorysvctest.Consensus(time.Hour)
	silent.SilencePeriod = nil

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
			_, err := s.Propose(ctx, ruleOf(silent))
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
		{"no caller for a change", func() error {
			_, err := s.UpdateEntry(context.Background(), &pocnetv1.UpdateEntryRequest{Member: d.Entry("XAA")})
			return err
		}, codes.Unauthenticated, "no verified caller identity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantStatus(t, tt.call(), tt.code, tt.msg)
		})
	}
	if calls := d.Calls(); len(calls) != 0 {
		t.Errorf("the manager was called for refused requests: %v", calls)
	}
	if got := d.Latest().Number(); got != 3 {
		t.Errorf("chain at version %d after refused requests, want 3", got)
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
	d, s := newDirectory(t)
	d.Rename(59) // versions 1 to 60
	ctx := adminCtx(d)
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
	for _, tt := range tests {
		resp, err := s.GetHistory(ctx, &pocnetv1.GetHistoryRequest{BeforeVersion: tt.before, Limit: tt.limit})
		if err != nil {
			t.Fatalf("before %d limit %d: %v", tt.before, tt.limit, err)
		}
		if got := numbers(resp.GetVersions()); !slices.Equal(got, tt.want) {
			t.Errorf("before %d limit %d: versions %v, want %v", tt.before, tt.limit, got, tt.want)
		}
		latest := d.Latest()
		h := latest.Hash()
		if resp.GetHead().GetVersion() != 60 || !bytes.Equal(resp.GetHead().GetHash(), h[:]) {
			t.Errorf("head %d %x, want 60 %x", resp.GetHead().GetVersion(), resp.GetHead().GetHash(), h)
		}
	}

	// Paging with the last version of each page reaches the genesis once.
	var all []uint64
	before := uint64(0)
	for range 10 {
		resp, err := s.GetHistory(ctx, &pocnetv1.GetHistoryRequest{BeforeVersion: before, Limit: 7})
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
	d, s := newDirectory(t)
	d.Rename(2)
	resp, err := s.GetHistory(adminCtx(d), &pocnetv1.GetHistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetVersions()) != 3 || len(resp.GetForks()) != 0 {
		t.Fatalf("got %d versions, %d forks", len(resp.GetVersions()), len(resp.GetForks()))
	}
	for _, sum := range resp.GetVersions() {
		v, _ := d.Version(sum.GetVersion())
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
	if v := d.Latest(); governance.DescribeChange(v.Change()) != "entry update of XAA" {
		t.Errorf("the chain's version changed through its summary: %s", governance.DescribeChange(v.Change()))
	}
}

func TestHistoryReportsForks(t *testing.T) {
	d, s := newDirectory(t)
	d.Rename(2)
	d.Fork()
	resp, err := s.GetHistory(adminCtx(d), &pocnetv1.GetHistoryRequest{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetForks()) != 1 {
		t.Fatalf("forks: %v", resp.GetForks())
	}
	f, want := resp.GetForks()[0], d.Forks()[0]
	if f.GetVersion() != 3 || !bytes.Equal(f.GetHaveHash(), want.Have[:]) || !bytes.Equal(f.GetGotHash(), want.Got[:]) ||
		!slices.Equal(f.GetEquivocators(), []string{"XAA"}) {
		t.Errorf("fork %v, want version 3 have %x got %x signed by XAA", f, want.Have, want.Got)
	}
	if bytes.Equal(f.GetHaveHash(), f.GetGotHash()) {
		t.Error("fork with one hash")
	}
}

func TestGetVersion(t *testing.T) {
	d, s := newDirectory(t)
	d.Rename(2)
	ctx := adminCtx(d)
	for _, n := range []uint64{0, 1, 2, 3} {
		resp, err := s.GetVersion(ctx, &pocnetv1.GetVersionRequest{Version: n})
		if err != nil {
			t.Fatalf("version %d: %v", n, err)
		}
		want := n
		if n == 0 {
			want = 3
		}
		v, _ := d.Version(want)
		if !proto.Equal(resp.GetSigned(), v.Signed()) {
			t.Errorf("version %d: signed version is not the chain's", n)
		}
		if resp.GetVersion().GetVersion() != want || !proto.Equal(resp.GetVersion().GetDirectory(), v.Directory().Proto()) ||
			!proto.Equal(resp.GetVersion().GetRule(), v.Rule()) {
			t.Errorf("version %d: decoded version %d does not match", n, resp.GetVersion().GetVersion())
		}
		// What an operator exports verifies as the chain's own version.
		if _, err := governance.Verify(nil, resp.GetSigned(), d.Now()); want == 1 && err != nil {
			t.Errorf("exported genesis does not verify: %v", err)
		}
	}
}

func TestUpdateEntry(t *testing.T) {
	d, s := newDirectory(t)
	ctx := adminCtx(d)
	m := d.Entry("XAA")
	m.Endpoints = []string{"xaa.example:7401"}
	resp, err := s.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{Member: m, BaseVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	v := resp.GetVersion()
	if v.GetVersion() != 2 || v.GetDescription() != "entry update of XAA" || !slices.Equal(v.GetSigners(), []string{"XAA"}) {
		t.Errorf("version %v", v)
	}
	if got, _ := d.Latest().Directory().Member("XAA"); !slices.Equal(got.GetEndpoints(), m.Endpoints) {
		t.Errorf("endpoints in force: %v", got.GetEndpoints())
	}
	// Edited from version 1 again: the entry changed since, and the
	// manager's refusal reaches the caller as it is.
	m.Endpoints = []string{"xaa.example:7402"}
	_, err = s.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{Member: m, BaseVersion: 1})
	wantStatus(t, err, codes.FailedPrecondition, "the entry of XAA changed since version 1")
}

func TestRotateKeys(t *testing.T) {
	d, s := newDirectory(t)
	ctx := adminCtx(d)
	resp, err := s.RotateKeys(ctx, &pocnetv1.RotateKeysRequest{Signing: true, Encryption: true})
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.GetVersion(); v.GetVersion() != 2 || v.GetDescription() != "entry update of XAA" ||
		!strings.HasPrefix(resp.GetSigningKeyId(), "ed25519:") || !strings.HasPrefix(resp.GetEncryptionKeyId(), "mlkem768x25519:") {
		t.Errorf("rotate: %v", resp)
	}
	dir := d.Latest().Directory()
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
	if _, err := s.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{Member: m, BaseVersion: 2}); err != nil {
		t.Fatalf("update after rotation: %v", err)
	}
}

func TestProposals(t *testing.T) {
	d, s := newDirectory(t)
	ctx := adminCtx(d)
	resp, err := s.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{Admit: d.Entry("XDD")}})
	if err != nil {
		t.Fatal(err)
	}
	admit := resp.GetProposal()
	if len(admit.GetHash()) != 32 || admit.GetVersion() != 2 || admit.GetDescription() != "admission of XDD" || admit.GetNeeded() != 3 ||
		admit.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_PENDING ||
		!slices.Equal(admit.GetSigned(), []string{"XAA"}) || !slices.Equal(admit.GetMissing(), []string{"XBB", "XCC"}) {
		t.Errorf("proposal %v", admit)
	}
	// The manager's refusal reaches the caller as it is.
	_, err = s.Sign(ctx, &pocnetv1.SignRequest{Hash: admit.GetHash()})
	wantStatus(t, err, codes.FailedPrecondition, "XAA signed the admission of XDD already")

	// XBB proposes to remove XCC; XAA's signature completes it, and the
	// admission, proposed as the same version 2, is superseded.
	removal := d.Offer("XBB", &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Remove{Remove: "XCC"}})
	signed, err := s.Sign(ctx, &pocnetv1.SignRequest{Hash: removal.GetHash()})
	if err != nil {
		t.Fatal(err)
	}
	if p := signed.GetProposal(); p.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED || !slices.Equal(p.GetSigned(), []string{"XBB", "XAA"}) {
		t.Errorf("removal after signing: %v", p)
	}
	if _, ok := d.Latest().Directory().Member("XCC"); ok || d.Latest().Number() != 2 {
		t.Errorf("version %d in force still lists XCC", d.Latest().Number())
	}
	list, err := s.ListProposals(ctx, &pocnetv1.ListProposalsRequest{})
	if err != nil || len(list.GetProposals()) != 2 {
		t.Fatalf("list: %v, %v", list, err)
	}
	if st := list.GetProposals()[0].GetState(); st != pocnetv1.ProposalState_PROPOSAL_STATE_SUPERSEDED {
		t.Errorf("admission is %v, want superseded", st)
	}
	_, err = s.Object(ctx, &pocnetv1.ObjectRequest{Hash: removal.GetHash()})
	wantStatus(t, err, codes.FailedPrecondition, "only those are objected to")
	_, err = s.Sign(ctx, &pocnetv1.SignRequest{Hash: bytes.Repeat([]byte{7}, 32)})
	wantStatus(t, err, codes.NotFound, "no proposal 0707070707070707")

	// An observer admission waits out its silence period; one objection
	// stops it. An entry naming no kind gets the admission's.
	entry := d.Entry("XDD")
	entry.Kind = pocnetv1.MemberKind_MEMBER_KIND_UNSPECIFIED
	resp, err = s.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_AdmitObserver{AdmitObserver: entry}})
	if err != nil {
		t.Fatal(err)
	}
	obs := resp.GetProposal()
	if obs.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE || obs.GetMember().GetKind() != pocnetv1.MemberKind_MEMBER_KIND_OBSERVER ||
		!obs.GetSilenceDeadline().AsTime().Equal(obs.GetIssuedAt().AsTime().Add(directorysvctest.DefaultSilence)) {
		t.Errorf("observer admission %v", obs)
	}
	objected, err := s.Object(ctx, &pocnetv1.ObjectRequest{Hash: obs.GetHash()})
	if err != nil {
		t.Fatal(err)
	}
	if p := objected.GetProposal(); p.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_OBJECTED || !slices.Equal(p.GetObjected(), []string{"XAA"}) {
		t.Errorf("after the objection: %v", p)
	}
	want := []string{"Propose", "Sign", "Sign", "Proposals", "Object", "Sign", "Propose", "Object"}
	if got := d.Calls(); !slices.Equal(got, want) {
		t.Errorf("manager calls %v, want %v", got, want)
	}
}
