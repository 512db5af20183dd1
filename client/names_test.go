package client

import (
	"strings"
	"testing"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func TestParseKind(t *testing.T) {
	tests := []struct {
		in      string
		want    pocnetv1.Kind
		wantErr string
	}{
		{"rfi", pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, ""},
		{"RFA", pocnetv1.Kind_KIND_REQUEST_FOR_ASSISTANCE, ""},
		{"notification", pocnetv1.Kind_KIND_NOTIFICATION, ""},
		{"consultations", pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS, ""},
		{"check", pocnetv1.Kind_KIND_COMMUNICATION_CHECK, ""},
		{"other", pocnetv1.Kind_KIND_OTHER, ""},
		{"KIND_REQUEST_FOR_INFORMATION", pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, ""},
		{"request-for-assistance", pocnetv1.Kind_KIND_REQUEST_FOR_ASSISTANCE, ""},
		{"KIND_UNSPECIFIED", 0, `unknown kind "KIND_UNSPECIFIED" (one of: rfi, rfa, notification, consultations, check, other)`},
		{"", 0, `unknown kind ""`},
		{"rfq", 0, `unknown kind "rfq" (one of: rfi, rfa, notification, consultations, check, other)`},
	}
	for _, tt := range tests {
		got, err := ParseKind(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseKind(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseKind(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if back, err := ParseKind(KindName(got)); err != nil || back != got {
			t.Errorf("ParseKind(KindName(%v)) = %v, %v", got, back, err)
		}
	}
}

func TestParseUrgency(t *testing.T) {
	tests := []struct {
		in      string
		want    pocnetv1.Urgency
		wantErr string
	}{
		{"routine", pocnetv1.Urgency_URGENCY_ROUTINE, ""},
		{"priority", pocnetv1.Urgency_URGENCY_PRIORITY, ""},
		{"Urgent", pocnetv1.Urgency_URGENCY_URGENT, ""},
		{"URGENCY_URGENT", pocnetv1.Urgency_URGENCY_URGENT, ""},
		{"high", 0, `unknown urgency "high" (one of: routine, priority, urgent)`},
	}
	for _, tt := range tests {
		got, err := ParseUrgency(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseUrgency(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseUrgency(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseHandling(t *testing.T) {
	tests := []struct {
		in      string
		want    pocnetv1.HandlingCode
		wantErr string
	}{
		{"none", pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION, ""},
		{"no-onward", pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION, ""},
		{"no_judicial", pocnetv1.HandlingCode_HANDLING_CODE_NO_JUDICIAL_USE_WITHOUT_CONSENT, ""},
		{"originator", pocnetv1.HandlingCode_HANDLING_CODE_ORIGINATOR_DEFINED, ""},
		{"HANDLING_CODE_NO_ONWARD_DISSEMINATION", pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION, ""},
		{"tlp:red", 0, `unknown handling code "tlp:red" (one of: none, no-onward, no-judicial, originator)`},
	}
	for _, tt := range tests {
		got, err := ParseHandling(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseHandling(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseHandling(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{KindName(pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION), "rfi"},
		{KindWords(pocnetv1.Kind_KIND_COMMUNICATION_CHECK), "communication check"},
		{KindName(pocnetv1.Kind(99)), "unknown(99)"},
		{KindName(pocnetv1.Kind_KIND_UNSPECIFIED), "unspecified"},
		{UrgencyName(pocnetv1.Urgency_URGENCY_PRIORITY), "priority"},
		{HandlingName(pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION), "no-onward"},
		{HandlingWords(pocnetv1.HandlingCode_HANDLING_CODE_NO_JUDICIAL_USE_WITHOUT_CONSENT), "no judicial use without consent"},
		{StatusName(pocnetv1.Status_STATUS_DELIVERED), "DELIVERED"},
		{StatusName(pocnetv1.Status_STATUS_UNSPECIFIED), "UNSPECIFIED"},
		{LocalStateName(pocnetv1.LocalState_LOCAL_STATE_ARCHIVED), "archived"},
		{DirectionName(pocnetv1.Direction_DIRECTION_INBOUND), "inbound"},
		{EnvelopeTypeName(pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT), "ack"},
		{EnvelopeTypeWords(pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT), "acknowledgement"},
		{EventTypeName(pocnetv1.EventType_EVENT_TYPE_STATUS_CHANGED), "status"},
		{MemberKindName(pocnetv1.MemberKind_MEMBER_KIND_OBSERVER), "observer"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("case %d: got %q, want %q", i, tt.got, tt.want)
		}
	}
	if got, err := ParseLocalState("read"); err != nil || got != pocnetv1.LocalState_LOCAL_STATE_READ {
		t.Errorf("ParseLocalState(read) = %v, %v", got, err)
	}
}
