package dirsync_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/datakey"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/dirsync"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/store"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// These tests run real managers on real Pebble stores. Between them the
// FederationService calls go through an in-process connection that calls
// the callee's handlers directly and can be cut: what is under test is the
// managers' protocol. The same managers over real nodes and mutual TLS are
// tested in server/node.

var t0 = time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock shared by a test's managers.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type net struct {
	mu       sync.Mutex
	managers map[string]*dirsync.Manager
	cut      map[string]bool // a state whose links are cut
	// offers counts Offer calls answered and maxOffer is the largest
	// request or response of one; fetched counts whole proposals
	// GetProposals returned, fetchedSigs signature sets.
	offers, maxOffer, fetched, fetchedSigs int
}

// conn is a ClientConnInterface from one state to another.
type conn struct {
	n        *net
	from, to string
}

func (c *conn) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	c.n.mu.Lock()
	m := c.n.managers[c.to]
	down := c.n.cut[c.from] || c.n.cut[c.to] || m == nil
	c.n.mu.Unlock()
	if down {
		return fmt.Errorf("%s unreachable from %s", c.to, c.from)
	}
	var resp proto.Message
	var err error
	switch method {
	case pocnetv1.FederationService_Offer_FullMethodName:
		resp, err = m.HandleOffer(ctx, c.from, proto.Clone(args.(proto.Message)).(*pocnetv1.OfferRequest))
	case pocnetv1.FederationService_GetVersions_FullMethodName:
		req := args.(*pocnetv1.GetVersionsRequest)
		resp, err = m.HandleGetVersions(req.GetAfterVersion(), req.GetLimit())
	case pocnetv1.FederationService_GetProposals_FullMethodName:
		resp, err = m.HandleGetProposals(args.(*pocnetv1.GetProposalsRequest))
	default:
		return fmt.Errorf("unexpected method %s", method)
	}
	if err != nil {
		return err
	}
	c.n.mu.Lock()
	switch r := resp.(type) {
	case *pocnetv1.OfferResponse:
		c.n.offers++
		c.n.maxOffer = max(c.n.maxOffer, proto.Size(r), proto.Size(args.(proto.Message)))
	case *pocnetv1.GetProposalsResponse:
		c.n.fetched += len(r.GetProposals())
		c.n.fetchedSigs += len(r.GetSignatures())
	}
	c.n.mu.Unlock()
	proto.Merge(reply.(proto.Message), proto.Clone(resp))
	return nil
}

func (c *conn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, errors.New("no streams")
}

type peers struct {
	n    *net
	from string
}

func (p peers) Conn(state string) (grpc.ClientConnInterface, error) {
	return &conn{n: p.n, from: p.from, to: state}, nil
}

type world struct {
	t       *testing.T
	fed     *certs.Federation
	genesis *pocnetv1.SignedVersion
	clock   *clock
	net     *net
	dirs    map[string]string
	stores  map[string]*store.DB
	signers map[string]*envelope.Signer
	opened  map[string]map[string]bool // state → encryption key ids handed to the opener
	ring    *datakey.Ring
	mu      sync.Mutex
}

// newWorld generates states and a genesis listing the first members of
// them under rule, signed by all of them.
func newWorld(t *testing.T, n, members int, rule *pocnetv1.DecisionRule) *world {
	t.Helper()
	fed, err := certs.Generate(certs.Options{Count: n, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, fed: fed, clock: &clock{}, net: &net{managers: map[string]*dirsync.Manager{}, cut: map[string]bool{}},
		dirs: map[string]string{}, stores: map[string]*store.DB{}, signers: map[string]*envelope.Signer{}, opened: map[string]map[string]bool{}}
	w.clock.ns.Store(t0.Add(time.Hour).UnixNano())
	k, err := datakey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if w.ring, err = datakey.NewRing(k); err != nil {
		t.Fatal(err)
	}
	d := &pocnetv1.Directory{FederationId: fed.ID, Members: fed.Directory.GetMembers()[:members]}
	data, err := governance.Marshal(&pocnetv1.DirectoryVersion{Version: 1, IssuedAt: timestamppb.New(t0), Directory: d, Rule: rule})
	if err != nil {
		t.Fatal(err)
	}
	w.genesis = &pocnetv1.SignedVersion{Version: data}
	for _, s := range fed.States[:members] {
		sig, err := governance.Sign(s.Code, s.SigningKey, data)
		if err != nil {
			t.Fatal(err)
		}
		w.genesis.Signatures = append(w.genesis.Signatures, sig)
	}
	return w
}

func supermajority(p uint32, silence time.Duration) *pocnetv1.DecisionRule {
	return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: p}}, SilencePeriod: durationpb.New(silence)}
}

