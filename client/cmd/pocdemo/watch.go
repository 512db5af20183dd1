package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pocnet/pocnet/client"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// collector keeps every event one operator's watch delivered, so that the
// demo can wait for a particular one.
type collector struct {
	mu     sync.Mutex
	events []*pocnetv1.Event
	// changed is closed and replaced whenever an event arrives or the watch
	// ends.
	changed chan struct{}
	ended   bool
	err     error
	cancel  context.CancelFunc
	done    chan struct{}
}

// watch starts watching c's events after seq afterSeq.
func watch(ctx context.Context, c *client.Client, afterSeq uint64) *collector {
	ctx, cancel := context.WithCancel(ctx)
	col := &collector{changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(col.done)
		err := c.Watch(ctx, afterSeq, func(ev *pocnetv1.Event) error {
			col.mu.Lock()
			col.events = append(col.events, ev)
			close(col.changed)
			col.changed = make(chan struct{})
			col.mu.Unlock()
			return nil
		})
		col.mu.Lock()
		col.ended, col.err = true, err
		close(col.changed)
		col.changed = make(chan struct{})
		col.mu.Unlock()
	}()
	return col
}

// stop ends the watch and waits for it, at most a few seconds.
func (col *collector) stop() {
	col.cancel()
	select {
	case <-col.done:
	case <-time.After(5 * time.Second):
	}
}

// wait returns the first event matching match, waiting at most stepTimeout.
// what names the awaited event in the error.
func (col *collector) wait(ctx context.Context, what string, match func(*pocnetv1.Event) bool) (*pocnetv1.Event, error) {
	timer := time.NewTimer(stepTimeout)
	defer timer.Stop()
	for {
		col.mu.Lock()
		for _, ev := range col.events {
			if match(ev) {
				col.mu.Unlock()
				return ev, nil
			}
		}
		changed, ended, err := col.changed, col.ended, col.err
		col.mu.Unlock()
		if ended {
			if err == nil || errors.Is(err, context.Canceled) {
				err = errors.New("the watch was stopped")
			}
			return nil, fmt.Errorf("waiting for %s: %w", what, err)
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, fmt.Errorf("waiting for %s: nothing after %s", what, stepTimeout)
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// all returns a copy of the events so far.
func (col *collector) all() []*pocnetv1.Event {
	col.mu.Lock()
	defer col.mu.Unlock()
	return append([]*pocnetv1.Event(nil), col.events...)
}

// received matches the arrival of message id.
func received(id string) func(*pocnetv1.Event) bool {
	return func(ev *pocnetv1.Event) bool {
		return ev.GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED && ev.GetMessageId() == id
	}
}

// statusIs matches message id reaching status st.
func statusIs(id string, st pocnetv1.Status) func(*pocnetv1.Event) bool {
	return func(ev *pocnetv1.Event) bool {
		return ev.GetType() == pocnetv1.EventType_EVENT_TYPE_STATUS_CHANGED && ev.GetMessageId() == id && ev.GetStatus() == st
	}
}

// seqAtLeast matches any event with a seq of at least seq.
func seqAtLeast(seq uint64) func(*pocnetv1.Event) bool {
	return func(ev *pocnetv1.Event) bool { return ev.GetSeq() >= seq }
}

// waitEnd waits until the watch ends by itself, at most stepTimeout, and
// returns the error it ended with. what names the wait in err.
func (col *collector) waitEnd(ctx context.Context, what string) (ended error, err error) {
	timer := time.NewTimer(stepTimeout)
	defer timer.Stop()
	for {
		col.mu.Lock()
		changed, done, werr := col.changed, col.ended, col.err
		col.mu.Unlock()
		if done {
			return werr, nil
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, fmt.Errorf("waiting for %s: the watch still runs after %s", what, stepTimeout)
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}
