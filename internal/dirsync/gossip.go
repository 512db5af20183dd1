package dirsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, p := range peers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := m.offerTo(p); err != nil && m.ctx.Err() == nil {
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

// offerTo offers to one peer and pulls from it if it is ahead.
func (m *Manager) offerTo(peer string) error {
	c, err := m.client(peer)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.PushTimeout)
	defer cancel()
	resp, err := c.Offer(ctx, m.offer())
	if err != nil {
		return err
	}
	m.mergeProposals(ctx, peer, resp.GetProposals())
	m.maybePull(peer, resp.GetHead())
	return nil
}

// offer is this node's head and proposals.
func (m *Manager) offer() *pocnetv1.OfferRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	latest := m.chain.Latest()
	h := latest.Hash()
	req := &pocnetv1.OfferRequest{Head: &pocnetv1.DirectoryHead{Version: latest.Number(), Hash: h[:]}}
	for _, sv := range m.proposals {
		req.Proposals = append(req.Proposals, sv)
	}
	return req
}

// HandleOffer answers a peer's offer: it merges the peer's proposals,
// pulls from the peer if it is ahead, and returns this node's head and
// proposals.
func (m *Manager) HandleOffer(ctx context.Context, from string, req *pocnetv1.OfferRequest) (*pocnetv1.OfferResponse, error) {
	if len(req.GetProposals()) > MaxProposals {
		return nil, errorf(ErrInvalidArgument, "proposals: %d, more than %d", len(req.GetProposals()), MaxProposals)
	}
	if h := req.GetHead(); h == nil || h.GetVersion() == 0 || len(h.GetHash()) != 32 {
		return nil, errorf(ErrInvalidArgument, "head: a version and a 32-byte hash are required")
	}
	m.mergeProposals(ctx, from, req.GetProposals())
	m.maybePull(from, req.GetHead())
	o := m.offer()
	return &pocnetv1.OfferResponse{Head: o.GetHead(), Proposals: o.GetProposals()}, nil
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
		if err := m.offerTo(peer); err != nil && m.ctx.Err() == nil {
			m.log.Debug("directory offer after an unknown key not answered", zap.String("peer", peer), zap.Error(err))
		}
	}()
}

// SyncNow offers to every peer and waits for the answers and for the pulls
// they start: a node that is not yet a member calls it while it waits to be
// admitted.
func (m *Manager) SyncNow() {
	m.offerAll(true)
	for {
		busy := false
		m.pulling.Range(func(any, any) bool { busy = true; return false })
		if !busy || m.ctx.Err() != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