func (w *world) state(code string) *certs.State {
	for _, s := range w.fed.States {
		if s.Code == code {
			return s
		}
	}
	w.t.Fatalf("no state %s", code)
	return nil
}

func (w *world) member(code string, kind pocnetv1.MemberKind) *pocnetv1.Member {
	for _, m := range w.fed.Directory.GetMembers() {
		if m.GetState() == code {
			m = proto.Clone(m).(*pocnetv1.Member)
			m.Kind = kind
			return m
		}
	}
	w.t.Fatalf("no state %s", code)
	return nil
}

// start opens (or reopens) code's store and starts its manager.
func (w *world) start(code string) *dirsync.Manager {
	w.t.Helper()
	if w.dirs[code] == "" {
		w.dirs[code] = w.t.TempDir()
	}
	db, err := store.Open(w.dirs[code], store.Options{Keys: w.ring})
	if err != nil {
		w.t.Fatal(err)
	}
	s := w.state(code)
	signer, err := envelope.NewSigner(s.SigningKey)
	if err != nil {
		w.t.Fatal(err)
	}
	m, err := dirsync.New(dirsync.Config{
		State: code, Genesis: w.genesis, Store: db, Signer: signer,
		SigningKeys:      map[string]ed25519.PrivateKey{directory.SigningKeyID(s.SigningKey.Public().(ed25519.PublicKey)): s.SigningKey},
		AddEncryptionKey: func(id string, _ hpke.PrivateKey) { w.mu.Lock(); w.opened[code][id] = true; w.mu.Unlock() },
		Peers:            peers{n: w.net, from: code},
		Logger:           zaptest.NewLogger(w.t).Named(code),
		Now:              w.clock.Now,
		Interval:         20 * time.Millisecond,
	})
	if err != nil {
		db.Close()
		w.t.Fatalf("%s: %v", code, err)
	}
	w.mu.Lock()
	if w.opened[code] == nil {
		w.opened[code] = map[string]bool{}
	}
	w.mu.Unlock()
	w.net.mu.Lock()
	w.net.managers[code] = m
	w.net.mu.Unlock()
	w.stores[code] = db
	w.signers[code] = signer
	m.Start()
	w.t.Cleanup(func() { w.stop(code) })
	return m
}

func (w *world) stop(code string) {
	w.net.mu.Lock()
	m := w.net.managers[code]
	delete(w.net.managers, code)
	w.net.mu.Unlock()
	if m != nil {
		m.Stop()
		w.stores[code].Close()
	}
}

func (w *world) cut(code string, cut bool) {
	w.net.mu.Lock()
	defer w.net.mu.Unlock()
	w.net.cut[code] = cut
}

