package relay

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// transport is a scripted Transport: per peer, fail or block; every call is
// reported on calls.
type transport struct {
	mu    sync.Mutex
	fail  map[string]bool
	block map[string]bool
	calls chan call
}

type call struct {
	peer string
	ids  []string
	// ahead says the call was made before every envelope was durable.
	ahead bool
}

func newTransport() *transport {
	return &transport{fail: map[string]bool{}, block: map[string]bool{}, calls: make(chan call, 1000)}
}

func (f *transport) set(m map[string]bool, peer string, v bool) {
	f.mu.Lock()
	m[peer] = v
	f.mu.Unlock()
}

// Deliver acts as a peer that takes envelopes sent ahead: it waits for
// ready before it answers, as RelayService.DeliverAhead does.
func (f *transport) Deliver(ctx context.Context, peer string, envs []*pocnetv1.Envelope, ready func(context.Context) error) ([]*pocnetv1.DeliveryResult, error) {
	ids := make([]string, len(envs))
	for i, e := range envs {
		ids[i] = string(e.GetHeader())
	}
	f.calls <- call{peer, ids, ready != nil}
	if ready != nil {
		if err := ready(ctx); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	fail, block := f.fail[peer], f.block[peer]
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if fail {
		return nil, errors.New("connection refused")
	}
	out := make([]*pocnetv1.DeliveryResult, len(ids))
	for i, id := range ids {
		out[i] = &pocnetv1.DeliveryResult{EnvelopeId: id}
	}
	return out, nil
}

// handler loads envelopes whose header is the id, and records outcomes.
type handler struct {
	mu        sync.Mutex
	delivered map[string]int
	expired   chan Item
	retryOnce map[string]bool
}

func newHandler() *handler {
	return &handler{delivered: map[string]int{}, expired: make(chan Item, 100), retryOnce: map[string]bool{}}
}

func (h *handler) Load(ids []string) ([]*pocnetv1.Envelope, error) {
	out := make([]*pocnetv1.Envelope, len(ids))
	for i, id := range ids {
		out[i] = &pocnetv1.Envelope{Header: []byte(id)}
	}
	return out, nil
}

func (h *handler) Delivered(_ context.Context, _ string, items []Item, _ []*pocnetv1.Envelope, _ []*pocnetv1.DeliveryResult) ([]Item, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var retry []Item
	for _, it := range items {
		if h.retryOnce[it.ID] {
			delete(h.retryOnce, it.ID)
			retry = append(retry, it)
			continue
		}
		h.delivered[it.ID]++
	}
	return retry, nil
}

func (h *handler) Expired(_ context.Context, items []Item) error {
	for _, it := range items {
		h.expired <- it
	}
	return nil
}

func (h *handler) count(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.delivered[id]
}

func next(t *testing.T, ch <-chan call) call {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery call")
		return call{}
	}
}

func TestUrgentBeforeRoutine(t *testing.T) {
	tr, h := newTransport(), newHandler()
	// A long backoff after the first failure holds the queue until
	// HeardFrom, so the order of the next calls is the queue's order.
	w := New(Config{Transport: tr, Handler: h, MaxBatch: 1, MaxInFlight: 1, BaseBackoff: time.Hour, MaxBackoff: time.Hour})
	defer w.Stop()
	tr.set(tr.fail, "XBB", true)
	w.Enqueue(Item{ID: "r0", Peer: "XBB", Urgency: pocnetv1.Urgency_URGENCY_ROUTINE})
	next(t, tr.calls) // fails; r0 requeued, backoff an hour
	// The call is reported before its failure is handled; wait for the
	// backoff, or HeardFrom below could come first and be undone by it.
	deadline := time.Now().Add(20 * time.Second)
	for backedOff := false; !backedOff; {
		for _, ps := range w.Status() {
			backedOff = backedOff || (ps.Peer == "XBB" && !ps.NextAttempt.IsZero())
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed call never set a backoff")
		}
		time.Sleep(time.Millisecond)
	}
	w.Enqueue(
		Item{ID: "r1", Peer: "XBB", Urgency: pocnetv1.Urgency_URGENCY_ROUTINE},
		Item{ID: "p1", Peer: "XBB", Urgency: pocnetv1.Urgency_URGENCY_PRIORITY},
		Item{ID: "u1", Peer: "XBB", Urgency: pocnetv1.Urgency_URGENCY_URGENT},
		Item{ID: "u2", Peer: "XBB", Urgency: pocnetv1.Urgency_URGENCY_URGENT},
	)
	tr.set(tr.fail, "XBB", false)
	w.HeardFrom("XBB")
	var got []string
	for range 5 {
		got = append(got, next(t, tr.calls).ids...)
	}
	want := []string{"u1", "u2", "p1", "r0", "r1"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivery order %v, want %v", got, want)
		}
	}
}

