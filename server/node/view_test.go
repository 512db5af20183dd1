package node_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestMessageView: MESSAGE_VIEW_BASIC leaves the content of a communication
// out of every response that carries messages, and only of that response:
// the node stores and delivers the whole communication, and the default
// view returns it.
func TestMessageView(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	a := f.Contact("XAA", "technical")
	b := f.Contact("XBB", "technical")
	const basic, full = pocnetv1.MessageView_MESSAGE_VIEW_BASIC, pocnetv1.MessageView_MESSAGE_VIEW_FULL

	// A communication with every field set, so that a field the basic view
	// drops by mistake, or keeps by mistake, shows.
	comm := &pocnetv1.Communication{
		Kind: pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, Urgency: pocnetv1.Urgency_URGENCY_URGENT,
		Subject: "Scanning from AS64500", Body: "Please share what you know about the scanning.", Language: "en",
		Incident: &pocnetv1.IncidentDetails{
			DetectedAt:      ts(time.Now().Add(-time.Hour)),
			AffectedSectors: []string{"energy"},
			Indicators:      []*pocnetv1.Indicator{{Type: "ipv4-addr", Value: "192.0.2.7", Description: "scanner"}},
		},
		RequestedAction: "Tell us whether you see it too.",
		RespondBy:       ts(time.Now().Add(24 * time.Hour)),
		HandlingCode:    pocnetv1.HandlingCode_HANDLING_CODE_ORIGINATOR_DEFINED,
		HandlingNote:    "CERT teams only.",
		Exercise:        true,
		References:      []string{uuid.Must(uuid.NewV7()).String()},
	}
	heading := func(c *pocnetv1.Communication) *pocnetv1.Communication {
		return &pocnetv1.Communication{
			Kind: c.GetKind(), Urgency: c.GetUrgency(), Subject: c.GetSubject(), Language: c.GetLanguage(),
			RespondBy: c.GetRespondBy(), HandlingCode: c.GetHandlingCode(), Exercise: c.GetExercise(),
		}
	}
	// want checks the communication of every message against want.
	check := func(t *testing.T, what string, ms []*pocnetv1.Message, want *pocnetv1.Communication) {
		t.Helper()
		if len(ms) == 0 {
			t.Fatalf("%s: no message", what)
		}
		for _, m := range ms {
			if !proto.Equal(m.GetCommunication(), want) {
				t.Fatalf("%s: message %s carries communication\n%v\nwant\n%v", what, m.GetId(), m.GetCommunication(), want)
			}
		}
	}

	// The sender asks for the basic view: the communication is not sent
	// back, but what it needs of the stored message is.
	resp, err := a.SendCommunication(ctx(t), &pocnetv1.SendCommunicationRequest{ToState: "XBB", ToRole: "technical", Communication: comm, View: basic})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	sent := resp.GetMessage()
	if sent.GetId() == "" || sent.GetStatus() != pocnetv1.Status_STATUS_ACCEPTED || sent.GetThreadId() == "" {
		t.Fatalf("send with the basic view returned %v; want its id, thread and STATUS_ACCEPTED", sent)
	}
	check(t, "SendCommunication, basic", []*pocnetv1.Message{sent}, heading(comm))
	// What was stored is the whole communication, and so is what the
	// sender's node shows of it from its cache of recent messages (its
	// events): the basic view cut down only the response.
	check(t, "GetMessage at the sender, default view", []*pocnetv1.Message{get(t, a, sent.GetId())}, comm)
	waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	var atSender []*pocnetv1.Message
	for _, ev := range events(t, f.Contact("XAA", "admin")) {
		if ev.GetMessageId() == sent.GetId() {
			atSender = append(atSender, ev.GetMessage())
		}
	}
	check(t, "WatchEvents at the sender, default view", atSender, comm)

	// The recipient: every reading call, in both views.
	getIn := func(v pocnetv1.MessageView) []*pocnetv1.Message {
		r, err := b.GetMessage(ctx(t), &pocnetv1.GetMessageRequest{Id: sent.GetId(), View: v})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		return []*pocnetv1.Message{r.GetMessage()}
	}
	list := func(v pocnetv1.MessageView) []*pocnetv1.Message {
		r, err := b.ListMessages(ctx(t), &pocnetv1.ListMessagesRequest{Direction: pocnetv1.Direction_DIRECTION_INBOUND, View: v})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		return r.GetMessages()
	}
	thread := func(v pocnetv1.MessageView) []*pocnetv1.Message {
		r, err := b.GetThread(ctx(t), &pocnetv1.GetThreadRequest{Id: sent.GetId(), View: v})
		if err != nil {
			t.Fatalf("thread: %v", err)
		}
		return r.GetMessages()
	}
	watch := func(v pocnetv1.MessageView) []*pocnetv1.Message {
		stream, err := b.WatchEvents(ctx(t), &pocnetv1.WatchEventsRequest{View: v})
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		for {
			r, err := stream.Recv()
			if err != nil {
				t.Fatalf("watch: %v", err)
			}
			if r.GetEvent().GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED {
				return []*pocnetv1.Message{r.GetEvent().GetMessage()}
			}
		}
	}
	for _, c := range []struct {
		name string
		call func(pocnetv1.MessageView) []*pocnetv1.Message
	}{{"GetMessage", getIn}, {"ListMessages", list}, {"GetThread", thread}, {"WatchEvents", watch}} {
		check(t, c.name+", basic", c.call(basic), heading(comm))
		check(t, c.name+", full", c.call(full), comm)
		check(t, c.name+", unspecified", c.call(pocnetv1.MessageView_MESSAGE_VIEW_UNSPECIFIED), comm)
	}

	// A response sent with the basic view comes back cut down too, and
	// arrives whole.
	answer := rfi("What we see of the scanning")
	answer.Body = "We see it too, since 02:00 UTC."
	answer.Kind = pocnetv1.Kind_KIND_NOTIFICATION
	rr, err := b.Respond(ctx(t), &pocnetv1.RespondRequest{Id: sent.GetId(), Communication: answer, View: basic})
	if err != nil {
		t.Fatalf("respond: %v", err)
	}
	// The node completes a communication (a default handling code, for
	// one): compare with the response as stored.
	stored := get(t, b, rr.GetResponse().GetId()).GetCommunication()
	if stored.GetBody() != answer.GetBody() {
		t.Fatalf("the response stored at XBB has body %q, want %q", stored.GetBody(), answer.GetBody())
	}
	check(t, "Respond, basic", []*pocnetv1.Message{rr.GetResponse()}, heading(stored))
	var got *pocnetv1.Message
	testfed.WaitFor(t, "the response at the sender", func() bool {
		got = nil
		for _, m := range inbox(t, a) {
			if m.GetId() == rr.GetResponse().GetId() {
				got = m
			}
		}
		return got != nil
	})
	check(t, "the response at the sender, default view", []*pocnetv1.Message{got}, stored)
}

