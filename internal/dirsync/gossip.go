package dirsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/store"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// push wakes the loop to offer to every peer at once.
func (m *Manager) push() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *Manager) loop() {
	defer m.wg.Done()
	m.offerAll(true)
	t := time.NewTimer(m.wait())
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.kick:
			m.offerAll(true)
			t.Reset(m.wait())
		case <-t.C:
			m.adoptEffective()
			m.offerAll(false)
			t.Reset(m.wait())
		}
	}
}

// wait is the time to the next round: the interval with jitter, or less
// when an observer admission's silence ends before.
func (m *Manager) wait() time.Duration {
	w := m.jitter()
	m.mu.Lock()
	now := m.cfg.Now()
	d := m.nextDeadline(now)
	m.mu.Unlock()
	if !d.IsZero() && d.Sub(now) < w {
		w = d.Sub(now) + 10*time.Millisecond
	}
	return w
}

// jitter is the interval ±20%, so that nodes do not offer in lockstep.
func (m *Manager) jitter() time.Duration {
	i := m.cfg.Interval
	return i - i/5 + rand.N(2*i/5+1)
}

// peerStates returns the other members' states.
func (m *Manager) peerStates() []string {
	var out []string
	for _, s := range m.chain.Latest().Directory().States() {
		if s != m.cfg.State {
			out = append(out, s)
		}
	}
	return out
}

// offerAll offers the head and proposals to every peer (all) or to Fanout
// peers at random, concurrently, at most 16 at a time, and waits.
func (m *Manager) offerAll(all bool) {
	peers := m.peerStates()
	if !all && len(peers) > m.cfg.Fanout {
		rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
		peers = peers[:m.cfg.Fanout]
	}
	// One offer for the round: summarising every proposal once, not once
	// per peer. Peers only read it.
	req := m.offer()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, p := range peers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := m.offerTo(p, req); err != nil && m.ctx.Err() == nil {
				m.log.Debug("directory offer not answered", zap.String("peer", p), zap.Error(err))
			}
		}()
	}
	wg.Wait()
}

func (m *Manager) client(peer string) (pocnetv1.FederationServiceClient, error) {
	m.mu.Lock()
	p := m.peers
	m.mu.Unlock()
	if p == nil {
		return nil, errorf(ErrUnavailable, "no transport to peers yet")
	}
	cc, err := p.Conn(peer)
	if err != nil {
		return nil, err
	}
	return pocnetv1.NewFederationServiceClient(cc), nil
}

// offerTo makes offer req (m.offer) to one peer, pulls from it if it is
// ahead, and fetches the proposals it holds that this node lacks or holds
// with other signatures.
func (m *Manager) offerTo(peer string, req *pocnetv1.OfferRequest) error {
	c, err := m.client(peer)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.PushTimeout)
	defer cancel()
	resp, err := c.Offer(ctx, req)
	if err != nil {
		return err
	}
	if err := checkSummaries(resp.GetProposalSummaries()); err != nil {
		return err
	}
	m.maybePull(peer, resp.GetHead())
	if w := m.wanted(resp.GetProposalSummaries()); !w.empty() {
		return m.fetch(ctx, c, peer, w)
	}
	return nil
}

// offer is this node's head and a summary of its proposals.
func (m *Manager) offer() *pocnetv1.OfferRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	latest := m.chain.Latest()
	h := latest.Hash()
	req := &pocnetv1.OfferRequest{Head: &pocnetv1.DirectoryHead{Version: latest.Number(), Hash: h[:]}}
	for ph, sv := range m.proposals {
		sh := signaturesHash(sv)
		req.ProposalSummaries = append(req.ProposalSummaries, &pocnetv1.ProposalSummary{Hash: ph[:], SignaturesHash: sh[:]})
	}
	return req
}

