package client

import (
	"fmt"
	"strings"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// enumName pairs an enum value with the short name people type and the words
// used to display it.
type enumName[E ~int32] struct {
	value E
	short string
	words string
}

var kindNames = []enumName[pocnetv1.Kind]{
	{pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, "rfi", "request for information"},
	{pocnetv1.Kind_KIND_REQUEST_FOR_ASSISTANCE, "rfa", "request for assistance"},
	{pocnetv1.Kind_KIND_NOTIFICATION, "notification", "notification"},
	{pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS, "consultations", "request for consultations"},
	{pocnetv1.Kind_KIND_COMMUNICATION_CHECK, "check", "communication check"},
	{pocnetv1.Kind_KIND_OTHER, "other", "other"},
}

var urgencyNames = []enumName[pocnetv1.Urgency]{
	{pocnetv1.Urgency_URGENCY_ROUTINE, "routine", "routine"},
	{pocnetv1.Urgency_URGENCY_PRIORITY, "priority", "priority"},
	{pocnetv1.Urgency_URGENCY_URGENT, "urgent", "urgent"},
}

var handlingNames = []enumName[pocnetv1.HandlingCode]{
	{pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION, "none", "no restriction"},
	{pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION, "no-onward", "no onward dissemination"},
	{pocnetv1.HandlingCode_HANDLING_CODE_NO_JUDICIAL_USE_WITHOUT_CONSENT, "no-judicial", "no judicial use without consent"},
	{pocnetv1.HandlingCode_HANDLING_CODE_ORIGINATOR_DEFINED, "originator", "originator-defined"},
}

var statusNames = []enumName[pocnetv1.Status]{
	{pocnetv1.Status_STATUS_ACCEPTED, "accepted", "ACCEPTED"},
	{pocnetv1.Status_STATUS_DELIVERED, "delivered", "DELIVERED"},
	{pocnetv1.Status_STATUS_ACKNOWLEDGED, "acknowledged", "ACKNOWLEDGED"},
	{pocnetv1.Status_STATUS_RESPONDED, "responded", "RESPONDED"},
	{pocnetv1.Status_STATUS_DECLINED, "declined", "DECLINED"},
	{pocnetv1.Status_STATUS_REJECTED, "rejected", "REJECTED"},
	{pocnetv1.Status_STATUS_UNDELIVERABLE, "undeliverable", "UNDELIVERABLE"},
}

var localStateNames = []enumName[pocnetv1.LocalState]{
	{pocnetv1.LocalState_LOCAL_STATE_NEW, "new", "new"},
	{pocnetv1.LocalState_LOCAL_STATE_READ, "read", "read"},
	{pocnetv1.LocalState_LOCAL_STATE_ARCHIVED, "archived", "archived"},
}

var directionNames = []enumName[pocnetv1.Direction]{
	{pocnetv1.Direction_DIRECTION_OUTBOUND, "outbound", "outbound"},
	{pocnetv1.Direction_DIRECTION_INBOUND, "inbound", "inbound"},
}

var envelopeTypeNames = []enumName[pocnetv1.EnvelopeType]{
	{pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, "communication", "communication"},
	{pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT, "ack", "acknowledgement"},
	{pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE, "response", "response"},
	{pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE, "decline", "decline"},
}

var eventTypeNames = []enumName[pocnetv1.EventType]{
	{pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED, "received", "message received"},
	{pocnetv1.EventType_EVENT_TYPE_STATUS_CHANGED, "status", "status changed"},
}

var memberKindNames = []enumName[pocnetv1.MemberKind]{
	{pocnetv1.MemberKind_MEMBER_KIND_STATE, "state", "state"},
	{pocnetv1.MemberKind_MEMBER_KIND_OBSERVER, "observer", "observer"},
}

var proposalStateNames = []enumName[pocnetv1.ProposalState]{
	{pocnetv1.ProposalState_PROPOSAL_STATE_PENDING, "pending", "pending"},
	{pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE, "silence", "in silence period"},
	{pocnetv1.ProposalState_PROPOSAL_STATE_OBJECTED, "objected", "objected to"},
	{pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED, "adopted", "adopted"},
	{pocnetv1.ProposalState_PROPOSAL_STATE_SUPERSEDED, "superseded", "superseded"},
}

// parseEnum accepts a short name or the full protobuf enum name, in any case,
// with '-' and '_' interchangeable.
func parseEnum[E ~int32](what, s string, names []enumName[E], full map[string]int32) (E, error) {
	norm := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "_", "-"))
	for _, n := range names {
		if norm == n.short || norm == strings.ReplaceAll(n.words, " ", "-") {
			return n.value, nil
		}
	}
	if v, ok := full[strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))]; ok && v != 0 {
		return E(v), nil
	}
	return 0, fmt.Errorf("unknown %s %q (one of: %s)", what, s, shortList(names))
}

func shortList[E ~int32](names []enumName[E]) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = n.short
	}
	return strings.Join(s, ", ")
}

