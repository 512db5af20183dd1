package transcript

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/envelope"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// MaxPurpose bounds the purpose of a disclosure, in bytes of UTF-8.
const MaxPurpose = 1000

// Disclosure is what a checked disclosure bundle proves.
type Disclosure struct {
	// Report is the verified transcript.
	Report *Report
	// Transcript is the transcript the bundle carries, decoded.
	Transcript *pocnetv1.Transcript
	// Digest is the SHA-256 of the transcript bytes: what every consent
	// signs.
	Digest []byte
	// Purpose is the purpose every consent names.
	Purpose  string
	Consents []Consented
	// Missing lists the states of the thread whose consent the bundle
	// lacks, in the order of Report.States.
	Missing []string
}

// Consented is one verified consent.
type Consented struct {
	State    string
	KeyID    string
	SignedAt time.Time
}

// Digest returns the SHA-256 of a bundle's transcript bytes.
func Digest(transcript []byte) []byte {
	sum := sha256.Sum256(transcript)
	return sum[:]
}

// VerifyDisclosure checks a disclosure bundle offline: its transcript
// verifies (see Verify), and it carries a valid consent of each of the two
// states of the thread, signed by a key each publishes, over the exact
// transcript bytes and the same purpose. Neither state alone can produce a
// bundle that passes: its key cannot sign for the other.
func VerifyDisclosure(b *pocnetv1.DisclosureBundle, keys envelope.Keys) (*Disclosure, error) {
	d, err := CheckBundle(b, keys)
	if err != nil {
		return nil, err
	}
	switch len(d.Missing) {
	case 0:
		return d, nil
	case 1:
		return nil, invalidf("consent of %s is missing: a thread is disclosed only with the consent of both %s and %s", d.Missing[0], d.Report.States[0], d.Report.States[1])
	default:
		return nil, invalidf("consents of %s are missing: a thread is disclosed only with the consent of both", strings.Join(d.Missing, " and "))
	}
}

// CheckBundle checks everything a bundle carries as VerifyDisclosure does,
// but accepts a bundle that still lacks a state's consent and lists it in
// Missing. The node of the second state uses it before adding its own.
func CheckBundle(b *pocnetv1.DisclosureBundle, keys envelope.Keys) (*Disclosure, error) {
	if len(b.GetTranscript()) == 0 {
		return nil, invalidf("the bundle carries no transcript")
	}
	if len(b.GetTranscript()) > MaxFileSize {
		return nil, invalidf("transcript of %d bytes, more than %d", len(b.GetTranscript()), MaxFileSize)
	}
	var t pocnetv1.Transcript
	if err := proto.Unmarshal(b.GetTranscript(), &t); err != nil {
		return nil, invalidf("the bundle's transcript does not decode: %v", err)
	}
	rep, err := Verify(&t, keys)
	if err != nil {
		return nil, fmt.Errorf("the bundle's transcript: %w", err)
	}
	d := &Disclosure{Report: rep, Transcript: &t, Digest: Digest(b.GetTranscript())}
	parties := rep.States
	got := map[string]bool{}
	for i, c := range b.GetConsents() {
		st := c.GetState()
		if st != parties[0] && st != parties[1] {
			return nil, invalidf("consent %d is of %q, which is not a party to thread %s (between %s and %s)", i+1, st, rep.ThreadID, parties[0], parties[1])
		}
		if got[st] {
			return nil, invalidf("two consents of %s", st)
		}
		// The signature first: nothing else a consent says counts before
		// it is known to come from the state it names.
		if err := envelope.VerifyConsent(c, keys, d.Digest); err != nil {
			return nil, invalidf("consent of %s: %v", st, err)
		}
		p := c.GetPurpose()
		switch {
		case strings.TrimSpace(p) == "":
			return nil, invalidf("consent of %s names no purpose", st)
		case len(p) > MaxPurpose || !utf8.ValidString(p):
			return nil, invalidf("consent of %s: the purpose must be at most %d bytes of UTF-8", st, MaxPurpose)
		case len(d.Consents) > 0 && p != d.Purpose:
			return nil, invalidf("consent of %s is for the purpose %q, consent of %s for %q: both states consent to the same purpose", st, p, d.Consents[0].State, d.Purpose)
		}
		at := c.GetSignedAt().AsTime()
		if at.Before(rep.ExportedAt.Add(-MaxClockSkew)) {
			return nil, invalidf("consent of %s was signed at %s, before the transcript was exported at %s", st, stamp(at), stamp(rep.ExportedAt))
		}
		got[st] = true
		d.Purpose = p
		d.Consents = append(d.Consents, Consented{State: st, KeyID: c.GetKeyId(), SignedAt: at})
	}
	for _, s := range parties {
		if !got[s] {
			d.Missing = append(d.Missing, s)
		}
	}
	return d, nil
}