// signaturesHash is the SHA-256 of sv's signatures and objections, sorted,
// so that two nodes holding the same ones compute the same hash.
func signaturesHash(sv *pocnetv1.SignedVersion) [32]byte {
	var parts [][]byte
	for i, list := range [][]*pocnetv1.VersionSignature{sv.GetSignatures(), sv.GetObjections()} {
		for _, s := range list {
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(s)
			parts = append(parts, append([]byte{byte(i)}, b...))
		}
	}
	slices.SortFunc(parts, bytes.Compare)
	d := sha256.New()
	for _, p := range parts {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(p)))
		d.Write(l[:])
		d.Write(p)
	}
	var out [32]byte
	d.Sum(out[:0])
	return out
}

// checkSummaries refuses a summary list a node would never send.
func checkSummaries(sums []*pocnetv1.ProposalSummary) error {
	if len(sums) > MaxProposals {
		return errorf(ErrInvalidArgument, "proposal_summaries: %d, more than %d", len(sums), MaxProposals)
	}
	for i, s := range sums {
		if len(s.GetHash()) != 32 || len(s.GetSignaturesHash()) != 32 {
			return errorf(ErrInvalidArgument, "proposal_summaries[%d]: a 32-byte hash and signatures_hash are required", i)
		}
	}
	return nil
}

// wanted is what a node asks a peer for: proposals it lacks (whole), and
// proposals it holds with other signatures (their signatures only).
type wanted struct {
	full, sigs [][]byte
}

func (w wanted) empty() bool { return len(w.full) == 0 && len(w.sigs) == 0 }

// wanted returns what this node wants of the summarised proposals: those it
// lacks, while it has room for them, and those it holds with other
// signatures.
func (m *Manager) wanted(sums []*pocnetv1.ProposalSummary) wanted {
	m.mu.Lock()
	defer m.mu.Unlock()
	var w wanted
	room := MaxProposals - len(m.proposals)
	for _, s := range sums {
		sv, ok := m.proposals[[32]byte(s.GetHash())]
		switch {
		case !ok && room > 0:
			room--
			w.full = append(w.full, s.GetHash())
		case ok && signaturesHash(sv) != [32]byte(s.GetSignaturesHash()):
			w.sigs = append(w.sigs, s.GetHash())
		}
	}
	return w
}

// fetch gets what w names from peer and merges it, asking again for what
// an answer left out as long as answers bring something.
func (m *Manager) fetch(ctx context.Context, c pocnetv1.FederationServiceClient, peer string, w wanted) error {
	for !w.empty() {
		resp, err := c.GetProposals(ctx, &pocnetv1.GetProposalsRequest{Hashes: w.full, SignaturesOf: w.sigs})
		if err != nil {
			return err
		}
		full, sigs := hashSet(w.full), hashSet(w.sigs)
		var got []*pocnetv1.SignedVersion
		for _, sv := range resp.GetProposals() {
			h := governance.Hash(sv.GetVersion())
			if !full[h] {
				return fmt.Errorf("peer %s answered with proposal %s, which was not asked for whole", peer, short(h[:]))
			}
			delete(full, h)
			got = append(got, sv)
		}
		for _, ps := range resp.GetSignatures() {
			if len(ps.GetHash()) != 32 || !sigs[[32]byte(ps.GetHash())] {
				return fmt.Errorf("peer %s answered with the signatures of proposal %s, which were not asked for", peer, short(ps.GetHash()))
			}
			h := [32]byte(ps.GetHash())
			delete(sigs, h)
			m.mu.Lock()
			held, ok := m.proposals[h]
			m.mu.Unlock()
			if !ok {
				continue // decided or superseded meanwhile
			}
			got = append(got, &pocnetv1.SignedVersion{Version: held.GetVersion(), Signatures: ps.GetSignatures(), Objections: ps.GetObjections()})
		}
		if len(resp.GetProposals()) == 0 && len(resp.GetSignatures()) == 0 {
			return nil // the peer no longer holds them
		}
		m.mergeProposals(ctx, peer, got)
		w = wanted{full: hashList(full), sigs: hashList(sigs)}
	}
	return nil
}

func hashSet(hs [][]byte) map[[32]byte]bool {
	out := make(map[[32]byte]bool, len(hs))
	for _, h := range hs {
		out[[32]byte(h)] = true
	}
	return out
}

