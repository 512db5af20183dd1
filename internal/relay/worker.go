package relay

import (
	"container/heap"
	"context"
	"errors"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Item is one envelope awaiting delivery.
type Item struct {
	ID        string
	Peer      string
	Urgency   pocnetv1.Urgency
	ExpiresAt time.Time
	// Durable, if set, is the outcome of the commit that queued the item,
	// which was queued as soon as it was applied, before it was durable
	// (store.Tx.OnApplied). Nil means the item is durable.
	Durable Durability
	order   uint64
}

// Durability is the outcome of a commit under way (store.Durable).
type Durability interface {
	// Done is closed once the outcome is known.
	Done() <-chan struct{}
	// Err is nil once the commit is durable; it is called only after Done.
	Err() error
}

// Transport delivers envelopes to a peer node.
type Transport interface {
	// Deliver sends envelopes to peer and returns one result per envelope,
	// in order. An error means nothing is known about any of them.
	//
	// ready is nil when every envelope is durable at this node. Otherwise
	// some are not yet, and ready waits until they are: the transport may
	// send the envelopes at once, to overlap this node's sync with the
	// call, but the peer must store none of them before ready returned nil,
	// and none at all if ready fails, in which case Deliver returns ready's
	// error.
	Deliver(ctx context.Context, peer string, envs []*pocnetv1.Envelope, ready func(context.Context) error) ([]*pocnetv1.DeliveryResult, error)
}

// Handler loads envelopes and commits what happened to them.
type Handler interface {
	// Load returns the stored envelopes of ids, in order.
	Load(ids []string) ([]*pocnetv1.Envelope, error)
	// Delivered commits the peer's results and returns the items to retry
	// (the peer refused them as temporarily unavailable). An error means
	// nothing was committed and every item is retried.
	Delivered(ctx context.Context, peer string, items []Item, envs []*pocnetv1.Envelope, results []*pocnetv1.DeliveryResult) (retry []Item, err error)
	// Expired marks items undeliverable. An error means they stay queued.
	Expired(ctx context.Context, items []Item) error
}

// Config configures a Worker.
type Config struct {
	Transport Transport
	Handler   Handler
	Logger    *zap.Logger
	// MaxBatch is how many envelopes go in one Deliver call; 0 means 128.
	MaxBatch int
	// MaxInFlight is how many Deliver calls may be under way to one peer;
	// 0 means 4.
	MaxInFlight int
	// BaseBackoff and MaxBackoff bound the wait between failed attempts;
	// 0 means 250ms and 30s.
	BaseBackoff, MaxBackoff time.Duration
	// MaxBatchBytes bounds the envelope bytes of one Deliver call (at least
	// one envelope is always sent); 0 means 8 MiB.
	MaxBatchBytes int
	// DeliverTimeout bounds one Deliver call; 0 means 15s.
	DeliverTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnResults, if set, is told of every delivery call made: the peer's
	// results, or the error that left the whole call to retry.
	OnResults func(peer string, results []*pocnetv1.DeliveryResult, err error)
}

// PeerStatus describes delivery to one peer.
type PeerStatus struct {
	Peer        string
	Pending     int
	Reachable   bool
	LastContact time.Time
	LastError   string
	NextAttempt time.Time
}

// Worker delivers queued envelopes to peers.
type Worker struct {
	cfg    Config
	log    *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	peers map[string]*peer
	order uint64
}

// New returns a running Worker. Stop it with Stop.
func New(cfg Config) *Worker {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 128
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 8 << 20
	}
	if cfg.DeliverTimeout <= 0 {
		cfg.DeliverTimeout = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Worker{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, peers: map[string]*peer{}}
}

// Stop ends every delivery loop and waits for calls under way to return.
// What was not delivered stays in the durable outbox.
func (w *Worker) Stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *Worker) peer(state string) *peer {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.peers[state]
	if !ok {
		p = &peer{state: state, wake: make(chan struct{}, 1), reachable: true}
		w.peers[state] = p
		if w.ctx.Err() == nil {
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				p.run(w)
			}()
		}
	}
	return p
}

// Enqueue queues items for delivery. Callers enqueue outbox entries once
// they are durably committed, or once they are applied, with the outcome of
// their commit in Item.Durable: such items may be sent ahead, but a peer
// stores them only once they are durable here, and they are dropped if
// their commit fails.
func (w *Worker) Enqueue(items ...Item) {
	byPeer := map[string][]Item{}
	w.mu.Lock()
	for _, it := range items {
		w.order++
		it.order = w.order
		byPeer[it.Peer] = append(byPeer[it.Peer], it)
	}
	w.mu.Unlock()
	for state, its := range byPeer {
		p := w.peer(state)
		p.mu.Lock()
		for _, it := range its {
			heap.Push(&p.q, it)
		}
		// A peer with room for a call gets one at once, from here: waking
		// its loop first would only add a goroutine switch to every
		// delivery.
		var batch, expired []Item
		if w.ctx.Err() == nil {
			batch, expired = p.take(w, w.cfg.Now())
		}
		p.mu.Unlock()
		if len(expired) > 0 {
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				w.expire(p, expired)
			}()
		}
		if batch == nil {
			p.kick()
			continue
		}
		w.start(p, batch)
	}
}

