package exchange

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/text/language"
	"google.golang.org/protobuf/types/known/timestamppb"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Limits of a communication. They keep every envelope well under the gRPC
// message limit and the store's comfortable value size.
const (
	MaxSubjectRunes     = 200
	MaxBodyBytes        = 64 << 10
	MaxStixBytes        = 1 << 20
	MaxIndicators       = 1000
	MaxIndicatorBytes   = 2048
	MaxSectors          = 64
	MaxShortTextBytes   = 4096
	MaxReferences       = 64
	MaxRequestIDLen     = 128
	MaxDeclineReason    = 4096
	DefaultExpiry       = 7 * 24 * time.Hour
	MaxExpiry           = 90 * 24 * time.Hour
	maxFutureClockSkew  = 10 * time.Minute
	maxLanguageTagBytes = 64
)

func validText(field, s string, maxBytes int, required bool) error {
	if s == "" {
		if required {
			return fieldErr(field, "is required")
		}
		return nil
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, "is not valid UTF-8")
	}
	if len(s) > maxBytes {
		return fieldErr(field, "is %d bytes, more than the limit of %d", len(s), maxBytes)
	}
	return nil
}

// validateCommunication checks a communication from this state's operators
// (future = true: respond-by must be in the future) or from a peer (future =
// false: it was checked by the sender, and time has passed since).
func validateCommunication(c *pocnetv1.Communication, field string, now time.Time, future bool) error {
	if c == nil {
		return fieldErr(field, "is required")
	}
	if c.GetKind() == pocnetv1.Kind_KIND_UNSPECIFIED {
		return fieldErr(field+".kind", "is required (request for information, request for assistance, notification, request for consultations, communication check or other)")
	}
	if _, ok := pocnetv1.Kind_name[int32(c.GetKind())]; !ok {
		return fieldErr(field+".kind", "unknown kind %d", int32(c.GetKind()))
	}
	if _, ok := pocnetv1.Urgency_name[int32(c.GetUrgency())]; !ok {
		return fieldErr(field+".urgency", "unknown urgency %d", int32(c.GetUrgency()))
	}
	if _, ok := pocnetv1.HandlingCode_name[int32(c.GetHandlingCode())]; !ok {
		return fieldErr(field+".handling_code", "unknown handling code %d", int32(c.GetHandlingCode()))
	}
	if err := validText(field+".subject", c.GetSubject(), 4*MaxSubjectRunes, true); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(c.GetSubject()); n > MaxSubjectRunes {
		return fieldErr(field+".subject", "is %d characters, more than the limit of %d", n, MaxSubjectRunes)
	}
	for _, r := range c.GetSubject() {
		if unicode.IsControl(r) {
			return fieldErr(field+".subject", "must be one line without control characters")
		}
	}
	if err := validText(field+".body", c.GetBody(), MaxBodyBytes, false); err != nil {
		return err
	}
	if c.GetLanguage() == "" {
		return fieldErr(field+".language", "is required (a BCP 47 tag such as \"en\" or \"fr\")")
	}
	if len(c.GetLanguage()) > maxLanguageTagBytes {
		return fieldErr(field+".language", "is not a BCP 47 language tag")
	}
	if _, err := language.Parse(c.GetLanguage()); err != nil {
		return fieldErr(field+".language", "%q is not a BCP 47 language tag", c.GetLanguage())
	}
	if err := validText(field+".requested_action", c.GetRequestedAction(), MaxShortTextBytes, false); err != nil {
		return err
	}
	if err := validText(field+".handling_note", c.GetHandlingNote(), MaxShortTextBytes, false); err != nil {
		return err
	}
	if c.GetHandlingCode() == pocnetv1.HandlingCode_HANDLING_CODE_ORIGINATOR_DEFINED && c.GetHandlingNote() == "" {
		return fieldErr(field+".handling_note", "is required with the originator-defined handling code")
	}
	if c.RespondBy != nil {
		if err := c.GetRespondBy().CheckValid(); err != nil {
			return fieldErr(field+".respond_by", "%v", err)
		}
		if future && !c.GetRespondBy().AsTime().After(now) {
			return fieldErr(field+".respond_by", "%s is in the past", c.GetRespondBy().AsTime().UTC().Format(time.RFC3339))
		}
	}
	if len(c.GetReferences()) > MaxReferences {
		return fieldErr(field+".references", "has %d entries, more than the limit of %d", len(c.GetReferences()), MaxReferences)
	}
	for i, r := range c.GetReferences() {
		if _, err := uuid.Parse(r); err != nil {
			return fieldErr(field+".references["+strconv.Itoa(i)+"]", "%q is not a message id", r)
		}
	}
	return validateIncident(c.GetIncident(), field+".incident")
}

func validateIncident(in *pocnetv1.IncidentDetails, field string) error {
	if in == nil {
		return nil
	}
	for _, t := range []struct {
		name string
		ts   *timestamppb.Timestamp
	}{{"detected_at", in.DetectedAt}, {"started_at", in.StartedAt}, {"ended_at", in.EndedAt}} {
		if t.ts == nil {
			continue
		}
		if err := t.ts.CheckValid(); err != nil {
			return fieldErr(field+"."+t.name, "%v", err)
		}
	}
	if len(in.GetAffectedSectors()) > MaxSectors {
		return fieldErr(field+".affected_sectors", "has %d entries, more than the limit of %d", len(in.GetAffectedSectors()), MaxSectors)
	}
	for i, s := range in.GetAffectedSectors() {
		if err := validText(field+".affected_sectors["+strconv.Itoa(i)+"]", s, 256, true); err != nil {
			return err
		}
	}
	if len(in.GetIndicators()) > MaxIndicators {
		return fieldErr(field+".indicators", "has %d entries, more than the limit of %d", len(in.GetIndicators()), MaxIndicators)
	}
	for i, ind := range in.GetIndicators() {
		f := field + ".indicators[" + strconv.Itoa(i) + "]"
		if err := validText(f+".type", ind.GetType(), 128, true); err != nil {
			return err
		}
		if err := validText(f+".value", ind.GetValue(), MaxIndicatorBytes, true); err != nil {
			return err
		}
		if err := validText(f+".description", ind.GetDescription(), MaxShortTextBytes, false); err != nil {
			return err
		}
	}
	if b := in.GetStixBundle(); len(b) > 0 {
		if len(b) > MaxStixBytes {
			return fieldErr(field+".stix_bundle", "is %d bytes, more than the limit of %d", len(b), MaxStixBytes)
		}
		var bundle struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil || bundle.Type != "bundle" {
			return fieldErr(field+".stix_bundle", "is not a STIX 2.1 bundle (a JSON object with \"type\": \"bundle\")")
		}
	}
	return nil
}

func validateRequestID(field, rid string) error {
	if len(rid) > MaxRequestIDLen {
		return fieldErr(field, "is %d characters, more than the limit of %d", len(rid), MaxRequestIDLen)
	}
	for _, r := range rid {
		if r < 0x21 || r > 0x7e {
			return fieldErr(field, "must be printable ASCII without spaces")
		}
	}
	return nil
}
