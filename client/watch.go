package client

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Watch streams the node's events after afterSeq to fn, in order, until ctx
// ends or fn returns an error. When the stream breaks (the node restarts, the
// network fails) it reconnects with capped backoff and resumes after the last
// seq it delivered, so fn sees every event exactly once and in order.
//
// It returns ctx.Err() on cancellation, fn's error as is, or, wrapped in
// *Error, a status the node will keep answering with: PermissionDenied,
// Unauthenticated, InvalidArgument or Unimplemented.
func (c *Client) Watch(ctx context.Context, afterSeq uint64, fn func(*pocnetv1.Event) error) error {
	last := afterSeq
	failures := 0
	for {
		delivered, err := c.watchOnce(ctx, &last, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fnErr callbackError
		if errors.As(err, &fnErr) {
			return fnErr.err
		}
		switch status.Code(err) {
		case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument, codes.Unimplemented:
			return wrap("watch events", err)
		}
		// A stream that delivered something was healthy: start the backoff
		// afresh, so that a node that restarts is rejoined at once.
		if delivered {
			failures = 0
		}
		failures++
		t := time.NewTimer(c.watch.delay(failures))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// callbackError marks an error returned by Watch's fn, so that it is passed
// through rather than treated as a broken stream.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// watchOnce runs one stream from *last, advancing *last as events are handed
// to fn. It reports whether at least one event was delivered.
func (c *Client) watchOnce(ctx context.Context, last *uint64, fn func(*pocnetv1.Event) error) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.api.WatchEvents(ctx, &pocnetv1.WatchEventsRequest{AfterSeq: *last})
	if err != nil {
		return false, err
	}
	delivered := false
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return delivered, errStreamEnded
		}
		if err != nil {
			return delivered, err
		}
		ev := resp.GetEvent()
		// The node resumes strictly after the cursor; this check makes the
		// exactly-once promise independent of that, e.g. across a failover.
		if ev == nil || ev.GetSeq() <= *last {
			continue
		}
		if err := fn(ev); err != nil {
			return delivered, callbackError{err}
		}
		*last = ev.GetSeq()
		delivered = true
	}
}