// eventually waits for cond, failing after a generous bound: the bound is a
// failure limit, not a timing the test depends on.
func (w *world) eventually(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("never happened: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (w *world) converged(n uint64, codes ...string) {
	w.t.Helper()
	w.eventually(fmt.Sprintf("version %d on %v", n, codes), func() bool {
		var hash [32]byte
		for i, c := range codes {
			w.net.mu.Lock()
			m := w.net.managers[c]
			w.net.mu.Unlock()
			l := m.Latest()
			if l.Number() != n {
				return false
			}
			if i == 0 {
				hash = l.Hash()
			} else if l.Hash() != hash {
				w.t.Fatalf("%s holds another version %d", c, n)
			}
			if got := m.Source().Directory(); got != l.Directory() {
				return false
			}
		}
		return true
	})
}

func proposalOf(t *testing.T, m *dirsync.Manager, desc string) *pocnetv1.Proposal {
	t.Helper()
	for _, p := range m.Proposals() {
		if p.GetDescription() == desc && p.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_SUPERSEDED {
			return p
		}
	}
	return nil
}

var five = []string{"XAA", "XBB", "XCC", "XDD", "XEE"}

func TestAdmissionBySupermajorityConverges(t *testing.T) {
	w := newWorld(t, 6, 5, supermajority(70, time.Hour))
	ms := map[string]*dirsync.Manager{}
	for _, c := range five {
		ms[c] = w.start(c)
	}
	ctx := context.Background()
	p, err := ms["XAA"].Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{Admit: w.member("XFF", pocnetv1.MemberKind_MEMBER_KIND_STATE)}})
	if err != nil {
		t.Fatal(err)
	}
	if p.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_PENDING || p.GetNeeded() != 4 || !slices.Equal(p.GetSigned(), []string{"XAA"}) {
		t.Fatalf("proposal: %v", p)
	}
	// Every node learns of it; two more sign on their own nodes.
	for _, c := range []string{"XBB", "XCC"} {
		w.eventually(c+" holds the proposal", func() bool { return proposalOf(t, ms[c], "admission of XFF") != nil })
		if _, err := ms[c].Sign(ctx, p.GetHash()); err != nil {
			t.Fatalf("%s signs: %v", c, err)
		}
	}
	w.eventually("XEE sees three signatures", func() bool {
		q := proposalOf(t, ms["XEE"], "admission of XFF")
		return q != nil && len(q.GetSigned()) == 3 && slices.Equal(q.GetMissing(), []string{"XDD", "XEE"})
	})
	for _, c := range five {
		if ms[c].Latest().Number() != 1 {
			t.Fatalf("%s adopted a decision three signatures of four short", c)
		}
	}
	// The fourth signature makes it a version everywhere.
	q, err := ms["XDD"].Sign(ctx, p.GetHash())
	if err != nil {
		t.Fatal(err)
	}
	if q.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED {
		t.Fatalf("after the fourth signature: %v", q.GetState())
	}
	w.converged(2, five...)
	if _, ok := ms["XBB"].Source().Directory().Member("XFF"); !ok {
		t.Fatalf("XFF not in force")
	}
	// The admitted member joins from the genesis alone and catches up.
	xff := w.start("XFF")
	w.converged(2, append(slices.Clone(five), "XFF")...)
	if !xff.IsMember() {
		t.Fatalf("XFF does not see itself admitted")
	}
	// Signing again is refused plainly.
	if _, err := ms["XEE"].Sign(ctx, p.GetHash()); !errors.Is(err, dirsync.ErrFailedPrecondition) {
		t.Fatalf("signing an adopted proposal: %v", err)
	}
}

func TestOneDecisionPerVersion(t *testing.T) {
	w := newWorld(t, 6, 3, supermajority(70, time.Hour))
	m := w.start("XAA")
	ctx := context.Background()
	if _, err := m.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Remove{Remove: "XCC"}}); err != nil {
		t.Fatal(err)
	}
	_, err := m.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{Admit: w.member("XFF", pocnetv1.MemberKind_MEMBER_KIND_STATE)}})
	if !errors.Is(err, dirsync.ErrFailedPrecondition) {
		t.Fatalf("second decision on one version: %v", err)
	}
	// An entry update is not a decision and goes through at once; the
	// pending decision is then superseded.
	e := w.member("XAA", pocnetv1.MemberKind_MEMBER_KIND_STATE)
	e.Name = "Renamed"
	v, err := m.UpdateEntry(ctx, e, 1)
	if err != nil || v.Number() != 2 {
		t.Fatalf("entry update: %v", err)
	}
	if p := proposalOf(t, m, "removal of XCC"); p != nil {
		t.Fatalf("removal still pending after the version changed: %v", p.GetState())
	}
	// An edit made from an older version of a changed entry is refused.
	e.Name = "Again"
	if _, err := m.UpdateEntry(ctx, e, 1); !errors.Is(err, dirsync.ErrFailedPrecondition) {
		t.Fatalf("stale base: %v", err)
	}
	// Another state's entry is never this node's to change.
	if _, err := m.UpdateEntry(ctx, w.member("XBB", pocnetv1.MemberKind_MEMBER_KIND_STATE), 0); !errors.Is(err, dirsync.ErrPermissionDenied) {
		t.Fatalf("update of XBB by XAA: %v", err)
	}
}

