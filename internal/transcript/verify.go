package transcript

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/pocnet/pocnet/internal/envelope"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// MaxClockSkew is how far apart the clocks of two states' nodes may be
// before times they sign are found inconsistent (a receipt before the
// envelope it attests, a consent before the transcript existed). It is the
// bound a receiving node puts on an envelope's created_at, so that no
// receipt an honest node signed is ever refused here.
const MaxClockSkew = 10 * time.Minute

// ErrInvalid matches (errors.Is) every error for a transcript or a disclosure
// bundle that does not verify; the error itself says what is wrong.
var ErrInvalid = errors.New("does not verify")

// invalid is a failure of the transcript or bundle as a whole.
type invalid struct{ msg string }

func (e *invalid) Error() string { return e.msg }
func (e *invalid) Unwrap() error { return ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalid{msg: fmt.Sprintf(format, args...)}
}

// EntryError says which entry of a transcript does not verify, and why.
type EntryError struct {
	// Entry is the number of the entry, counted from 1 as the report and
	// pocctl number them.
	Entry int
	// ID is the envelope id, when the entry's header could be read.
	ID  string
	Err error
}

// Error returns "entry N (ID): what is wrong".
func (e *EntryError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("entry %d: %v", e.Entry, e.Err)
	}
	return fmt.Sprintf("entry %d (%s): %v", e.Entry, e.ID, e.Err)
}