func hashList(set map[[32]byte]bool) [][]byte {
	out := make([][]byte, 0, len(set))
	for h := range set {
		out = append(out, bytes.Clone(h[:]))
	}
	return out
}

// fetchFrom fetches w from peer in the background, one fetch per peer at a
// time: the peer offered proposals this node lacks or holds with other
// signatures.
func (m *Manager) fetchFrom(peer string, w wanted) {
	if _, busy := m.fetching.LoadOrStore(peer, struct{}{}); busy {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.fetching.Delete(peer)
		c, err := m.client(peer)
		if err == nil {
			ctx, cancel := context.WithTimeout(m.ctx, m.cfg.PushTimeout)
			err = m.fetch(ctx, c, peer, w)
			cancel()
		}
		if err != nil && m.ctx.Err() == nil {
			m.log.Debug("proposals offered by peer not fetched", zap.String("peer", peer), zap.Error(err))
		}
	}()
}

// HandleOffer answers a peer's offer: it pulls from the peer if it is
// ahead, fetches in the background the proposals the peer holds that this
// node lacks or holds with other signatures, and returns this node's head
// and summary.
func (m *Manager) HandleOffer(ctx context.Context, from string, req *pocnetv1.OfferRequest) (*pocnetv1.OfferResponse, error) {
	if err := checkSummaries(req.GetProposalSummaries()); err != nil {
		return nil, err
	}
	if h := req.GetHead(); h == nil || h.GetVersion() == 0 || len(h.GetHash()) != 32 {
		return nil, errorf(ErrInvalidArgument, "head: a version and a 32-byte hash are required")
	}
	m.maybePull(from, req.GetHead())
	if w := m.wanted(req.GetProposalSummaries()); !w.empty() {
		m.fetchFrom(from, w)
	}
	o := m.offer()
	return &pocnetv1.OfferResponse{Head: o.GetHead(), ProposalSummaries: o.GetProposalSummaries()}, nil
}