// take removes the next batch from the queue and counts it in flight, if
// the peer has room for a call and is not backing off. Items found expired
// are removed too and returned apart, never delivered. Called with p.mu
// held.
func (p *peer) take(w *Worker, now time.Time) (batch, expired []Item) {
	if len(p.q) == 0 || p.inflight >= w.cfg.MaxInFlight || now.Before(p.nextAttempt) {
		return nil, nil
	}
	for len(p.q) > 0 && len(batch) < w.cfg.MaxBatch {
		it := heap.Pop(&p.q).(Item)
		if !it.ExpiresAt.IsZero() && !now.Before(it.ExpiresAt) {
			expired = append(expired, it)
			continue
		}
		batch = append(batch, it)
	}
	if batch != nil {
		p.inflight++
		p.inflightItems += len(batch)
	}
	return batch, expired
}

// start delivers a batch taken from p's queue in a goroutine of its own.
func (w *Worker) start(p *peer, batch []Item) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.send(p, batch)
	}()
}

// expire marks items undeliverable, or queues them again if that fails.
func (w *Worker) expire(p *peer, items []Item) {
	if err := w.cfg.Handler.Expired(w.ctx, items); err != nil {
		w.log.Warn("could not mark expired envelopes undeliverable; will retry", zap.String("peer", p.state), zap.Error(err))
		p.requeue(items)
	}
}

// HeardFrom tells the worker that peer is up (it called us): whatever waits
// for it is retried at once instead of after the remaining backoff.
func (w *Worker) HeardFrom(state string) {
	w.mu.Lock()
	p, ok := w.peers[state]
	w.mu.Unlock()
	if !ok {
		return
	}
	p.mu.Lock()
	p.failures = 0
	p.nextAttempt = time.Time{}
	p.reachable = true
	p.lastContact = w.cfg.Now()
	p.mu.Unlock()
	p.kick()
}