func TestObserverAdmittedBySilenceUnlessObjected(t *testing.T) {
	w := newWorld(t, 6, 3, supermajority(70, time.Hour))
	ms := map[string]*dirsync.Manager{}
	for _, c := range five[:3] {
		ms[c] = w.start(c)
	}
	ctx := context.Background()
	p, err := ms["XBB"].Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_AdmitObserver{AdmitObserver: w.member("XFF", pocnetv1.MemberKind_MEMBER_KIND_OBSERVER)}})
	if err != nil {
		t.Fatal(err)
	}
	if p.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE || !p.GetSilenceDeadline().AsTime().Equal(w.clock.Now().Add(time.Hour)) {
		t.Fatalf("proposal: %v", p)
	}
	w.eventually("XCC holds it", func() bool { return proposalOf(t, ms["XCC"], "observer admission of XFF") != nil })
	w.clock.Advance(59 * time.Minute)
	time.Sleep(100 * time.Millisecond) // several rounds: nothing may happen before the deadline
	for _, c := range five[:3] {
		if ms[c].Latest().Number() != 1 {
			t.Fatalf("%s admitted the observer before the silence ended", c)
		}
	}
	w.clock.Advance(2 * time.Minute)
	w.converged(2, five[:3]...)

	// A second observer, objected to by one state: never admitted.
	p, err = ms["XAA"].Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_AdmitObserver{AdmitObserver: w.member("XEE", pocnetv1.MemberKind_MEMBER_KIND_OBSERVER)}})
	if err != nil {
		t.Fatal(err)
	}
	w.eventually("XCC holds it", func() bool { return proposalOf(t, ms["XCC"], "observer admission of XEE") != nil })
	o, err := ms["XCC"].Object(ctx, p.GetHash())
	if err != nil {
		t.Fatal(err)
	}
	if o.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_OBJECTED || !slices.Equal(o.GetObjected(), []string{"XCC"}) {
		t.Fatalf("after objection: %v", o)
	}
	w.eventually("XAA sees the objection", func() bool {
		q := proposalOf(t, ms["XAA"], "observer admission of XEE")
		return q != nil && q.GetState() == pocnetv1.ProposalState_PROPOSAL_STATE_OBJECTED
	})
	w.clock.Advance(2 * time.Hour)
	time.Sleep(100 * time.Millisecond)
	for _, c := range five[:3] {
		if n := ms[c].Latest().Number(); n != 2 {
			t.Fatalf("%s at version %d after an objected admission", c, n)
		}
	}
}

func TestRestartKeepsChainProposalsAndKeys(t *testing.T) {
	w := newWorld(t, 4, 3, supermajority(70, time.Hour))
	m := w.start("XAA")
	w.start("XBB")
	ctx := context.Background()
	v, sid, eid, err := m.RotateKeys(ctx, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if w.signers["XAA"].KeyID() != sid {
		t.Fatalf("signer uses %s, want the new %s", w.signers["XAA"].KeyID(), sid)
	}
	if !w.opened["XAA"][eid] {
		t.Fatalf("new encryption key not handed to the opener")
	}
	mem, _ := v.Directory().Member("XAA")
	if n := len(mem.GetSigningKeys()); n != 2 || mem.GetSigningKeys()[0].GetStatus() != pocnetv1.KeyStatus_KEY_STATUS_RETIRED {
		t.Fatalf("signing keys after rotation: %v", mem.GetSigningKeys())
	}
	w.converged(2, "XAA", "XBB")
	p, err := m.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Remove{Remove: "XCC"}})
	if err != nil {
		t.Fatal(err)
	}
	// The proposal was signed with the new key, so it verifies.
	if p.GetVersion() != 3 || !slices.Equal(p.GetSigned(), []string{"XAA"}) {
		t.Fatalf("proposal after rotation: %v", p)
	}
	w.stop("XAA")
	w.signers["XAA"] = nil
	w.opened["XAA"] = map[string]bool{}
	m = w.start("XAA")
	if m.Latest().Number() != 2 || w.signers["XAA"].KeyID() != sid || !w.opened["XAA"][eid] {
		t.Fatalf("after restart: version %d, signing with %s, opened %v", m.Latest().Number(), w.signers["XAA"].KeyID(), w.opened["XAA"])
	}
	if proposalOf(t, m, "removal of XCC") == nil {
		t.Fatalf("pending proposal lost at restart")
	}
}