func shortName[E ~int32](v E, names []enumName[E], full map[int32]string) string {
	for _, n := range names {
		if n.value == v {
			return n.short
		}
	}
	return unknownName(int32(v), full)
}

func wordsName[E ~int32](v E, names []enumName[E], full map[int32]string) string {
	for _, n := range names {
		if n.value == v {
			return n.words
		}
	}
	return unknownName(int32(v), full)
}

func unknownName(v int32, full map[int32]string) string {
	if v == 0 {
		return "unspecified"
	}
	if s, ok := full[v]; ok {
		return s
	}
	return fmt.Sprintf("unknown(%d)", v)
}

// ParseKind reads a kind of communication: a short name (rfi, rfa,
// notification, consultations, check, other), the words ("request-for-information")
// or the full enum name (KIND_REQUEST_FOR_INFORMATION). The error lists the
// accepted short names.
func ParseKind(s string) (pocnetv1.Kind, error) {
	return parseEnum("kind", s, kindNames, pocnetv1.Kind_value)
}

// ParseUrgency reads an urgency: routine, priority, urgent, or the full enum
// name.
func ParseUrgency(s string) (pocnetv1.Urgency, error) {
	return parseEnum("urgency", s, urgencyNames, pocnetv1.Urgency_value)
}

// ParseHandling reads a handling code: none, no-onward, no-judicial,
// originator, or the full enum name.
func ParseHandling(s string) (pocnetv1.HandlingCode, error) {
	return parseEnum("handling code", s, handlingNames, pocnetv1.HandlingCode_value)
}

// ParseLocalState reads a local state: new, read, archived, or the full enum
// name.
func ParseLocalState(s string) (pocnetv1.LocalState, error) {
	return parseEnum("local state", s, localStateNames, pocnetv1.LocalState_value)
}

// KindNames returns the short names ParseKind accepts, in enum order.
func KindNames() []string { return strings.Split(shortList(kindNames), ", ") }

// UrgencyNames returns the short names ParseUrgency accepts.
func UrgencyNames() []string { return strings.Split(shortList(urgencyNames), ", ") }

// HandlingNames returns the short names ParseHandling accepts.
func HandlingNames() []string { return strings.Split(shortList(handlingNames), ", ") }

// KindName returns the short name of k ("rfi"), which ParseKind reads back.
func KindName(k pocnetv1.Kind) string { return shortName(k, kindNames, pocnetv1.Kind_name) }

// KindWords returns k in words ("request for information").
func KindWords(k pocnetv1.Kind) string { return wordsName(k, kindNames, pocnetv1.Kind_name) }

// UrgencyName returns the short name of u ("urgent").
func UrgencyName(u pocnetv1.Urgency) string {
	return shortName(u, urgencyNames, pocnetv1.Urgency_name)
}

// HandlingName returns the short name of h ("no-onward").
func HandlingName(h pocnetv1.HandlingCode) string {
	return shortName(h, handlingNames, pocnetv1.HandlingCode_name)
}

// HandlingWords returns h in words ("no onward dissemination").
func HandlingWords(h pocnetv1.HandlingCode) string {
	return wordsName(h, handlingNames, pocnetv1.HandlingCode_name)
}

// StatusName returns s as the word the design uses ("DELIVERED").
func StatusName(s pocnetv1.Status) string {
	if s == pocnetv1.Status_STATUS_UNSPECIFIED {
		return "UNSPECIFIED"
	}
	return wordsName(s, statusNames, pocnetv1.Status_name)
}

// LocalStateName returns s as "new", "read" or "archived".
func LocalStateName(s pocnetv1.LocalState) string {
	return shortName(s, localStateNames, pocnetv1.LocalState_name)
}

// DirectionName returns d as "outbound" or "inbound".
func DirectionName(d pocnetv1.Direction) string {
	return shortName(d, directionNames, pocnetv1.Direction_name)
}

// EnvelopeTypeName returns t as "communication", "ack", "response" or
// "decline".
func EnvelopeTypeName(t pocnetv1.EnvelopeType) string {
	return shortName(t, envelopeTypeNames, pocnetv1.EnvelopeType_name)
}

// EnvelopeTypeWords returns t in words ("acknowledgement").
func EnvelopeTypeWords(t pocnetv1.EnvelopeType) string {
	return wordsName(t, envelopeTypeNames, pocnetv1.EnvelopeType_name)
}

// EventTypeName returns t as "received" or "status".
func EventTypeName(t pocnetv1.EventType) string {
	return shortName(t, eventTypeNames, pocnetv1.EventType_name)
}

// MemberKindName returns k as "state" or "observer".
func MemberKindName(k pocnetv1.MemberKind) string {
	return shortName(k, memberKindNames, pocnetv1.MemberKind_name)
}

// ProposalStateName returns s as "pending", "silence", "objected",
// "adopted" or "superseded".
func ProposalStateName(s pocnetv1.ProposalState) string {
	return shortName(s, proposalStateNames, pocnetv1.ProposalState_name)
}
