// Package policy owns a receiving state's decision whether a communication is
// accepted by the PoC it is addressed to, from what that state publishes in
// the directory: the PoC must exist, accept the kind of communication, and
// accept its language.
//
// It decides acceptance only; it must never answer, acknowledge or decline on
// the state's behalf.
package policy

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/text/language"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Decision is the outcome of a policy check.
type Decision struct {
	Accepted bool
	// Reason tells the sender, in plain words, why it was not accepted.
	Reason string
}

// Check decides whether member's PoC under role accepts a communication of
// kind in lang. member may be nil (unknown state).
func Check(member *pocnetv1.Member, role string, kind pocnetv1.Kind, lang string) Decision {
	if member == nil {
		return Decision{Reason: "the recipient state is not in its own directory entry"}
	}
	var poc *pocnetv1.PointOfContact
	var roles []string
	for _, p := range member.GetPointsOfContact() {
		roles = append(roles, p.GetRole())
		if p.GetRole() == role {
			poc = p
		}
	}
	if poc == nil {
		return Decision{Reason: fmt.Sprintf("%s lists no point of contact with role %q (it lists: %s)", member.GetState(), role, strings.Join(roles, ", "))}
	}
	if !slices.Contains(poc.GetAcceptedKinds(), kind) {
		var names []string
		for _, k := range poc.GetAcceptedKinds() {
			names = append(names, kindPlural(k))
		}
		return Decision{Reason: fmt.Sprintf("the %s point of contact of %s does not accept %s (it accepts: %s)",
			role, member.GetState(), kindPlural(kind), strings.Join(names, ", "))}
	}
	if len(poc.GetLanguages()) > 0 && !acceptsLanguage(poc.GetLanguages(), lang) {
		return Decision{Reason: fmt.Sprintf("the %s point of contact of %s does not accept communications in %q (it accepts: %s)",
			role, member.GetState(), lang, strings.Join(poc.GetLanguages(), ", "))}
	}
	return Decision{Accepted: true}
}

// acceptsLanguage matches on the base language: a PoC listing "en" accepts
// "en-GB", and one listing "fr-CA" accepts "fr".
func acceptsLanguage(accepted []string, lang string) bool {
	t, err := language.Parse(lang)
	if err != nil {
		return false
	}
	base, _ := t.Base()
	for _, a := range accepted {
		at, err := language.Parse(a)
		if err != nil {
			continue
		}
		if ab, _ := at.Base(); ab == base {
			return true
		}
	}
	return false
}

// kindPlural names what a PoC accepts, e.g. "requests for consultations".
func kindPlural(k pocnetv1.Kind) string {
	switch k {
	case pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION:
		return "requests for information"
	case pocnetv1.Kind_KIND_REQUEST_FOR_ASSISTANCE:
		return "requests for assistance"
	case pocnetv1.Kind_KIND_NOTIFICATION:
		return "notifications"
	case pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS:
		return "requests for consultations"
	case pocnetv1.Kind_KIND_COMMUNICATION_CHECK:
		return "communication checks"
	case pocnetv1.Kind_KIND_OTHER:
		return "other communications"
	default:
		return fmt.Sprintf("communications of kind %d", int32(k))
	}
}