func TestStoreOfAnotherGenesisRefused(t *testing.T) {
	w := newWorld(t, 3, 3, supermajority(70, time.Hour))
	w.start("XAA")
	w.stop("XAA")
	other := newWorld(t, 3, 2, supermajority(70, time.Hour))
	w.genesis = other.genesis
	db, err := store.Open(w.dirs["XAA"], store.Options{Keys: w.ring})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	signer, _ := envelope.NewSigner(w.state("XAA").SigningKey)
	_, err = dirsync.New(dirsync.Config{State: "XAA", Genesis: w.genesis, Store: db, Signer: signer, Now: w.clock.Now})
	if err == nil || !strings.Contains(err.Error(), "another genesis") {
		t.Fatalf("a store made under another genesis: %v", err)
	}
}

func TestConcurrentEntryUpdatesForkReported(t *testing.T) {
	w := newWorld(t, 3, 3, supermajority(70, time.Hour))
	a, b, c := w.start("XAA"), w.start("XBB"), w.start("XCC")
	ctx := context.Background()
	w.cut("XAA", true)
	ea := w.member("XAA", pocnetv1.MemberKind_MEMBER_KIND_STATE)
	ea.Name = "A"
	if _, err := a.UpdateEntry(ctx, ea, 0); err != nil {
		t.Fatal(err)
	}
	eb := w.member("XBB", pocnetv1.MemberKind_MEMBER_KIND_STATE)
	eb.Name = "B"
	if _, err := b.UpdateEntry(ctx, eb, 0); err != nil {
		t.Fatal(err)
	}
	w.converged(2, "XBB", "XCC")
	w.cut("XAA", false)
	w.eventually("the fork is reported on both sides", func() bool { return len(a.Forks()) > 0 && len(c.Forks()) > 0 })
	ah, ch := a.Latest().Hash(), c.Latest().Hash()
	if ah == ch {
		t.Fatalf("a fork was resolved silently")
	}
	if f := c.Forks()[0]; f.Version != 2 || f.Have != ch || f.Got != ah {
		t.Fatalf("fork on XCC: %+v", f)
	}
}

