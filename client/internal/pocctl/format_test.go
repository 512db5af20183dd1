package pocctl

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func ts(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(testNow.Add(d)) }

func TestAgo(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "just now"},
		{-10 * time.Second, "just now"},
		{-3 * time.Minute, "3m ago"},
		{-80 * time.Minute, "80m ago"},
		{-5 * time.Hour, "5h ago"},
		{-50 * time.Hour, "2d ago"},
		{2 * time.Hour, "in 2h"},
		{3 * 24 * time.Hour, "in 3d"},
	}
	for _, tt := range tests {
		if got := ago(testNow.Add(tt.d), testNow); got != tt.want {
			t.Errorf("ago(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got, want := when(ts(-3*time.Minute), testNow), "2026-03-14T02:57:00Z (3m ago)"; got != want {
		t.Errorf("when = %q, want %q", got, want)
	}
	if got := when(nil, testNow); got != "-" {
		t.Errorf("when(nil) = %q", got)
	}
}

func outbound(st pocnetv1.Status, reason string) *pocnetv1.Message {
	return &pocnetv1.Message{
		Id: "0198c0de-0000-7000-8000-000000000001", Direction: pocnetv1.Direction_DIRECTION_OUTBOUND,
		Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, FromState: "XAA", FromRole: "technical",
		ToState: "XBB", ToRole: "technical", Status: st, StatusReason: reason,
		CreatedAt: ts(-3 * time.Minute),
		Communication: &pocnetv1.Communication{Kind: pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION,
			Urgency: pocnetv1.Urgency_URGENCY_URGENT, Subject: "Scanning from 203.0.113.0/24", Exercise: true},
	}
}

func TestDescribeStatus(t *testing.T) {
	delivered := outbound(pocnetv1.Status_STATUS_DELIVERED, "")
	delivered.Receipt = &pocnetv1.Receipt{Body: []byte{1}}
	tests := []struct {
		m    *pocnetv1.Message
		want string
	}{
		{outbound(pocnetv1.Status_STATUS_ACCEPTED, ""), "ACCEPTED — stored by your node (XAA), waiting for delivery to XBB"},
		{delivered, "DELIVERED — stored by XBB's node, signed receipt"},
		{outbound(pocnetv1.Status_STATUS_DELIVERED, ""), "DELIVERED — stored by XBB's node"},
		{outbound(pocnetv1.Status_STATUS_ACKNOWLEDGED, ""), "ACKNOWLEDGED — XBB acknowledged it"},
		{outbound(pocnetv1.Status_STATUS_RESPONDED, ""), "RESPONDED — XBB responded"},
		{outbound(pocnetv1.Status_STATUS_DECLINED, "outside our remit"), "DECLINED — XBB declined it: outside our remit"},
		{outbound(pocnetv1.Status_STATUS_REJECTED, "technical does not accept consultations"), "REJECTED — refused by XBB's published policy: technical does not accept consultations"},
		{outbound(pocnetv1.Status_STATUS_UNDELIVERABLE, ""), "UNDELIVERABLE — not delivered to XBB before it expired"},
	}
	for _, tt := range tests {
		if got := describeStatus(tt.m); got != tt.want {
			t.Errorf("describeStatus(%v) = %q, want %q", tt.m.GetStatus(), got, tt.want)
		}
	}
}

func TestWriteSentOverdueIsAPlainNote(t *testing.T) {
	m := outbound(pocnetv1.Status_STATUS_DELIVERED, "")
	m.AnswerOverdue = true
	m.Communication.RespondBy = ts(-time.Minute)
	var b bytes.Buffer
	if err := writeSent(&b, []*pocnetv1.Message{m}, testNow); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines:\n%s", len(lines), b.String())
	}
	want := []string{"ID", "SENT", "FROM", "TO", "WHAT", "URGENCY", "SUBJECT", "STATUS"}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("header %q", lines[0])
	}
	for _, s := range []string{
		"0198c0de-0000-7000-8000-000000000001", "2026-03-14T02:57:00Z (3m ago)", "XAA/technical", "XBB/technical",
		"rfi", "urgent", "[EXERCISE] Scanning from 203.0.113.0/24",
		"DELIVERED; no answer by requested time (2026-03-14T02:59:00Z)",
	} {
		if !strings.Contains(lines[1], s) {
			t.Errorf("row %q lacks %q", lines[1], s)
		}
	}
	if strings.Contains(strings.ToLower(b.String()), "error") || strings.Contains(b.String(), "OVERDUE") {
		t.Errorf("overdue shown as an alarm: %q", b.String())
	}
	// Columns are aligned: the STATUS header starts where the status does.
	if strings.Index(lines[0], "STATUS") != strings.Index(lines[1], "DELIVERED") {
		t.Errorf("columns not aligned:\n%s", b.String())
	}
}