// Status returns the delivery state of every peer the worker has queued for,
// sorted by state.
func (w *Worker) Status() []PeerStatus {
	w.mu.Lock()
	peers := make([]*peer, 0, len(w.peers))
	for _, p := range w.peers {
		peers = append(peers, p)
	}
	w.mu.Unlock()
	out := make([]PeerStatus, 0, len(peers))
	for _, p := range peers {
		p.mu.Lock()
		out = append(out, PeerStatus{
			Peer: p.state, Pending: len(p.q) + p.inflightItems, Reachable: p.reachable,
			LastContact: p.lastContact, LastError: p.lastErr, NextAttempt: p.nextAttempt,
		})
		p.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

type peer struct {
	state string
	wake  chan struct{}

	mu            sync.Mutex
	q             itemHeap
	inflight      int
	inflightItems int
	failures      int
	nextAttempt   time.Time
	reachable     bool
	lastContact   time.Time
	lastErr       string
}

func (p *peer) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run is the peer's delivery loop: it starts calls while there is work, room
// in flight and no backoff, and otherwise sleeps until woken or the backoff
// ends.
func (p *peer) run(w *Worker) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		now := w.cfg.Now()
		expired := p.sweepExpired(now)
		var wait time.Duration
		batch, late := p.take(w, now)
		expired = append(expired, late...)
		switch {
		case batch != nil:
		case len(p.q) == 0 || p.inflight >= w.cfg.MaxInFlight:
			wait = -1 // until woken
		default:
			wait = p.nextAttempt.Sub(now)
		}
		p.mu.Unlock()

		if len(expired) > 0 {
			w.expire(p, expired)
		}
		if batch != nil {
			w.start(p, batch)
			continue
		}
		if wait > 0 {
			timer.Reset(wait)
		}
		var tc <-chan time.Time
		if wait > 0 {
			tc = timer.C
		}
		select {
		case <-w.ctx.Done():
			return
		case <-p.wake:
		case <-tc:
		}
		if wait > 0 && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// sweepExpired removes and returns queued items past their expiry. Called
// with p.mu held.
func (p *peer) sweepExpired(now time.Time) []Item {
	var expired []Item
	kept := p.q[:0]
	for _, it := range p.q {
		if !it.ExpiresAt.IsZero() && !now.Before(it.ExpiresAt) {
			expired = append(expired, it)
		} else {
			kept = append(kept, it)
		}
	}
	if len(expired) > 0 {
		p.q = kept
		heap.Init(&p.q)
	}
	return expired
}

func (p *peer) requeue(items []Item) {
	p.mu.Lock()
	for _, it := range items {
		heap.Push(&p.q, it)
	}
	p.mu.Unlock()
	p.kick()
}

func (w *Worker) send(p *peer, batch []Item) {
	retry, err := w.attempt(p, batch)
	now := w.cfg.Now()
	p.mu.Lock()
	p.inflight--
	p.inflightItems -= len(batch)
	if err != nil {
		p.failures++
		p.reachable = false
		p.lastErr = err.Error()
		p.nextAttempt = now.Add(w.backoff(p.failures))
	} else {
		p.failures = 0
		p.reachable = true
		p.lastErr = ""
		p.lastContact = now
		p.nextAttempt = time.Time{}
	}
	for _, it := range retry {
		heap.Push(&p.q, it)
	}
	p.mu.Unlock()
	p.kick()
}

// attempt makes one Deliver call; it returns the items to queue again and
// an error when the peer could not be reached.
func (w *Worker) attempt(p *peer, batch []Item) ([]Item, error) {
	batch = w.dropLost(p, batch)
	if len(batch) == 0 {
		return nil, nil
	}
	ids := make([]string, len(batch))
	for i, it := range batch {
		ids[i] = it.ID
	}
	envs, err := w.cfg.Handler.Load(ids)
	if err != nil {
		w.log.Error("cannot load envelopes for delivery", zap.String("peer", p.state), zap.Error(err))
		return batch, err
	}
	// Keep the call under the byte budget; the rest goes in the next call.
	var later []Item
	size := 0
	for i, env := range envs {
		size += proto.Size(env)
		if i > 0 && size > w.cfg.MaxBatchBytes {
			later = batch[i:]
			batch, envs = batch[:i], envs[:i]
			break
		}
	}
	ready, slowSync := readiness(batch)
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.DeliverTimeout)
	results, err := w.cfg.Transport.Deliver(ctx, p.state, envs, ready)
	cancel()
	if err != nil {
		batch = append(batch, later...)
		// A call that failed because of this node's own commit says
		// nothing about the peer: no failure counted, no backoff.
		if kept := w.dropLost(p, batch); len(kept) < len(batch) {
			return kept, nil
		}
		if slowSync.Load() {
			w.log.Warn("this node's store took longer than the delivery timeout to make envelopes durable; they go again",
				zap.String("peer", p.state), zap.Int("envelopes", len(envs)), zap.Duration("timeout", w.cfg.DeliverTimeout))
			return batch, nil
		}
	} else if len(results) != len(envs) {
		err = errors.New("peer returned a result count that does not match the envelopes sent")
		batch = append(batch, later...)
	}
	if w.cfg.OnResults != nil {
		w.cfg.OnResults(p.state, results, err)
	}
	if err != nil {
		if w.ctx.Err() == nil {
			w.log.Info("delivery attempt failed", zap.String("peer", p.state), zap.Int("envelopes", len(envs)), zap.Error(err))
		}
		return batch, err
	}
	retry, err := w.cfg.Handler.Delivered(w.ctx, p.state, batch, envs, results)
	if err != nil {
		w.log.Error("cannot commit delivery results; will deliver again", zap.String("peer", p.state), zap.Error(err))
		return append(batch, later...), err
	}
	return append(retry, later...), nil
}

// readiness returns a function that waits until every item of batch is
// durable, or nil if all already are. slow is set if the function gave up
// waiting on this node's own commit (the call's deadline passed first).
func readiness(batch []Item) (ready func(context.Context) error, slow *atomic.Bool) {
	slow = new(atomic.Bool)
	var pending []Durability
	for _, it := range batch {
		if it.Durable == nil {
			continue
		}
		select {
		case <-it.Durable.Done():
			// Resolved: dropLost already removed the failed ones.
		default:
			pending = append(pending, it.Durable)
		}
	}
	if len(pending) == 0 {
		return nil, slow
	}
	return func(ctx context.Context) error {
		for _, d := range pending {
			select {
			case <-d.Done():
				if err := d.Err(); err != nil {
					return err
				}
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					slow.Store(true)
				}
				return ctx.Err()
			}
		}
		return nil
	}, slow
}

// dropLost returns batch without the items whose commit failed: they were
// never acknowledged to anyone and may not be on disk, so they must not be
// delivered. If they are on disk after all, the node's restart queues them
// again from the outbox.
func (w *Worker) dropLost(p *peer, batch []Item) []Item {
	kept := batch[:0:0]
	lost := 0
	for i, it := range batch {
		if it.Durable != nil {
			select {
			case <-it.Durable.Done():
				if it.Durable.Err() != nil {
					if lost == 0 {
						kept = append(kept, batch[:i]...)
					}
					lost++
					continue
				}
			default:
			}
		}
		if lost > 0 {
			kept = append(kept, it)
		}
	}
	if lost == 0 {
		return batch
	}
	w.log.Error("envelopes not delivered: the commit that queued them failed", zap.String("peer", p.state), zap.Int("envelopes", lost))
	return kept
}

// backoff is capped exponential backoff with jitter: a random wait in
// [d/2, d] with d = min(MaxBackoff, BaseBackoff·2^(failures-1)), so that
// nodes retrying the same peer spread out.
func (w *Worker) backoff(failures int) time.Duration {
	d := w.cfg.BaseBackoff
	for i := 1; i < failures && d < w.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.cfg.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

// itemHeap orders items urgent first, then in enqueue order.
type itemHeap []Item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].Urgency != h[j].Urgency {
		return h[i].Urgency > h[j].Urgency
	}
	return h[i].order < h[j].order
}
func (h itemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)   { *h = append(*h, x.(Item)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