func TestOfferedProposalsBounded(t *testing.T) {
	w := newWorld(t, 12, 3, supermajority(70, time.Hour))
	m := w.start("XAA")
	ctx := context.Background()
	g := m.Latest()
	offer := func(svs ...*pocnetv1.SignedVersion) {
		t.Helper()
		if err := m.HandleProposals(ctx, "XBB", svs); err != nil {
			t.Fatal(err)
		}
	}
	admission := func(code string) []byte {
		data, err := governance.NextAdmission(g, w.member(code, pocnetv1.MemberKind_MEMBER_KIND_STATE), w.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	// Unsigned, or signed only by a state that is not a member: not kept.
	forged, err := governance.Sign("XKK", w.state("XKK").SigningKey, admission("XDD"))
	if err != nil {
		t.Fatal(err)
	}
	offer(&pocnetv1.SignedVersion{Version: admission("XDD")}, &pocnetv1.SignedVersion{Version: admission("XDD"), Signatures: []*pocnetv1.VersionSignature{forged}})
	if n := len(m.Proposals()); n != 0 {
		t.Fatalf("%d proposals kept from unsigned or forged offers", n)
	}
	// One state proposing many: at most MaxProposalsPerState kept.
	var many []*pocnetv1.SignedVersion
	for _, code := range []string{"XDD", "XEE", "XFF", "XGG", "XHH", "XII"} {
		data := admission(code)
		sig, err := governance.Sign("XBB", w.state("XBB").SigningKey, data)
		if err != nil {
			t.Fatal(err)
		}
		many = append(many, &pocnetv1.SignedVersion{Version: data, Signatures: []*pocnetv1.VersionSignature{sig}})
	}
	offer(many...)
	if n := len(m.Proposals()); n != dirsync.MaxProposalsPerState {
		t.Fatalf("%d proposals of one state kept, want %d", n, dirsync.MaxProposalsPerState)
	}
}

// TestOffersCarrySummaries: an offer names proposals and the signatures
// held for them; a proposal travels only to a node that lacks it or holds
// other signatures, and once every node holds the same, anti-entropy moves
// no proposal at all. An offer stays small however large the directory.
func TestOffersCarrySummaries(t *testing.T) {
	w := newWorld(t, 10, 5, supermajority(70, time.Hour))
	ms := map[string]*dirsync.Manager{}
	for _, c := range five {
		ms[c] = w.start(c)
	}
	ctx := context.Background()
	// Four members propose four admissions (a state signs one decision per
	// version).
	var hashes [][]byte
	for i, code := range []string{"XFF", "XGG", "XHH", "XII"} {
		p, err := ms[five[i]].Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{Admit: w.member(code, pocnetv1.MemberKind_MEMBER_KIND_STATE)}})
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, p.GetHash())
	}
	signedBy := func(m *dirsync.Manager, h []byte) []string {
		for _, p := range m.Proposals() {
			if bytes.Equal(p.GetHash(), h) {
				return p.GetSigned()
			}
		}
		return nil
	}
	w.eventually("every node holds the four proposals", func() bool {
		for _, c := range five {
			for _, h := range hashes {
				if len(signedBy(ms[c], h)) == 0 {
					return false
				}
			}
		}
		return true
	})
	// counts returns the offers answered and the proposals and signature
	// sets fetched so far.
	counts := func() (offers, fetched, sigs int) {
		w.net.mu.Lock()
		defer w.net.mu.Unlock()
		return w.net.offers, w.net.fetched, w.net.fetchedSigs
	}
	// quiet waits until twenty offers went by without a fetch.
	quiet := func() {
		t.Helper()
		o, f, g := counts()
		w.eventually("twenty offers without a fetch", func() bool {
			o2, f2, g2 := counts()
			if f2 != f || g2 != g {
				o, f, g = o2, f2, g2
			}
			return o2 >= o+20
		})
	}
	quiet()
	for _, c := range five {
		if n := ms[c].Pending(); n != 4 {
			t.Fatalf("%s counts %d pending proposals, want 4", c, n)
		}
	}
	_, wholeBefore, sigsBefore := counts()
	if wholeBefore < 4*4 {
		t.Fatalf("%d proposals fetched; four nodes needed four each", wholeBefore)
	}
	// A new signature travels alone: every node holds the proposal.
	if _, err := ms["XEE"].Sign(ctx, hashes[0]); err != nil {
		t.Fatal(err)
	}
	w.eventually("every node holds XEE's signature", func() bool {
		for _, c := range five {
			if !slices.Equal(signedBy(ms[c], hashes[0]), []string{"XAA", "XEE"}) {
				return false
			}
		}
		return true
	})
	_, whole, sigs := counts()
	if whole != wholeBefore || sigs < sigsBefore+4 {
		t.Fatalf("spreading one signature fetched %d whole proposals and %d signature sets; want none and at least 4", whole-wholeBefore, sigs-sigsBefore)
	}
	held, err := ms["XCC"].HandleGetProposals(&pocnetv1.GetProposalsRequest{Hashes: hashes})
	if err != nil {
		t.Fatal(err)
	}
	if len(held.GetProposals()) != 4 {
		t.Fatalf("XCC hands out %d of the 4 proposals", len(held.GetProposals()))
	}
	w.net.mu.Lock()
	maxOffer := w.net.maxOffer
	w.net.mu.Unlock()
	t.Logf("largest offer %d bytes, a proposal %d bytes", maxOffer, proto.Size(held.GetProposals()[0]))
	// A proposal carries a whole directory version; an offer only hashes.
	if size := proto.Size(held.GetProposals()[0]); maxOffer*8 > size {
		t.Fatalf("largest offer %d bytes, a proposal %d bytes: offers carry more than summaries", maxOffer, size)
	}
	// Every node holds the same: anti-entropy goes on fetching nothing
	// (quiet fails the test after its bound otherwise).
	quiet()
}