// TestMessageViewRefused: a view that is none of MessageView's values is
// refused with InvalidArgument naming the field, by every call that takes
// one, and a refused send or response stores nothing.
func TestMessageViewRefused(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	a := f.Contact("XAA", "technical")
	b := f.Contact("XBB", "technical")
	adminA, adminB := f.Contact("XAA", "admin"), f.Contact("XBB", "admin")
	m := send(t, a, "XBB", "technical", rfi("Scanning from AS64500"))
	waitStatus(t, a, m.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	beforeA, beforeB := take(t, adminA), take(t, adminB)

	const bad = pocnetv1.MessageView(7)
	const msg = "view: 7 is not a message view"
	calls := []struct {
		name string
		call func() error
	}{
		{"SendCommunication", func() error {
			_, err := a.SendCommunication(ctx(t), &pocnetv1.SendCommunicationRequest{ToState: "XBB", ToRole: "technical", Communication: rfi("again"), View: bad})
			return err
		}},
		{"Respond", func() error {
			_, err := b.Respond(ctx(t), &pocnetv1.RespondRequest{Id: m.GetId(), Communication: rfi("an answer"), View: bad})
			return err
		}},
		{"GetMessage", func() error {
			_, err := b.GetMessage(ctx(t), &pocnetv1.GetMessageRequest{Id: m.GetId(), View: bad})
			return err
		}},
		{"ListMessages", func() error {
			_, err := b.ListMessages(ctx(t), &pocnetv1.ListMessagesRequest{View: bad})
			return err
		}},
		{"GetThread", func() error {
			_, err := b.GetThread(ctx(t), &pocnetv1.GetThreadRequest{Id: m.GetId(), View: bad})
			return err
		}},
		{"WatchEvents", func() error {
			stream, err := b.WatchEvents(ctx(t), &pocnetv1.WatchEventsRequest{View: bad})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.call(), "InvalidArgument", msg) })
	}
	// A send or a response stored would show in the event log and among the
	// messages.
	beforeA.unchanged(t, "XAA after refused views", adminA)
	beforeB.unchanged(t, "XBB after refused views", adminB)
}
