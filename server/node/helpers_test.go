package node_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Pebble and glog-style background goroutines that outlive a closed DB
		// briefly are not ours; everything of ours must be gone.
		goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2.(*DB).maybeScheduleCompaction"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

// clock is a settable clock shared by every node of a test federation.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func rfi(subject string) *pocnetv1.Communication {
	return &pocnetv1.Communication{
		Kind: pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, Urgency: pocnetv1.Urgency_URGENCY_PRIORITY,
		Subject: subject, Body: "Please share what you know.", Language: "en",
	}
}

func send(t *testing.T, c pocnetv1.ContactServiceClient, to, role string, comm *pocnetv1.Communication) *pocnetv1.Message {
	t.Helper()
	resp, err := c.SendCommunication(ctx(t), &pocnetv1.SendCommunicationRequest{ToState: to, ToRole: role, Communication: comm})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if resp.GetMessage().GetStatus() != pocnetv1.Status_STATUS_ACCEPTED {
		t.Fatalf("send: status %v, want ACCEPTED", resp.GetMessage().GetStatus())
	}
	return resp.GetMessage()
}

func get(t *testing.T, c pocnetv1.ContactServiceClient, id string) *pocnetv1.Message {
	t.Helper()
	resp, err := c.GetMessage(ctx(t), &pocnetv1.GetMessageRequest{Id: id})
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return resp.GetMessage()
}

// waitStatus waits until the message has status st.
func waitStatus(t *testing.T, c pocnetv1.ContactServiceClient, id string, st pocnetv1.Status) *pocnetv1.Message {
	t.Helper()
	var m *pocnetv1.Message
	testfed.WaitFor(t, "message "+id+" to be "+st.String(), func() bool {
		m = get(t, c, id)
		return m.GetStatus() == st
	})
	return m
}

func inbox(t *testing.T, c pocnetv1.ContactServiceClient) []*pocnetv1.Message {
	t.Helper()
	resp, err := c.ListMessages(ctx(t), &pocnetv1.ListMessagesRequest{Direction: pocnetv1.Direction_DIRECTION_INBOUND, PageSize: 500})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return resp.GetMessages()
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