func TestMalformedSummariesRefused(t *testing.T) {
	w := newWorld(t, 3, 3, supermajority(70, time.Hour))
	m := w.start("XAA")
	ctx := context.Background()
	h := m.Latest().Hash()
	head := &pocnetv1.DirectoryHead{Version: 1, Hash: h[:]}
	sum := func(n int) *pocnetv1.ProposalSummary {
		return &pocnetv1.ProposalSummary{Hash: make([]byte, n), SignaturesHash: make([]byte, 32)}
	}
	var tooMany []*pocnetv1.ProposalSummary
	for range dirsync.MaxProposals + 1 {
		tooMany = append(tooMany, sum(32))
	}
	var tooManyHashes [][]byte
	for range dirsync.MaxProposals + 1 {
		tooManyHashes = append(tooManyHashes, make([]byte, 32))
	}
	for _, c := range []struct {
		name string
		call func() error
		want string
	}{
		{"too many summaries", func() error {
			_, err := m.HandleOffer(ctx, "XBB", &pocnetv1.OfferRequest{Head: head, ProposalSummaries: tooMany})
			return err
		}, "proposal_summaries: 65, more than 64"},
		{"short hash", func() error {
			_, err := m.HandleOffer(ctx, "XBB", &pocnetv1.OfferRequest{Head: head, ProposalSummaries: []*pocnetv1.ProposalSummary{sum(31)}})
			return err
		}, "proposal_summaries[0]: a 32-byte hash"},
		{"too many hashes", func() error {
			_, err := m.HandleGetProposals(&pocnetv1.GetProposalsRequest{Hashes: tooManyHashes})
			return err
		}, "hashes: 65, more than 64"},
		{"short hash asked", func() error {
			_, err := m.HandleGetProposals(&pocnetv1.GetProposalsRequest{Hashes: [][]byte{make([]byte, 32), {1}}})
			return err
		}, "hashes[1]: 1 bytes, want 32"},
		{"too many signature sets", func() error {
			_, err := m.HandleGetProposals(&pocnetv1.GetProposalsRequest{SignaturesOf: tooManyHashes})
			return err
		}, "signatures_of: 65, more than 64"},
		{"short signatures hash", func() error {
			_, err := m.HandleGetProposals(&pocnetv1.GetProposalsRequest{SignaturesOf: [][]byte{{}}})
			return err
		}, "signatures_of[0]: 0 bytes, want 32"},
		{"too many handed", func() error {
			return m.HandleProposals(ctx, "XBB", make([]*pocnetv1.SignedVersion, dirsync.MaxProposals+1))
		}, "proposals: 65, more than 64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if !errors.Is(err, dirsync.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want invalid argument %q", err, c.want)
			}
		})
	}
	// A hash of nothing held is simply not answered.
	resp, err := m.HandleGetProposals(&pocnetv1.GetProposalsRequest{Hashes: [][]byte{make([]byte, 32)}, SignaturesOf: [][]byte{make([]byte, 32)}})
	if err != nil || len(resp.GetProposals()) != 0 || len(resp.GetSignatures()) != 0 {
		t.Fatalf("unknown proposal: %v, %v", resp, err)
	}
}
