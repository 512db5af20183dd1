package client

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// fakeAPI is a ContactServiceClient whose answers the test scripts. Methods
// a test does not script panic through the nil embedded interface.
type fakeAPI struct {
	pocnetv1.ContactServiceClient

	mu          sync.Mutex
	sendErrs    []error // returned by successive SendCommunication calls, then success
	sendIDs     []string
	respondErrs []error
	respondIDs  []string

	events  []*pocnetv1.Event
	streams []fakeStreamPlan // one per WatchEvents call; the last repeats
	afters  []uint64
	pages   map[string]*pocnetv1.ListMessagesResponse
}

// fakeStreamPlan says how one watch stream behaves: it sends up to n events
// after the cursor, then ends with err (nil: blocks until the context ends).
type fakeStreamPlan struct {
	n         int
	err       error
	openErr   error
	duplicate bool // resend the first event twice
}

func (f *fakeAPI) SendCommunication(_ context.Context, in *pocnetv1.SendCommunicationRequest, _ ...grpc.CallOption) (*pocnetv1.SendCommunicationResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sendIDs = append(f.sendIDs, in.GetRequestId())
	if len(f.sendErrs) > 0 {
		err := f.sendErrs[0]
		f.sendErrs = f.sendErrs[1:]
		return nil, err
	}
	return &pocnetv1.SendCommunicationResponse{Message: &pocnetv1.Message{Id: "m-" + in.GetRequestId(), RequestId: in.GetRequestId(), Status: pocnetv1.Status_STATUS_ACCEPTED}}, nil
}

func (f *fakeAPI) Respond(_ context.Context, in *pocnetv1.RespondRequest, _ ...grpc.CallOption) (*pocnetv1.RespondResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.respondIDs = append(f.respondIDs, in.GetRequestId())
	if len(f.respondErrs) > 0 {
		err := f.respondErrs[0]
		f.respondErrs = f.respondErrs[1:]
		return nil, err
	}
	return &pocnetv1.RespondResponse{Response: &pocnetv1.Message{Id: "r-" + in.GetRequestId(), InReplyTo: in.GetId()}}, nil
}

func (f *fakeAPI) ListMessages(_ context.Context, in *pocnetv1.ListMessagesRequest, _ ...grpc.CallOption) (*pocnetv1.ListMessagesResponse, error) {
	p, ok := f.pages[in.GetPageToken()]
	if !ok {
		return nil, status.Error(codes.InvalidArgument, "bad page token")
	}
	return p, nil
}

func (f *fakeAPI) WatchEvents(ctx context.Context, in *pocnetv1.WatchEventsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[pocnetv1.WatchEventsResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.afters = append(f.afters, in.GetAfterSeq())
	plan := f.streams[min(len(f.afters), len(f.streams))-1]
	if plan.openErr != nil {
		return nil, plan.openErr
	}
	var evs []*pocnetv1.Event
	for _, e := range f.events {
		if e.GetSeq() > in.GetAfterSeq() && len(evs) < plan.n {
			evs = append(evs, e)
		}
	}
	if plan.duplicate && len(evs) > 0 {
		evs = append([]*pocnetv1.Event{evs[0]}, evs...)
	}
	return &fakeStream{ctx: ctx, evs: evs, err: plan.err}, nil
}

type fakeStream struct {
	grpc.ClientStream
	ctx context.Context
	evs []*pocnetv1.Event
	err error
}

func (s *fakeStream) Recv() (*pocnetv1.WatchEventsResponse, error) {
	if len(s.evs) > 0 {
		e := s.evs[0]
		s.evs = s.evs[1:]
		return &pocnetv1.WatchEventsResponse{Event: e}, nil
	}
	if s.err != nil {
		return nil, s.err
	}
	<-s.ctx.Done()
	return nil, status.FromContextError(s.ctx.Err()).Err()
}

func testClient(api *fakeAPI) *Client {
	c := newClient(api, identity.Operator("pocnet.test", "XAA", "technical", "alice"))
	c.retry = backoff{initial: time.Millisecond, max: 4 * time.Millisecond, attempts: 4}
	c.watch = backoff{initial: time.Millisecond, max: 4 * time.Millisecond}
	return c
}

func TestSendRetriesWithSameRequestID(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "node restarting")
	tests := []struct {
		name      string
		requestID string
		errs      []error
		wantCalls int
		wantCode  codes.Code
	}{
		{"first try", "", nil, 1, codes.OK},
		{"two failures then success", "", []error{unavailable, unavailable}, 3, codes.OK},
		{"given request id kept", "my-request-1", []error{unavailable}, 2, codes.OK},
		{"attempts run out", "", []error{unavailable, unavailable, unavailable, unavailable, unavailable}, 4, codes.Unavailable},
		{"not retried on InvalidArgument", "", []error{status.Error(codes.InvalidArgument, "subject is required")}, 1, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeAPI{sendErrs: tt.errs}
			c := testClient(api)
			req := &pocnetv1.SendCommunicationRequest{RequestId: tt.requestID, ToState: "XBB", ToRole: "technical"}
			m, err := c.Send(context.Background(), req)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("Send: code %v (%v), want %v", got, err, tt.wantCode)
			}
			if len(api.sendIDs) != tt.wantCalls {
				t.Fatalf("%d calls, want %d", len(api.sendIDs), tt.wantCalls)
			}
			if req.RequestId == "" || (tt.requestID != "" && req.RequestId != tt.requestID) {
				t.Fatalf("request id %q, want %q or a fresh one", req.RequestId, tt.requestID)
			}
			for _, id := range api.sendIDs {
				if id != req.RequestId {
					t.Fatalf("retry used request id %q, first call %q", id, req.RequestId)
				}
			}
			if err == nil && m.GetRequestId() != req.RequestId {
				t.Errorf("message request id %q, want %q", m.GetRequestId(), req.RequestId)
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("error %T is not *Error", err)
				}
				want := "send to XBB/technical (request id " + req.RequestId + "): "
				if got := err.Error(); got[:len(want)] != want {
					t.Errorf("error %q does not start with %q", got, want)
				}
			}
		})
	}
}

