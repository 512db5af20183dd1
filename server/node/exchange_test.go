package node_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestRequestAnswered follows one communication through every step of the
// sender's status trail and the recipient's inbox.
func TestRequestAnswered(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	a := f.Contact("XAA", "technical")
	b := f.Contact("XBB", "technical")

	watch, err := b.WatchEvents(ctx(t), &pocnetv1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sent := send(t, a, "XBB", "technical", rfi("Scanning from AS64500"))

	ev, err := watch.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetEvent().GetType() != pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED || ev.GetEvent().GetMessageId() != sent.GetId() {
		t.Fatalf("first event at XBB = %v, want MESSAGE_RECEIVED of %s", ev.GetEvent(), sent.GetId())
	}
	got := ev.GetEvent().GetMessage()
	if got.GetCommunication().GetSubject() != "Scanning from AS64500" || got.GetFromState() != "XAA" || got.GetLocalState() != pocnetv1.LocalState_LOCAL_STATE_NEW {
		t.Fatalf("received message = %v", got)
	}

	delivered := waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	if delivered.GetReceipt() == nil || len(delivered.GetReceipt().GetSignature().GetValue()) == 0 {
		t.Fatalf("delivered message has no signed receipt: %v", delivered.GetReceipt())
	}

	// Reading is local: marking read changes nothing at the sender.
	if _, err := b.SetLocalState(ctx(t), &pocnetv1.SetLocalStateRequest{Id: sent.GetId(), LocalState: pocnetv1.LocalState_LOCAL_STATE_READ}); err != nil {
		t.Fatal(err)
	}
	if m := get(t, a, sent.GetId()); m.GetStatus() != pocnetv1.Status_STATUS_DELIVERED || len(m.GetHistory()) != 2 {
		t.Fatalf("after the recipient read it, sender sees %v with %d steps", m.GetStatus(), len(m.GetHistory()))
	}

	if _, err := b.Acknowledge(ctx(t), &pocnetv1.AcknowledgeRequest{Id: sent.GetId()}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_ACKNOWLEDGED)

	resp, err := b.Respond(ctx(t), &pocnetv1.RespondRequest{Id: sent.GetId(), Communication: &pocnetv1.Communication{
		Subject: "Re: Scanning from AS64500", Body: "We see it too; blocking.", Language: "en",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetResponse().GetInReplyTo() != sent.GetId() || resp.GetResponse().GetThreadId() != sent.GetId() {
		t.Fatalf("response links %q/%q, want %s", resp.GetResponse().GetInReplyTo(), resp.GetResponse().GetThreadId(), sent.GetId())
	}
	final := waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_RESPONDED)
	var trail []string
	for _, h := range final.GetHistory() {
		trail = append(trail, strings.TrimPrefix(h.GetStatus().String(), "STATUS_"))
	}
	if got := strings.Join(trail, ","); got != "ACCEPTED,DELIVERED,ACKNOWLEDGED,RESPONDED" {
		t.Fatalf("status trail = %s", got)
	}

	th, err := a.GetThread(ctx(t), &pocnetv1.GetThreadRequest{Id: sent.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(th.GetMessages()); n != 3 {
		t.Fatalf("thread at XAA has %d messages, want 3 (communication, acknowledgement, response)", n)
	}
	// The response is a communication of its own at XAA, which can answer it.
	if _, err := a.Acknowledge(ctx(t), &pocnetv1.AcknowledgeRequest{Id: resp.GetResponse().GetId()}); err != nil {
		t.Fatalf("acknowledging the response: %v", err)
	}
	waitStatus(t, b, resp.GetResponse().GetId(), pocnetv1.Status_STATUS_ACKNOWLEDGED)
}

func TestDeclineAndPolicyRejection(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	a := f.Contact("XAA", "policy")
	b := f.Contact("XBB", "technical")

	// XBB's technical PoC does not accept requests for consultations.
	consult := rfi("Consultations on the outage")
	consult.Kind = pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS
	refused := send(t, a, "XBB", "technical", consult)
	m := waitStatus(t, a, refused.GetId(), pocnetv1.Status_STATUS_REJECTED)
	if !strings.Contains(m.GetStatusReason(), "does not accept requests for consultations") {
		t.Fatalf("rejection reason = %q", m.GetStatusReason())
	}
	if m.GetReceipt() == nil {
		t.Fatal("a rejection carries the recipient's signed receipt")
	}
	// A language the PoC does not list is refused the same way.
	de := rfi("Anfrage")
	de.Language = "de"
	m = waitStatus(t, a, send(t, a, "XBB", "technical", de).GetId(), pocnetv1.Status_STATUS_REJECTED)
	if !strings.Contains(m.GetStatusReason(), `does not accept communications in "de"`) {
		t.Fatalf("rejection reason = %q", m.GetStatusReason())
	}
	if n := len(inbox(t, b)); n != 0 {
		t.Fatalf("rejected communications reached the inbox: %d", n)
	}

	sent := send(t, a, "XBB", "technical", rfi("Request we expect to be declined"))
	waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	if _, err := b.Decline(ctx(t), &pocnetv1.DeclineRequest{Id: sent.GetId(), Reason: "outside our mandate"}); err != nil {
		t.Fatal(err)
	}
	m = waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_DECLINED)
	if m.GetStatusReason() != "outside our mandate" {
		t.Fatalf("decline reason = %q", m.GetStatusReason())
	}
	// A response cannot follow a decline; a second decline returns the first.
	_, err := b.Respond(ctx(t), &pocnetv1.RespondRequest{Id: sent.GetId(), Communication: rfi("late")})
	wantCode(t, err, "FailedPrecondition", "declined")
	d1, err := b.Decline(ctx(t), &pocnetv1.DeclineRequest{Id: sent.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if d1.GetDecline().GetDeclineReason() != "outside our mandate" {
		t.Fatalf("second decline returned %v, want the first", d1.GetDecline())
	}
}

// TestSilenceIsANormalOutcome: past respond-by the sender sees "no answer by
// the requested time", never an error, and a late answer is still taken.
func TestSilenceIsANormalOutcome(t *testing.T) {
	clk := newClock()
	f := testfed.Start(t, testfed.Options{Now: clk.Now})
	a := f.Contact("XAA", "technical")
	b := f.Contact("XBB", "technical")
	c := rfi("Please confirm by tonight")
	c.RespondBy = ts(clk.Now().Add(2 * time.Hour))
	sent := send(t, a, "XBB", "technical", c)
	m := waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	if m.GetAnswerOverdue() {
		t.Fatal("overdue before respond-by")
	}
	clk.Advance(3 * time.Hour)
	m = get(t, a, sent.GetId())
	if !m.GetAnswerOverdue() || m.GetStatus() != pocnetv1.Status_STATUS_DELIVERED {
		t.Fatalf("past respond-by: overdue=%v status=%v, want overdue DELIVERED", m.GetAnswerOverdue(), m.GetStatus())
	}
	// Nothing was answered on XBB's behalf.
	if got := inbox(t, a); len(got) != 0 {
		t.Fatalf("silence produced %d messages at the sender", len(got))
	}
	if _, err := b.Respond(ctx(t), &pocnetv1.RespondRequest{Id: sent.GetId(), Communication: rfi("Sorry for the delay")}); err != nil {
		t.Fatal(err)
	}
	m = waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_RESPONDED)
	if m.GetAnswerOverdue() {
		t.Fatal("still overdue after a late response")
	}
}