// HandleGetProposals returns what req asks for that this node holds, in
// the order asked, whole proposals first: at least one, then no more than
// MaxVersionsBytes.
func (m *Manager) HandleGetProposals(req *pocnetv1.GetProposalsRequest) (*pocnetv1.GetProposalsResponse, error) {
	for _, f := range []struct {
		name   string
		hashes [][]byte
	}{{"hashes", req.GetHashes()}, {"signatures_of", req.GetSignaturesOf()}} {
		if len(f.hashes) > MaxProposals {
			return nil, errorf(ErrInvalidArgument, "%s: %d, more than %d", f.name, len(f.hashes), MaxProposals)
		}
		for i, h := range f.hashes {
			if len(h) != 32 {
				return nil, errorf(ErrInvalidArgument, "%s[%d]: %d bytes, want 32", f.name, i, len(h))
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	resp := &pocnetv1.GetProposalsResponse{}
	size := 0
	full := func() bool { return size > MaxVersionsBytes && len(resp.Proposals)+len(resp.Signatures) > 0 }
	for _, h := range req.GetHashes() {
		sv, ok := m.proposals[[32]byte(h)]
		if !ok {
			continue
		}
		if size += proto.Size(sv); full() {
			return resp, nil
		}
		resp.Proposals = append(resp.Proposals, proto.Clone(sv).(*pocnetv1.SignedVersion))
	}
	for _, h := range req.GetSignaturesOf() {
		sv, ok := m.proposals[[32]byte(h)]
		if !ok {
			continue
		}
		ps := &pocnetv1.ProposalSignatures{Hash: bytes.Clone(h)}
		for _, s := range sv.GetSignatures() {
			ps.Signatures = append(ps.Signatures, proto.Clone(s).(*pocnetv1.VersionSignature))
		}
		for _, s := range sv.GetObjections() {
			ps.Objections = append(ps.Objections, proto.Clone(s).(*pocnetv1.VersionSignature))
		}
		if size += proto.Size(ps); full() {
			return resp, nil
		}
		resp.Signatures = append(resp.Signatures, ps)
	}
	return resp, nil
}

// HandleProposals merges proposals a peer handed over, as fetched ones
// are: only valid signatures are kept, within the bounds on proposals.
func (m *Manager) HandleProposals(ctx context.Context, from string, svs []*pocnetv1.SignedVersion) error {
	if len(svs) > MaxProposals {
		return errorf(ErrInvalidArgument, "proposals: %d, more than %d", len(svs), MaxProposals)
	}
	m.mergeProposals(ctx, from, svs)
	return nil
}

// HandleGetVersions returns stored versions after after.
func (m *Manager) HandleGetVersions(after uint64, limit uint32) (*pocnetv1.GetVersionsResponse, error) {
	if limit == 0 || limit > MaxVersionsPerCall {
		limit = MaxVersionsPerCall
	}
	latest := m.chain.Latest().Number()
	resp := &pocnetv1.GetVersionsResponse{Latest: latest}
	size := 0
	for n := after + 1; n <= latest && len(resp.Versions) < int(limit); n++ {
		v, ok := m.chain.Version(n)
		if !ok {
			break
		}
		// At least one version, then no more than MaxVersionsBytes: a
		// reply stays within what a peer accepts in one call.
		if size += proto.Size(v.Signed()); size > MaxVersionsBytes && len(resp.Versions) > 0 {
			break
		}
		resp.Versions = append(resp.Versions, v.Signed())
	}
	return resp, nil
}

// maybePull starts a pull from peer when its head is ahead of this node's,
// or names another version at the same number (a fork, recorded when the
// pull offers it to the chain). One pull per peer at a time.
func (m *Manager) maybePull(peer string, head *pocnetv1.DirectoryHead) {
	latest := m.chain.Latest()
	lh := latest.Hash()
	switch {
	case head.GetVersion() > latest.Number():
	case head.GetVersion() == latest.Number() && !bytes.Equal(head.GetHash(), lh[:]):
	default:
		return
	}
	if _, busy := m.pulling.LoadOrStore(peer, struct{}{}); busy {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.pulling.Delete(peer)
		if err := m.pull(peer, head.GetVersion()); err != nil && m.ctx.Err() == nil {
			m.log.Warn("directory versions from peer refused", zap.String("peer", peer), zap.Error(err))
		}
	}()
}

// pull fetches and adopts peer's versions up to target.
func (m *Manager) pull(peer string, target uint64) error {
	c, err := m.client(peer)
	if err != nil {
		return err
	}
	for {
		after := m.chain.Latest().Number()
		if after >= target {
			// Same number, other hash: offer the peer's version at our
			// number to the chain, which records the fork.
			after = target - 1
		}
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.PushTimeout)
		resp, err := c.GetVersions(ctx, &pocnetv1.GetVersionsRequest{AfterVersion: after})
		cancel()
		if err != nil {
			return err
		}
		if len(resp.GetVersions()) == 0 {
			return nil
		}
		for _, sv := range resp.GetVersions() {
			if err := m.receive(sv, peer); err != nil {
				if errors.Is(err, governance.ErrStale) {
					continue
				}
				return err
			}
		}
		if m.chain.Latest().Number() >= min(target, resp.GetLatest()) {
			return nil
		}
	}
}

// receive adopts one version from a peer.
func (m *Manager) receive(sv *pocnetv1.SignedVersion, from string) error {
	if n := proto.Size(sv); n > governance.MaxSize {
		return fmt.Errorf("%w: version of %d bytes", governance.ErrInvalid, n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.adopt(m.ctx, sv, from)
	return err
}

// mergeProposals merges proposals offered by a peer into this node's, and
// adopts those that became valid.
func (m *Manager) mergeProposals(ctx context.Context, from string, in []*pocnetv1.SignedVersion) {
	if len(in) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	latest := m.chain.Latest()
	now := m.cfg.Now()
	changed := false
	for _, sv := range in {
		if proto.Size(sv) > governance.MaxSize {
			continue
		}
		h := governance.Hash(sv.GetVersion())
		have, ok := m.proposals[h]
		if !ok {
			if len(m.proposals) >= MaxProposals {
				m.log.Warn("proposal dropped: this node holds the most it keeps", zap.String("from", from), zap.Int("max", MaxProposals))
				continue
			}
			// A new proposal: keep only its valid signatures.
			if _, err := governance.Assess(latest, &pocnetv1.SignedVersion{Version: sv.GetVersion()}, now); err != nil {
				m.log.Debug("proposal from peer not kept", zap.String("from", from), zap.String("proposal", short(h[:])), zap.Error(err))
				continue
			}
			have = &pocnetv1.SignedVersion{Version: sv.GetVersion()}
		}
		merged, added, dropped, err := governance.Merge(latest, have, sv, now)
		if err != nil {
			continue
		}
		if dropped > 0 {
			m.log.Warn("signatures refused in a proposal from peer", zap.String("from", from), zap.String("proposal", short(h[:])), zap.Int("refused", dropped))
		}
		if added == 0 {
			// Nothing new; and a proposal nobody valid signed is not kept.
			continue
		}
		if !ok {
			proposer := merged.GetSignatures()
			if len(proposer) == 0 {
				continue // objections alone: nobody proposed it
			}
			if n := m.proposedBy(proposer[0].GetState()); n >= MaxProposalsPerState {
				m.log.Warn("proposal dropped: its proposer has the most pending proposals a state may have", zap.String("from", from),
					zap.String("proposer", proposer[0].GetState()), zap.Int("max", MaxProposalsPerState))
				continue
			}
		}
		if err := m.keep(ctx, h, merged); err != nil {
			m.log.Warn("proposal not stored", zap.Error(err))
			continue
		}
		changed = true
	}
	if changed {
		m.adoptReady(ctx)
		m.push()
	}
}

// proposedBy counts the held proposals whose first signer is state. m.mu is
// held.
func (m *Manager) proposedBy(state string) int {
	n := 0
	for _, sv := range m.proposals {
		if sigs := sv.GetSignatures(); len(sigs) > 0 && sigs[0].GetState() == state {
			n++
		}
	}
	return n
}

// keep stores a proposal and holds it. m.mu is held.
func (m *Manager) keep(ctx context.Context, h [32]byte, sv *pocnetv1.SignedVersion) error {
	raw, err := proto.Marshal(sv)
	if err != nil {
		return err
	}
	if err := m.cfg.Store.Update(ctx, func(tx *store.Tx) error { return tx.PutProposal(h[:], raw) }); err != nil {
		return err
	}
	m.proposals[h] = sv
	return nil
}

// adoptReady adopts the first held proposal that verifies now. m.mu is
// held.
func (m *Manager) adoptReady(ctx context.Context) {
	latest := m.chain.Latest()
	now := m.cfg.Now()
	for _, sv := range m.proposals {
		v, err := governance.Verify(latest, sv, now)
		if err != nil {
			continue
		}
		if err := m.adoptVerified(ctx, v, m.cfg.State); err != nil {
			m.log.Warn("ready proposal not adopted", zap.Error(err))
		}
		return
	}
}

// adoptEffective adopts an observer admission whose silence period ended
// without objection.
func (m *Manager) adoptEffective() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.adoptReady(m.ctx)
}

// Nudge offers to peer at once, in the background: the peer named a key
// this node does not know, so it may hold a newer version. At most one
// nudge per peer runs at a time.
func (m *Manager) Nudge(peer string) {
	if m.ctx.Err() != nil {
		return
	}
	if _, busy := m.nudging.LoadOrStore(peer, struct{}{}); busy {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.nudging.Delete(peer)
		if err := m.offerTo(peer, m.offer()); err != nil && m.ctx.Err() == nil {
			m.log.Debug("directory offer after an unknown key not answered", zap.String("peer", peer), zap.Error(err))
		}
	}()
}

// SyncNow offers to every peer and waits for the answers and for the pulls
// and fetches they start: a node that is not yet a member calls it while it
// waits to be admitted.
func (m *Manager) SyncNow() {
	m.offerAll(true)
	for {
		busy := false
		m.pulling.Range(func(any, any) bool { busy = true; return false })
		m.fetching.Range(func(any, any) bool { busy = true; return false })
		if !busy || m.ctx.Err() != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
