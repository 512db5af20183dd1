package node_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestSendValidation: bad input from an operator is refused with a code and
// a message naming the field, and nothing is stored at either node.
func TestSendValidation(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	tech := f.Contact("XAA", "technical")
	policy := f.Contact("XAA", "policy")
	adminA := f.Contact("XAA", "admin")
	adminB := f.Contact("XBB", "admin")

	good := func() *pocnetv1.SendCommunicationRequest {
		return &pocnetv1.SendCommunicationRequest{ToState: "XBB", ToRole: "technical", Communication: rfi("Scanning from AS64500")}
	}
	past := ts(time.Now().Add(-time.Hour))
	tests := []struct {
		name   string
		caller pocnetv1.ContactServiceClient
		edit   func(r *pocnetv1.SendCommunicationRequest)
		code   string
		msg    string
	}{
		{"unknown state", tech, func(r *pocnetv1.SendCommunicationRequest) { r.ToState = "XZZ" }, "InvalidArgument", "to_state: XZZ is not a member"},
		{"lower-case state", tech, func(r *pocnetv1.SendCommunicationRequest) { r.ToState = "xbb" }, "InvalidArgument", "to_state"},
		{"two-letter state", tech, func(r *pocnetv1.SendCommunicationRequest) { r.ToState = "XB" }, "InvalidArgument", "to_state"},
		{"state with digit", tech, func(r *pocnetv1.SendCommunicationRequest) { r.ToState = "X1B" }, "InvalidArgument", "to_state"},
		{"missing state", tech, func(r *pocnetv1.SendCommunicationRequest) { r.ToState = "" }, "InvalidArgument", "to_state: is required"},
		{"own state", tech, func(r *pocnetv1.SendCommunicationRequest) { r.ToState = "XAA" }, "InvalidArgument", "to_state: XAA is this node's own state"},
		{"unknown role", tech, func(r *pocnetv1.SendCommunicationRequest) { r.ToRole = "legal" }, "InvalidArgument", `to_role: XBB lists no point of contact with role "legal"`},
		{"missing role", tech, func(r *pocnetv1.SendCommunicationRequest) { r.ToRole = "" }, "InvalidArgument", "to_role: is required"},
		{"missing communication", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication = nil }, "InvalidArgument", "communication: is required"},
		{"missing subject", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.Subject = "" }, "InvalidArgument", "communication.subject: is required"},
		{"long subject", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.Subject = strings.Repeat("é", 201) }, "InvalidArgument", "communication.subject: is 201 characters"},
		{"subject with newline", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.Subject = "first\nsecond" }, "InvalidArgument", "communication.subject: must be one line"},
		{"body over 64 KiB", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.Body = strings.Repeat("a", 64<<10+1) }, "InvalidArgument", "communication.body: is 65537 bytes"},
		{"missing language", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.Language = "" }, "InvalidArgument", "communication.language: is required"},
		{"bad language", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.Language = "english!" }, "InvalidArgument", "communication.language"},
		{"respond_by in the past", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.RespondBy = past }, "InvalidArgument", "communication.respond_by"},
		{"unknown kind", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.Kind = pocnetv1.Kind(42) }, "InvalidArgument", "communication.kind: unknown kind 42"},
		{"unspecified kind", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.Kind = pocnetv1.Kind_KIND_UNSPECIFIED }, "InvalidArgument", "communication.kind: is required"},
		{"unknown urgency", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.Urgency = pocnetv1.Urgency(42) }, "InvalidArgument", "communication.urgency: unknown urgency 42"},
		{"unknown handling code", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.HandlingCode = pocnetv1.HandlingCode(42) }, "InvalidArgument", "communication.handling_code"},
		{"originator-defined handling without note", tech, func(r *pocnetv1.SendCommunicationRequest) {
			r.Communication.HandlingCode = pocnetv1.HandlingCode_HANDLING_CODE_ORIGINATOR_DEFINED
		}, "InvalidArgument", "communication.handling_note: is required"},
		{"bad reference", tech, func(r *pocnetv1.SendCommunicationRequest) {
			r.Communication.References = []string{uuid.NewString(), "not-a-message-id"}
		}, "InvalidArgument", "communication.references[1]"},
		{"STIX that is not a bundle", tech, func(r *pocnetv1.SendCommunicationRequest) {
			r.Communication.Incident = &pocnetv1.IncidentDetails{StixBundle: []byte(`{"type":"indicator","id":"indicator--1"}`)}
		}, "InvalidArgument", "communication.incident.stix_bundle"},
		{"STIX that is not JSON", tech, func(r *pocnetv1.SendCommunicationRequest) {
			r.Communication.Incident = &pocnetv1.IncidentDetails{StixBundle: []byte(`bundle`)}
		}, "InvalidArgument", "communication.incident.stix_bundle"},
		{"expires_at in the past", tech, func(r *pocnetv1.SendCommunicationRequest) { r.ExpiresAt = past }, "InvalidArgument", "expires_at"},
		{"expires_at too far ahead", tech, func(r *pocnetv1.SendCommunicationRequest) { r.ExpiresAt = ts(time.Now().Add(365 * 24 * time.Hour)) }, "InvalidArgument", "expires_at"},
		{"request_id with spaces", tech, func(r *pocnetv1.SendCommunicationRequest) { r.RequestId = "my request" }, "InvalidArgument", "request_id"},
		{"request_id too long", tech, func(r *pocnetv1.SendCommunicationRequest) { r.RequestId = strings.Repeat("r", 129) }, "InvalidArgument", "request_id: is 129 characters"},
		{"admin without from_role", adminA, func(r *pocnetv1.SendCommunicationRequest) {}, "InvalidArgument", "from_role: is required"},
		{"admin with unknown from_role", adminA, func(r *pocnetv1.SendCommunicationRequest) { r.FromRole = "legal" }, "InvalidArgument", `from_role: XAA lists no point of contact with role "legal"`},
		{"operator sending for another role", policy, func(r *pocnetv1.SendCommunicationRequest) { r.FromRole = "technical" }, "PermissionDenied", `from_role: an operator of role "policy" can only send for "policy"`},
		{"communication over the envelope limit", tech, func(r *pocnetv1.SendCommunicationRequest) {
			// Every indicator is within its own limits; together they are not.
			in := &pocnetv1.IncidentDetails{}
			for range 1000 {
				in.Indicators = append(in.Indicators, &pocnetv1.Indicator{Type: "url", Value: strings.Repeat("v", 2048), Description: strings.Repeat("d", 4096)})
			}
			r.Communication.Incident = in
		}, "InvalidArgument", "communication: "},
		{"request over 16 MiB", tech, func(r *pocnetv1.SendCommunicationRequest) { r.Communication.Body = strings.Repeat("a", 17<<20) }, "ResourceExhausted", "larger than max"},
	}
	beforeA, beforeB := take(t, adminA), take(t, adminB)
	if beforeA.messages != 0 || beforeB.messages != 0 {
		t.Fatalf("a new federation holds messages: %+v %+v", beforeA, beforeB)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := good()
			tc.edit(req)
			_, err := tc.caller.SendCommunication(ctx(t), req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	beforeA.unchanged(t, "XAA after refused sends", adminA)
	beforeB.unchanged(t, "XBB after refused sends", adminB)
	// The same requests, corrected, are accepted: the refusals were about
	// the field named, not about the caller.
	send(t, tech, "XBB", "technical", rfi("valid"))
}

// TestReadValidation covers the reading calls' arguments.
func TestReadValidation(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	a := f.Contact("XAA", "admin")
	tests := []struct {
		name string
		call func() error
		code string
		msg  string
	}{
		{"GetMessage malformed id", func() error {
			_, err := a.GetMessage(ctx(t), &pocnetv1.GetMessageRequest{Id: "42"})
			return err
		}, "InvalidArgument", `id: "42" is not a message id`},
		{"GetMessage missing id", func() error {
			_, err := a.GetMessage(ctx(t), &pocnetv1.GetMessageRequest{})
			return err
		}, "InvalidArgument", "id: is required"},
		{"GetMessage unknown id", func() error {
			_, err := a.GetMessage(ctx(t), &pocnetv1.GetMessageRequest{Id: uuid.Must(uuid.NewV7()).String()})
			return err
		}, "NotFound", "not found"},
		{"GetThread malformed id", func() error {
			_, err := a.GetThread(ctx(t), &pocnetv1.GetThreadRequest{Id: "thread-1"})
			return err
		}, "InvalidArgument", "id:"},
		{"ListMessages page_size 1000", func() error {
			_, err := a.ListMessages(ctx(t), &pocnetv1.ListMessagesRequest{PageSize: 1000})
			return err
		}, "InvalidArgument", "page_size"},
		{"ListMessages negative page_size", func() error {
			_, err := a.ListMessages(ctx(t), &pocnetv1.ListMessagesRequest{PageSize: -1})
			return err
		}, "InvalidArgument", "page_size"},
		{"ListMessages bad page_token", func() error {
			_, err := a.ListMessages(ctx(t), &pocnetv1.ListMessagesRequest{PageToken: "not a token!"})
			return err
		}, "InvalidArgument", "page_token"},
		{"ListMessages page_token of the wrong length", func() error {
			_, err := a.ListMessages(ctx(t), &pocnetv1.ListMessagesRequest{PageToken: "AAAA"})
			return err
		}, "InvalidArgument", "page_token"},
		{"ListMessages unknown direction", func() error {
			_, err := a.ListMessages(ctx(t), &pocnetv1.ListMessagesRequest{Direction: pocnetv1.Direction(9)})
			return err
		}, "InvalidArgument", "direction"},
		{"WatchEvents after_seq beyond the newest", func() error {
			stream, err := a.WatchEvents(ctx(t), &pocnetv1.WatchEventsRequest{AfterSeq: 1000})
			if err != nil {
				return err
			}
			return recvErr(stream)
		}, "InvalidArgument", "after_seq: 1000 is beyond the newest event"},
		{"GetPolicy malformed state", func() error {
			_, err := a.GetPolicy(ctx(t), &pocnetv1.GetPolicyRequest{State: "xbb"})
			return err
		}, "InvalidArgument", "state"},
		{"GetPolicy unknown state", func() error {
			_, err := a.GetPolicy(ctx(t), &pocnetv1.GetPolicyRequest{State: "XZZ"})
			return err
		}, "NotFound", "XZZ is not a member"},
		{"SetLocalState unspecified", func() error {
			_, err := a.SetLocalState(ctx(t), &pocnetv1.SetLocalStateRequest{Id: uuid.NewString()})
			return err
		}, "InvalidArgument", "local_state"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.call(), tc.code, tc.msg)
		})
	}
	if _, err := a.GetPolicy(ctx(t), &pocnetv1.GetPolicyRequest{State: "XBB"}); err != nil {
		t.Fatalf("GetPolicy of a member: %v", err)
	}
}