// Unwrap returns ErrInvalid and the underlying error, so that errors.Is
// works with both.
func (e *EntryError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// Report is what a verified transcript proves, entry by entry.
type Report struct {
	Federation string
	ThreadID   string
	ExportedBy string
	ExportedAt time.Time
	// States are the two states of the thread: the sender of the opening
	// communication first.
	States  [2]string
	Entries []Entry
}

// Entry is one verified envelope: its signed header, its opened payload
// and, if the transcript has one, its verified receipt.
type Entry struct {
	// N is the entry's number, counted from 1.
	N       int
	Header  *pocnetv1.EnvelopeHeader
	Payload *pocnetv1.Payload
	// SigningKey is the id of the sending state's key that signed the
	// envelope.
	SigningKey string
	// Receipt is nil when the transcript carries no receipt for the entry.
	Receipt *Receipt
	// Answers is the number of the entry this one answers; 0 for the first.
	Answers int
}

// Communication returns the communication of a communication or response,
// or nil.
func (e *Entry) Communication() *pocnetv1.Communication { return e.Payload.GetCommunication() }

// Receipt is what a verified receipt attests about an entry.
type Receipt struct {
	Outcome pocnetv1.DeliveryOutcome
	// Reason says why the recipient's policy rejected the envelope.
	Reason     string
	ReceivedAt time.Time
	// KeyID is the id of the recipient state's key that signed it.
	KeyID string
}

// Verify checks a transcript against the directory's keys, offline: every
// envelope's signature, that every payload opens with its payload key (the
// AEAD binds it to the signed header and proves it is the sealed content),
// that the headers make one thread between two states (every answer answers
// an earlier entry, back between the same points of contact), and every
// receipt. The first failure is returned as an *EntryError naming the entry.
//
// A transcript that verifies proves what each state said and what was
// delivered. It cannot prove that it is complete: an envelope that nothing
// later answers can be left out unseen.
func Verify(t *pocnetv1.Transcript, keys envelope.Keys) (*Report, error) {
	if t == nil {
		return nil, invalidf("no transcript")
	}
	if t.GetFederationId() != keys.Federation() {
		return nil, invalidf("transcript of federation %q, but the directory is of %q", t.GetFederationId(), keys.Federation())
	}
	if t.GetThreadId() == "" {
		return nil, invalidf("transcript names no thread")
	}
	if err := t.GetExportedAt().CheckValid(); err != nil {
		return nil, invalidf("exported_at: %v", err)
	}
	if len(t.GetEntries()) == 0 {
		return nil, invalidf("transcript has no entries")
	}
	rep := &Report{
		Federation: t.GetFederationId(), ThreadID: t.GetThreadId(),
		ExportedBy: t.GetExportedByState(), ExportedAt: t.GetExportedAt().AsTime(),
	}
	byID := map[string]int{}
	// The receipts of one delivery share a signed body; the verifier checks
	// each body once.
	rv := envelope.NewReceiptVerifier(keys)
	for i, te := range t.GetEntries() {
		e, err := verifyEntry(t, te, i, rep, byID, keys, rv)
		if err != nil {
			return nil, err
		}
		byID[e.Header.GetId()] = i
		rep.Entries = append(rep.Entries, *e)
		if i == 0 {
			rep.States = [2]string{e.Header.GetFromState(), e.Header.GetToState()}
			// Only the two states hold payload keys; a transcript claiming
			// another exporter is not what it says it is.
			if ex := t.GetExportedByState(); ex != rep.States[0] && ex != rep.States[1] {
				return nil, invalidf("exported by %q, but only %s and %s, the states of the thread, hold it", ex, rep.States[0], rep.States[1])
			}
		}
	}
	return rep, nil
}

func verifyEntry(t *pocnetv1.Transcript, te *pocnetv1.TranscriptEntry, i int, rep *Report, byID map[string]int, keys envelope.Keys, rv *envelope.ReceiptVerifier) (*Entry, error) {
	n := i + 1
	env := te.GetEnvelope()
	if env == nil {
		return nil, &EntryError{Entry: n, Err: errors.New("no envelope")}
	}
	h, err := envelope.Verify(env, keys)
	if err != nil {
		id := ""
		if dh, derr := envelope.DecodeHeader(env); derr == nil {
			id = dh.GetId()
		}
		if errors.Is(err, envelope.ErrBadSignature) {
			return nil, &EntryError{Entry: n, ID: id, Err: fmt.Errorf("the envelope's signature does not verify: its header or payload is not what the sending state signed (%w)", err)}
		}
		return nil, &EntryError{Entry: n, ID: id, Err: fmt.Errorf("envelope: %w", err)}
	}
	id := h.GetId()
	fail := func(format string, args ...any) error {
		return &EntryError{Entry: n, ID: id, Err: fmt.Errorf(format, args...)}
	}
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		return nil, fail("header.id %q is not a canonical UUID", id)
	}
	if j, dup := byID[id]; dup {
		return nil, fail("repeats the envelope id of entry %d", j+1)
	}
	if h.GetPayloadEncoding() != pocnetv1.PayloadEncoding_PAYLOAD_ENCODING_HPKE {
		return nil, fail("payload encoding %v: a transcript carries sealed payloads only", h.GetPayloadEncoding())
	}
	// The AEAD takes the signed header as additional data: a payload that
	// opens under the entry's key is the content sealed with this header,
	// and a key of another envelope opens nothing here.
	p, err := envelope.Decode(env, te.GetPayloadKey())
	if err != nil {
		return nil, fail("the payload does not open with the entry's payload key: the key is not this envelope's, or the payload was changed (%w)", err)
	}
	if err := checkPayload(h, p); err != nil {
		return nil, fail("%v", err)
	}
	if h.GetThreadId() != t.GetThreadId() {
		return nil, fail("belongs to thread %s, not %s", h.GetThreadId(), t.GetThreadId())
	}
	if h.GetFromState() == h.GetToState() {
		return nil, fail("sent by %s to itself", h.GetFromState())
	}
	e := &Entry{N: n, Header: h, Payload: p, SigningKey: env.GetSignature().GetKeyId()}
	if i == 0 {
		if h.GetType() != pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION || h.GetId() != t.GetThreadId() || h.GetInReplyTo() != "" {
			return nil, fail("the first entry must be the communication that opens thread %s, not %s (the opening communication was removed or moved)", t.GetThreadId(), aType(h.GetType()))
		}
	} else {
		switch h.GetType() {
		case pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT, pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE, pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
		default:
			return nil, fail("%s cannot follow the opening communication; only answers can", aType(h.GetType()))
		}
		j, ok := byID[h.GetInReplyTo()]
		if !ok {
			return nil, fail("answers %s, which is no earlier entry of the transcript: an entry was removed or moved", h.GetInReplyTo())
		}
		ph := rep.Entries[j].Header
		if pt := ph.GetType(); pt != pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION && pt != pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE {
			return nil, fail("answers entry %d, %s; only communications and responses are answered", j+1, aType(pt))
		}
		if h.GetFromState() != ph.GetToState() || h.GetToState() != ph.GetFromState() ||
			h.GetFromRole() != ph.GetToRole() || h.GetToRole() != ph.GetFromRole() {
			return nil, fail("answers entry %d (%s/%s → %s/%s) but goes %s/%s → %s/%s; an answer goes back between the same points of contact",
				j+1, ph.GetFromState(), ph.GetFromRole(), ph.GetToState(), ph.GetToRole(),
				h.GetFromState(), h.GetFromRole(), h.GetToState(), h.GetToRole())
		}
		e.Answers = j + 1
	}
	if r := te.GetReceipt(); r != nil {
		got, err := rv.Verify(r, h.GetFromState(), h.GetToState(), id, envelope.Digest(env))
		if err != nil {
			return nil, fail("the receipt does not match the envelope: %w", err)
		}
		at := got.Body.GetReceivedAt().AsTime()
		if created := h.GetCreatedAt().AsTime(); at.Before(created.Add(-MaxClockSkew)) {
			return nil, fail("the receipt says it was received at %s, before the envelope was created at %s", stamp(at), stamp(created))
		}
		e.Receipt = &Receipt{Outcome: got.Entry.GetOutcome(), Reason: got.Entry.GetReason(), ReceivedAt: at, KeyID: r.GetSignature().GetKeyId()}
	}
	return e, nil
}

// checkPayload checks that the payload is what the header says it is.
func checkPayload(h *pocnetv1.EnvelopeHeader, p *pocnetv1.Payload) error {
	switch h.GetType() {
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE:
		c := p.GetCommunication()
		if c == nil {
			return fmt.Errorf("%s without a communication in its payload", aType(h.GetType()))
		}
		if c.GetKind() != h.GetKind() || c.GetUrgency() != h.GetUrgency() {
			return errors.New("the header's kind and urgency differ from the payload's")
		}
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT:
		if p.GetAcknowledgement() == nil {
			return errors.New("an acknowledgement without an acknowledgement in its payload")
		}
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
		if p.GetDecline() == nil {
			return errors.New("a decline without a decline in its payload")
		}
	default:
		return fmt.Errorf("header.type %v is not known", h.GetType())
	}
	return nil
}

// aType names an envelope type with its article, for messages.
func aType(t pocnetv1.EnvelopeType) string {
	switch t {
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION:
		return "a communication"
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT:
		return "an acknowledgement"
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE:
		return "a response"
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
		return "a decline"
	default:
		return "an envelope of unknown type"
	}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