// TestDeadPeerDoesNotDelayOthers: a peer whose calls hang holds up nothing
// queued for other peers.
func TestDeadPeerDoesNotDelayOthers(t *testing.T) {
	tr, h := newTransport(), newHandler()
	w := New(Config{Transport: tr, Handler: h, DeliverTimeout: time.Hour})
	defer w.Stop()
	tr.set(tr.block, "XCC", true)
	for _, id := range []string{"c1", "c2", "c3", "c4", "c5"} {
		w.Enqueue(Item{ID: id, Peer: "XCC", Urgency: pocnetv1.Urgency_URGENCY_URGENT})
	}
	w.Enqueue(Item{ID: "b1", Peer: "XBB", Urgency: pocnetv1.Urgency_URGENCY_ROUTINE})
	for {
		c := next(t, tr.calls)
		if c.peer == "XBB" {
			break
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for h.count("b1") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("b1 not delivered while XCC hangs")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h.count("c1") != 0 {
		t.Fatal("a hanging peer's envelope was reported delivered")
	}
}

func TestHeardFromRetriesAtOnce(t *testing.T) {
	tr, h := newTransport(), newHandler()
	w := New(Config{Transport: tr, Handler: h, BaseBackoff: time.Hour, MaxBackoff: time.Hour})
	defer w.Stop()
	tr.set(tr.fail, "XBB", true)
	w.Enqueue(Item{ID: "m1", Peer: "XBB"})
	next(t, tr.calls)
	// The call is reported before it returns its error: wait for the
	// worker to record the failure.
	deadline := time.Now().Add(20 * time.Second)
	st := w.Status()
	for len(st) == 1 && st[0].Reachable && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		st = w.Status()
	}
	if len(st) != 1 || st[0].Reachable || st[0].Pending != 1 || st[0].NextAttempt.Before(time.Now().Add(29*time.Minute)) {
		t.Fatalf("status after a failure = %+v, want unreachable, 1 pending, next attempt ≥ 30m away", st)
	}
	tr.set(tr.fail, "XBB", false)
	w.HeardFrom("XBB") // without this, the next attempt is half an hour away
	next(t, tr.calls)
	deadline = time.Now().Add(20 * time.Second)
	for h.count("m1") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("m1 not delivered after the peer was heard from")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRetryAndExpiry(t *testing.T) {
	tr, h := newTransport(), newHandler()
	w := New(Config{Transport: tr, Handler: h})
	defer w.Stop()
	h.retryOnce["m1"] = true
	w.Enqueue(Item{ID: "m1", Peer: "XBB"}, Item{ID: "old", Peer: "XBB", ExpiresAt: time.Now().Add(-time.Second)})
	select {
	case it := <-h.expired:
		if it.ID != "old" {
			t.Fatalf("expired %s, want old", it.ID)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("expired item not reported")
	}
	deadline := time.Now().Add(20 * time.Second)
	for h.count("m1") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("item returned for retry was not delivered again")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h.count("old") != 0 {
		t.Fatal("an expired item was delivered")
	}
}

func TestBackoffBounds(t *testing.T) {
	w := New(Config{Transport: newTransport(), Handler: newHandler(), BaseBackoff: 100 * time.Millisecond, MaxBackoff: 3 * time.Second})
	defer w.Stop()
	for failures, full := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 6: 3 * time.Second, 60: 3 * time.Second} {
		for range 200 {
			d := w.backoff(failures)
			if d < full/2 || d > full {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", failures, d, full/2, full)
			}
		}
	}
}

// durability is a commit under way that the test resolves.
type durability struct {
	done chan struct{}
	err  error
}

func newDurability() *durability { return &durability{done: make(chan struct{})} }

func (d *durability) Done() <-chan struct{} { return d.done }
func (d *durability) Err() error            { return d.err }
func (d *durability) resolve(err error) {
	d.err = err
	close(d.done)
}

// waitCount waits until h counts n deliveries of id.
func waitCount(t *testing.T, h *handler, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for h.count(id) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s delivered %d times, want %d", id, h.count(id), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSentAhead: an item queued before its commit is durable is sent at
// once, ahead, and its delivery completes only once the commit is durable.
func TestSentAhead(t *testing.T) {
	tr, h := newTransport(), newHandler()
	w := New(Config{Transport: tr, Handler: h})
	defer w.Stop()
	d := newDurability()
	w.Enqueue(Item{ID: "m1", Peer: "XBB", Durable: d})
	c := next(t, tr.calls)
	if !c.ahead || len(c.ids) != 1 || c.ids[0] != "m1" {
		t.Fatalf("call %+v, want m1 sent ahead of its commit", c)
	}
	// The peer (transport) waits for ready; nothing is delivered yet.
	time.Sleep(20 * time.Millisecond)
	if n := h.count("m1"); n != 0 {
		t.Fatalf("m1 delivered %d times before its commit was durable", n)
	}
	d.resolve(nil)
	waitCount(t, h, "m1", 1)

	// Once durable, an item goes as any other: no waiting.
	w.Enqueue(Item{ID: "m2", Peer: "XBB", Durable: d})
	if c := next(t, tr.calls); c.ahead {
		t.Fatalf("call %+v for an item already durable was made ahead", c)
	}
	waitCount(t, h, "m2", 1)
}

// TestCommitFailedNotDelivered: an item whose commit fails is never
// delivered, neither in the call made ahead nor after, while the items
// of the same call whose commit succeeded are.
func TestCommitFailedNotDelivered(t *testing.T) {
	tr, h := newTransport(), newHandler()
	// One call at a time, so that the second and third items queue behind
	// the first and go together. A failed commit is not the peer's fault:
	// had it been counted as a failure, the hour of backoff would keep
	// "kept" from going again below.
	w := New(Config{Transport: tr, Handler: h, MaxInFlight: 1, BaseBackoff: time.Hour, MaxBackoff: time.Hour})
	defer w.Stop()
	first := newDurability()
	w.Enqueue(Item{ID: "lost1", Peer: "XBB", Durable: first})
	next(t, tr.calls)
	good, bad := newDurability(), newDurability()
	w.Enqueue(Item{ID: "kept", Peer: "XBB", Durable: good}, Item{ID: "lost2", Peer: "XBB", Durable: bad})
	failed := errors.New("sync failed")
	first.resolve(failed)
	c := next(t, tr.calls)
	if len(c.ids) != 2 || !c.ahead {
		t.Fatalf("second call %+v, want kept and lost2 together, ahead", c)
	}
	bad.resolve(failed) // the call's ready fails: the whole call is off
	good.resolve(nil)
	// kept goes again, alone; lost1 and lost2 never.
	if c := next(t, tr.calls); len(c.ids) != 1 || c.ids[0] != "kept" {
		t.Fatalf("call %+v after the failed commits, want kept alone", c)
	}
	waitCount(t, h, "kept", 1)
	if n := h.count("lost1") + h.count("lost2"); n != 0 {
		t.Fatalf("items whose commit failed were delivered %d times", n)
	}
}

// TestSlowCommitNotPeerFailure: a call that runs out of time waiting for
// this node's own commit does not count against the peer: no backoff, and
// the item goes again.
func TestSlowCommitNotPeerFailure(t *testing.T) {
	tr, h := newTransport(), newHandler()
	// An hour of backoff after any failure: a second call within the test
	// shows there was none.
	w := New(Config{Transport: tr, Handler: h, DeliverTimeout: 20 * time.Millisecond, BaseBackoff: time.Hour, MaxBackoff: time.Hour})
	defer w.Stop()
	d := newDurability()
	w.Enqueue(Item{ID: "m1", Peer: "XBB", Durable: d})
	next(t, tr.calls)
	next(t, tr.calls) // the first call timed out waiting; no backoff
	if st := w.Status(); len(st) != 1 || !st[0].Reachable || !st[0].NextAttempt.IsZero() {
		t.Fatalf("status %+v, want XBB reachable without backoff", st)
	}
	d.resolve(nil)
	waitCount(t, h, "m1", 1)
}