// TestRequestIDIdempotency: a retried request creates nothing new; a request
// id reused for different content is refused.
func TestRequestIDIdempotency(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	a := f.Contact("XAA", "technical")
	adminB := f.Contact("XBB", "admin")
	req := &pocnetv1.SendCommunicationRequest{RequestId: "cert-tool-7f3a", ToState: "XBB", ToRole: "technical", Communication: rfi("Once only")}

	first, err := a.SendCommunication(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := a.SendCommunication(ctx(t), proto.Clone(req).(*pocnetv1.SendCommunicationRequest))
	if err != nil {
		t.Fatalf("retry with the same request id: %v", err)
	}
	if first.GetMessage().GetId() != second.GetMessage().GetId() {
		t.Fatalf("retry created message %s, want %s", second.GetMessage().GetId(), first.GetMessage().GetId())
	}
	if second.GetMessage().GetRequestId() != req.GetRequestId() {
		t.Fatalf("request id = %q", second.GetMessage().GetRequestId())
	}

	other := proto.Clone(req).(*pocnetv1.SendCommunicationRequest)
	other.Communication.Subject = "Something else"
	_, err = a.SendCommunication(ctx(t), other)
	wantCode(t, err, "AlreadyExists", `request_id "cert-tool-7f3a" was already used`)

	id := first.GetMessage().GetId()
	waitStatus(t, a, id, pocnetv1.Status_STATUS_DELIVERED)
	// A retry after delivery still returns the same message.
	third, err := a.SendCommunication(ctx(t), proto.Clone(req).(*pocnetv1.SendCommunicationRequest))
	if err != nil || third.GetMessage().GetId() != id {
		t.Fatalf("retry after delivery: %v, %v", third.GetMessage().GetId(), err)
	}
	if out := all(t, f.Contact("XAA", "admin")); len(out) != 1 {
		t.Fatalf("XAA holds %d messages, want 1", len(out))
	}
	in := inbox(t, adminB)
	if len(in) != 1 || in[0].GetId() != id {
		t.Fatalf("XBB inbox = %d messages, want exactly %s", len(in), id)
	}
	if n := received(events(t, adminB)); len(n) != 1 || n[id] != 1 {
		t.Fatalf("XBB MESSAGE_RECEIVED events = %v, want one for %s", n, id)
	}
}