func TestWriteInbox(t *testing.T) {
	in := &pocnetv1.Message{
		Id: "id-1", Direction: pocnetv1.Direction_DIRECTION_INBOUND, Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION,
		FromState: "XBB", FromRole: "policy", ToState: "XAA", ToRole: "technical",
		ReceivedAt: ts(-2 * time.Hour), LocalState: pocnetv1.LocalState_LOCAL_STATE_NEW,
		Communication: &pocnetv1.Communication{Kind: pocnetv1.Kind_KIND_NOTIFICATION, Urgency: pocnetv1.Urgency_URGENCY_ROUTINE, Subject: "Heads-up"},
	}
	decl := &pocnetv1.Message{
		Id: "id-2", Direction: pocnetv1.Direction_DIRECTION_INBOUND, Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE,
		FromState: "XBB", ToState: "XAA", InReplyTo: "id-0", DeclineReason: "not our remit",
		ReceivedAt: ts(-time.Minute), LocalState: pocnetv1.LocalState_LOCAL_STATE_READ,
	}
	var b bytes.Buffer
	if err := writeInbox(&b, []*pocnetv1.Message{in, decl}, testNow); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"RECEIVED", "STATE",
		"id-1  2026-03-14T01:00:00Z (2h ago)  XBB/policy  XAA/technical  notification  routine  Heads-up",
		"decline of id-0: not our remit",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("inbox lacks %q:\n%s", s, b.String())
		}
	}
	b.Reset()
	writeInbox(&b, nil, testNow)
	if b.String() != "No inbound messages.\n" {
		t.Errorf("empty inbox = %q", b.String())
	}
}

func TestWriteMessage(t *testing.T) {
	m := outbound(pocnetv1.Status_STATUS_ACKNOWLEDGED, "")
	m.RequestId = "req-1"
	m.Receipt = &pocnetv1.Receipt{Body: []byte{1}}
	m.Communication.Body = "We observe scanning.\nPlease check."
	m.Communication.HandlingCode = pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION
	m.Communication.RespondBy = ts(time.Hour)
	m.Communication.Incident = &pocnetv1.IncidentDetails{
		AffectedSectors: []string{"energy"},
		Indicators:      []*pocnetv1.Indicator{{Type: "ipv4-addr", Value: "203.0.113.7"}},
	}
	m.History = []*pocnetv1.StatusChange{
		{Status: pocnetv1.Status_STATUS_ACCEPTED, At: ts(-3 * time.Minute)},
		{Status: pocnetv1.Status_STATUS_DELIVERED, At: ts(-2 * time.Minute)},
		{Status: pocnetv1.Status_STATUS_ACKNOWLEDGED, At: ts(-time.Minute)},
	}
	m.AnswerIds = []string{"ack-1"}
	ack := &pocnetv1.Message{Id: "ack-1", Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT, InReplyTo: m.Id,
		AcknowledgementNote: "looking into it", CreatedAt: ts(-time.Minute)}
	var b bytes.Buffer
	if err := writeMessage(&b, m, []*pocnetv1.Message{ack}, testNow); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{
		"Message     0198c0de-0000-7000-8000-000000000001\n",
		"Type        communication (outbound)\n",
		"From        XAA/technical\n",
		"Status      ACKNOWLEDGED — XBB acknowledged it\n",
		"Receipt     yes\n",
		"Request id  req-1\n",
		"Kind        request for information (rfi)\n",
		"Exercise    yes — EXERCISE, not a real incident\n",
		"Handling    no onward dissemination\n",
		"Respond by  2026-03-14T04:00:00Z (in 60m) (requested; answering is voluntary)\n",
		"\n  We observe scanning.\n  Please check.\n",
		"  Sectors  energy\n",
		"    ipv4-addr  203.0.113.7\n",
		"Status trail\n  2026-03-14T02:57:00Z (3m ago)  ACCEPTED\n",
		"  2026-03-14T02:59:00Z (1m ago)  ACKNOWLEDGED",
		"Answers\n  ack-1  2026-03-14T02:59:00Z (1m ago)  ack  acknowledgement of 0198c0de-0000-7000-8000-000000000001: looking into it\n",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("show lacks %q:\n%s", s, out)
		}
	}
}

