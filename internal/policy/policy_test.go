package policy

import (
	"strings"
	"testing"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func TestCheck(t *testing.T) {
	m := &pocnetv1.Member{State: "XBB", PointsOfContact: []*pocnetv1.PointOfContact{
		{Role: "technical", Languages: []string{"en", "fr-CA"}, AcceptedKinds: []pocnetv1.Kind{pocnetv1.Kind_KIND_NOTIFICATION, pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION}},
		{Role: "policy", AcceptedKinds: []pocnetv1.Kind{pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS}},
	}}
	cases := []struct {
		name   string
		member *pocnetv1.Member
		role   string
		kind   pocnetv1.Kind
		lang   string
		want   string // "" = accepted
	}{
		{"accepted", m, "technical", pocnetv1.Kind_KIND_NOTIFICATION, "en", ""},
		{"regional variant of a listed language", m, "technical", pocnetv1.Kind_KIND_NOTIFICATION, "en-GB", ""},
		{"base of a listed variant", m, "technical", pocnetv1.Kind_KIND_NOTIFICATION, "fr", ""},
		{"no languages listed means any", m, "policy", pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS, "ar", ""},
		{"kind not accepted", m, "technical", pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS, "en", "does not accept requests for consultations (it accepts: notifications, requests for information)"},
		{"language not accepted", m, "technical", pocnetv1.Kind_KIND_NOTIFICATION, "de", `does not accept communications in "de" (it accepts: en, fr-CA)`},
		{"unknown role", m, "legal", pocnetv1.Kind_KIND_NOTIFICATION, "en", `lists no point of contact with role "legal" (it lists: technical, policy)`},
		{"no member", nil, "technical", pocnetv1.Kind_KIND_NOTIFICATION, "en", "not in its own directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Check(tc.member, tc.role, tc.kind, tc.lang)
			if tc.want == "" {
				if !d.Accepted {
					t.Fatalf("refused: %s", d.Reason)
				}
				return
			}
			if d.Accepted || !strings.Contains(d.Reason, tc.want) {
				t.Fatalf("decision %+v, want refusal containing %q", d, tc.want)
			}
		})
	}
}