func TestRespondRetriesWithSameRequestID(t *testing.T) {
	api := &fakeAPI{respondErrs: []error{status.Error(codes.Unavailable, "down")}}
	c := testClient(api)
	m, err := c.Respond(context.Background(), "orig", &pocnetv1.Communication{Subject: "Re: x"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(api.respondIDs) != 2 || api.respondIDs[0] == "" || api.respondIDs[0] != api.respondIDs[1] {
		t.Fatalf("request ids %q, want two equal non-empty ids", api.respondIDs)
	}
	if m.GetId() != "r-"+api.respondIDs[0] || m.GetInReplyTo() != "orig" {
		t.Fatalf("response %v", m)
	}
}

func TestErrorFormat(t *testing.T) {
	err := wrap("get message 123", status.Error(codes.NotFound, "no message 123"))
	if got, want := err.Error(), "get message 123: no message 123 (NotFound)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if status.Code(err) != codes.NotFound {
		t.Errorf("status.Code = %v, want NotFound", status.Code(err))
	}
	if st, ok := status.FromError(err); !ok || st.Message() != "no message 123" {
		t.Errorf("status.FromError = %v, %v", st, ok)
	}
}

func TestListAllFollowsPages(t *testing.T) {
	api := &fakeAPI{pages: map[string]*pocnetv1.ListMessagesResponse{
		"":   {Messages: []*pocnetv1.Message{{Id: "a"}, {Id: "b"}}, NextPageToken: "p2"},
		"p2": {Messages: []*pocnetv1.Message{{Id: "c"}}, NextPageToken: "p3"},
		"p3": {Messages: []*pocnetv1.Message{{Id: "d"}}},
	}}
	msgs, err := testClient(api).ListAll(context.Background(), pocnetv1.Direction_DIRECTION_INBOUND, false)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.GetId())
	}
	if got := len(ids); got != 4 || ids[0] != "a" || ids[3] != "d" {
		t.Fatalf("ids %v, want [a b c d]", ids)
	}
}

func events(n int) []*pocnetv1.Event {
	evs := make([]*pocnetv1.Event, n)
	for i := range evs {
		evs[i] = &pocnetv1.Event{Seq: uint64(i + 1), MessageId: "m"}
	}
	return evs
}

func TestWatchResumesWithoutGapsOrDuplicates(t *testing.T) {
	broken := status.Error(codes.Unavailable, "node restarting")
	api := &fakeAPI{
		events: events(10),
		streams: []fakeStreamPlan{
			{n: 3, err: broken},
			{openErr: broken}, // node still down
			{n: 2, err: errors.New("reset by peer"), duplicate: true}, // resent event is dropped
			{n: 100}, // then blocks until cancelled
		},
	}
	c := testClient(api)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen []uint64
	err := c.Watch(ctx, 2, func(e *pocnetv1.Event) error {
		seen = append(seen, e.GetSeq())
		if e.GetSeq() == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch = %v, want context.Canceled", err)
	}
	want := []uint64{3, 4, 5, 6, 7, 8, 9, 10}
	if len(seen) != len(want) {
		t.Fatalf("seen %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("seen %v, want %v", seen, want)
		}
	}
	wantAfters := []uint64{2, 5, 5, 7}
	if len(api.afters) != len(wantAfters) {
		t.Fatalf("resumed after %v, want %v", api.afters, wantAfters)
	}
	for i := range wantAfters {
		if api.afters[i] != wantAfters[i] {
			t.Fatalf("resumed after %v, want %v", api.afters, wantAfters)
		}
	}
}

func TestWatchStops(t *testing.T) {
	stop := errors.New("enough")
	tests := []struct {
		name     string
		plan     fakeStreamPlan
		fn       func(*pocnetv1.Event) error
		wantErr  error
		wantCode codes.Code
	}{
		{"callback error returned as is", fakeStreamPlan{n: 5}, func(*pocnetv1.Event) error { return stop }, stop, codes.Unknown},
		{"permission denied", fakeStreamPlan{openErr: status.Error(codes.PermissionDenied, "not yours")}, nil, nil, codes.PermissionDenied},
		{"unauthenticated", fakeStreamPlan{err: status.Error(codes.Unauthenticated, "who")}, nil, nil, codes.Unauthenticated},
		{"invalid argument", fakeStreamPlan{err: status.Error(codes.InvalidArgument, "after_seq in the future")}, nil, nil, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeAPI{events: events(3), streams: []fakeStreamPlan{tt.plan}}
			fn := tt.fn
			if fn == nil {
				fn = func(*pocnetv1.Event) error { return nil }
			}
			err := testClient(api).Watch(context.Background(), 0, fn)
			if tt.wantErr != nil {
				if err != tt.wantErr {
					t.Fatalf("Watch = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if status.Code(err) != tt.wantCode {
				t.Fatalf("Watch = %v, want code %v", err, tt.wantCode)
			}
			if len(api.afters) != 1 {
				t.Fatalf("%d streams opened, want 1 (no retry)", len(api.afters))
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	b := backoff{initial: 100 * time.Millisecond, max: time.Second}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		got := b.delay(n)
		if got > want || got < want*4/5 {
			t.Errorf("delay(%d) = %v, want within 20%% below %v", n, got, want)
		}
	}
}