func TestWriteThread(t *testing.T) {
	m := outbound(pocnetv1.Status_STATUS_DECLINED, "")
	m.ThreadId = m.Id
	m.Communication.Body = "Can you help?"
	decl := &pocnetv1.Message{Id: "d-1", ThreadId: m.Id, Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE,
		Direction: pocnetv1.Direction_DIRECTION_INBOUND, FromState: "XBB", FromRole: "technical", ToState: "XAA", ToRole: "technical",
		CreatedAt: ts(-time.Minute)}
	var b bytes.Buffer
	if err := writeThread(&b, []*pocnetv1.Message{m, decl}, testNow); err != nil {
		t.Fatal(err)
	}
	want := `Thread 0198c0de-0000-7000-8000-000000000001 — 2 message(s)

[1] 2026-03-14T02:57:00Z (3m ago)  XAA/technical → XBB/technical  communication, request for information, urgent  [EXERCISE]
    id 0198c0de-0000-7000-8000-000000000001
    Subject: Scanning from 203.0.113.0/24
    | Can you help?
    Status: DECLINED — XBB declined it

[2] 2026-03-14T02:59:00Z (1m ago)  XBB/technical → XAA/technical  decline
    id d-1
    Reason: (no reason given)
`
	if b.String() != want {
		t.Errorf("thread:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteNodeStatus(t *testing.T) {
	s := &pocnetv1.GetNodeStatusResponse{
		FederationId: "pocnet.test", State: "XAA", CallerIdentity: "spiffe://pocnet.test/state/XAA/operator/admin/ops",
		CallerRole: "admin", LastEventSeq: 42,
		Peers: []*pocnetv1.PeerStatus{
			{State: "XBB", Pending: 0, Reachable: true, LastContact: ts(-time.Minute)},
			{State: "XCC", Pending: 3, Reachable: false, LastError: "connection refused", NextAttempt: ts(30 * time.Minute)},
		},
	}
	var b bytes.Buffer
	if err := writeNodeStatus(&b, s, testNow); err != nil {
		t.Fatal(err)
	}
	want := `Federation      pocnet.test
State           XAA
You are         spiffe://pocnet.test/state/XAA/operator/admin/ops (role admin)
Last event seq  42

PEER  PENDING  REACHABLE  LAST CONTACT                   NEXT ATTEMPT                   LAST ERROR
XBB   0        yes        2026-03-14T02:59:00Z (1m ago)  -                              -
XCC   3        no         -                              2026-03-14T03:30:00Z (in 30m)  connection refused
`
	if b.String() != want {
		t.Errorf("status:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteEvent(t *testing.T) {
	m := outbound(pocnetv1.Status_STATUS_DELIVERED, "")
	m.Receipt = &pocnetv1.Receipt{}
	var b bytes.Buffer
	writeEvent(&b, &pocnetv1.Event{Seq: 7, OccurredAt: ts(0), Type: pocnetv1.EventType_EVENT_TYPE_STATUS_CHANGED,
		MessageId: m.Id, Status: pocnetv1.Status_STATUS_DELIVERED, Message: m}, testNow)
	want := "2026-03-14T03:00:00Z  #7  STATUS    0198c0de-0000-7000-8000-000000000001  XAA/technical → XBB/technical  [EXERCISE] Scanning from 203.0.113.0/24  DELIVERED — stored by XBB's node, signed receipt\n"
	if b.String() != want {
		t.Errorf("event = %q, want %q", b.String(), want)
	}
}

func TestWriteDirectory(t *testing.T) {
	d := &pocnetv1.Directory{FederationId: "pocnet.test", Members: []*pocnetv1.Member{{
		State: "XBB", Kind: pocnetv1.MemberKind_MEMBER_KIND_STATE, Name: "Republic of Examplia", Endpoints: []string{"node.xbb.example:7443"},
		PointsOfContact: []*pocnetv1.PointOfContact{{Role: "technical", Organisation: "CERT-XBB", Languages: []string{"en", "fr"},
			Hours: &pocnetv1.Hours{AroundTheClock: true}, AcceptedKinds: []pocnetv1.Kind{pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, pocnetv1.Kind_KIND_COMMUNICATION_CHECK}}},
	}}}
	var b bytes.Buffer
	if err := writeDirectory(&b, d); err != nil {
		t.Fatal(err)
	}
	want := `Federation pocnet.test — 1 member(s)

XBB  Republic of Examplia (state)
  endpoints: node.xbb.example:7443
  ROLE       ORGANISATION  POSITION  LANGUAGES  HOURS  ACCEPTS
  technical  CERT-XBB      -         en,fr      24/7   rfi,check
`
	if b.String() != want {
		t.Errorf("directory:\n%s\nwant:\n%s", b.String(), want)
	}
}
