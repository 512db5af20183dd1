package pocctl

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/transcript"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// printJSONValue writes v, which is not a protobuf message, as one
// indented JSON document.
func (a *app) printJSONValue(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = a.env.Stdout.Write(append(b, '\n'))
	return err
}

func joinAnd(s []string) string {
	switch len(s) {
	case 0:
		return "no state"
	case 1:
		return s[0]
	default:
		return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
	}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// writeReport writes what a verified transcript proves, entry by entry,
// and ends with what it cannot prove.
func writeReport(w io.Writer, rep *transcript.Report, dirFile, footer string) error {
	fmt.Fprintf(w, "Transcript of thread %s: VERIFIED against %s\n", rep.ThreadID, dirFile)
	tw := table(w)
	fmt.Fprintf(tw, "Federation\t%s\n", rep.Federation)
	fmt.Fprintf(tw, "Between\t%s and %s\n", rep.States[0], rep.States[1])
	fmt.Fprintf(tw, "Exported by\t%s at %s\n", rep.ExportedBy, stamp(rep.ExportedAt))
	fmt.Fprintf(tw, "Entries\t%d: every signature, payload and receipt checks out\n", len(rep.Entries))
	if err := tw.Flush(); err != nil {
		return err
	}
	for i := range rep.Entries {
		writeEntry(w, &rep.Entries[i])
	}
	_, err := fmt.Fprintf(w, "\n%s\n", footer)
	return err
}

func writeEntry(w io.Writer, e *transcript.Entry) {
	h := e.Header
	fmt.Fprintf(w, "\n[%d] %s  %s → %s  %s", e.N, stamp(h.GetCreatedAt().AsTime()),
		party(h.GetFromState(), h.GetFromRole()), party(h.GetToState(), h.GetToRole()), client.EnvelopeTypeWords(h.GetType()))
	if e.Answers > 0 {
		fmt.Fprintf(w, " to [%d]", e.Answers)
	}
	fmt.Fprintf(w, "\n    id %s\n", h.GetId())
	switch p := e.Payload; {
	case p.GetCommunication() != nil:
		c := p.GetCommunication()
		fmt.Fprintf(w, "    %s, %s", client.KindWords(c.GetKind()), client.UrgencyName(c.GetUrgency()))
		if c.GetExercise() || h.GetExercise() {
			fmt.Fprint(w, "  [EXERCISE]")
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "    Handling: %s\n", handling(c))
		fmt.Fprintf(w, "    Subject: %s\n", c.GetSubject())
		if c.GetBody() != "" {
			fmt.Fprintf(w, "%s\n", indent(strings.TrimRight(c.GetBody(), "\n"), "    | "))
		}
	case p.GetAcknowledgement() != nil:
		if n := p.GetAcknowledgement().GetNote(); n != "" {
			fmt.Fprintf(w, "    Note: %s\n", n)
		}
	case p.GetDecline() != nil:
		r := p.GetDecline().GetReason()
		if r == "" {
			r = "(no reason given)"
		}
		fmt.Fprintf(w, "    Reason: %s\n", r)
	}
	fmt.Fprintf(w, "    Signed by %s (key %s)\n", h.GetFromState(), e.SigningKey)
	r := e.Receipt
	switch {
	case r == nil:
		fmt.Fprintf(w, "    No receipt in the transcript: delivery to %s is not proven\n", h.GetToState())
	case r.Outcome == pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_REJECTED:
		fmt.Fprintf(w, "    Refused by %s's published policy at %s: %s (receipt signed by %s, key %s)\n",
			h.GetToState(), stamp(r.ReceivedAt), r.Reason, h.GetToState(), r.KeyID)
	default:
		fmt.Fprintf(w, "    Delivered to %s at %s (receipt signed by %s, key %s)\n", h.GetToState(), stamp(r.ReceivedAt), h.GetToState(), r.KeyID)
	}
}

// handling says plainly what the sender asked of a communication's
// recipient.
func handling(c *pocnetv1.Communication) string {
	h := c.GetHandlingCode()
	if h == pocnetv1.HandlingCode_HANDLING_CODE_UNSPECIFIED {
		h = pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION
	}
	s := client.HandlingWords(h)
	if c.GetHandlingNote() != "" {
		s += ": " + c.GetHandlingNote()
	}
	return s
}

// writeDisclosure writes what a verified disclosure bundle proves.
func writeDisclosure(w io.Writer, d *transcript.Disclosure, dirFile string) error {
	fmt.Fprintf(w, "Disclosure bundle: VERIFIED against %s\n", dirFile)
	tw := table(w)
	fmt.Fprintf(tw, "Purpose\t%s\n", d.Purpose)
	for _, c := range d.Consents {
		fmt.Fprintf(tw, "Consent of %s\tsigned at %s (key %s)\n", c.State, stamp(c.SignedAt), c.KeyID)
	}
	fmt.Fprintf(tw, "Transcript SHA-256\t%s\n", hex.EncodeToString(d.Digest))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return writeReport(w, d.Report, dirFile, "Both states consented to exactly this transcript, for the purpose above.")
}

type jsonReceipt struct {
	Outcome    string `json:"outcome"`
	Reason     string `json:"reason,omitempty"`
	ReceivedAt string `json:"receivedAt"`
	KeyID      string `json:"keyId"`
}

type jsonEntry struct {
	N          int             `json:"n"`
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	From       string          `json:"from"`
	To         string          `json:"to"`
	CreatedAt  string          `json:"createdAt"`
	InReplyTo  string          `json:"inReplyTo,omitempty"`
	Answers    int             `json:"answers,omitempty"`
	SigningKey string          `json:"signingKey"`
	Payload    json.RawMessage `json:"payload"`
	Receipt    *jsonReceipt    `json:"receipt"`
}

type jsonReport struct {
	Verified   bool        `json:"verified"`
	Federation string      `json:"federationId"`
	ThreadID   string      `json:"threadId"`
	States     []string    `json:"states"`
	ExportedBy string      `json:"exportedByState"`
	ExportedAt string      `json:"exportedAt"`
	Entries    []jsonEntry `json:"entries"`
}

func jsonTranscript(rep *transcript.Report) jsonReport {
	out := jsonReport{Verified: true, Federation: rep.Federation, ThreadID: rep.ThreadID, States: rep.States[:],
		ExportedBy: rep.ExportedBy, ExportedAt: stamp(rep.ExportedAt)}
	for _, e := range rep.Entries {
		h := e.Header
		p, _ := protojson.Marshal(e.Payload)
		je := jsonEntry{N: e.N, ID: h.GetId(), Type: h.GetType().String(), From: party(h.GetFromState(), h.GetFromRole()),
			To: party(h.GetToState(), h.GetToRole()), CreatedAt: stamp(h.GetCreatedAt().AsTime()), InReplyTo: h.GetInReplyTo(),
			Answers: e.Answers, SigningKey: e.SigningKey, Payload: p}
		if r := e.Receipt; r != nil {
			je.Receipt = &jsonReceipt{Outcome: r.Outcome.String(), Reason: r.Reason, ReceivedAt: stamp(r.ReceivedAt), KeyID: r.KeyID}
		}
		out.Entries = append(out.Entries, je)
	}
	return out
}

type jsonConsent struct {
	State    string `json:"state"`
	KeyID    string `json:"keyId"`
	SignedAt string `json:"signedAt"`
}

type jsonDisclosureReport struct {
	Verified   bool          `json:"verified"`
	Purpose    string        `json:"purpose"`
	Consents   []jsonConsent `json:"consents"`
	Digest     string        `json:"transcriptSha256"`
	Transcript jsonReport    `json:"transcript"`
}

func jsonDisclosure(d *transcript.Disclosure) jsonDisclosureReport {
	out := jsonDisclosureReport{Verified: true, Purpose: d.Purpose, Digest: hex.EncodeToString(d.Digest), Transcript: jsonTranscript(d.Report)}
	for _, c := range d.Consents {
		out.Consents = append(out.Consents, jsonConsent{State: c.State, KeyID: c.KeyID, SignedAt: stamp(c.SignedAt)})
	}
	return out
}
