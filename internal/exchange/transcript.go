package exchange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/store"
	"github.com/pocnet/pocnet/internal/transcript"
	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// ThreadRecords returns every record this node holds of the thread of
// message id, each with its envelope, payload key and receipt. The caller
// must be allowed to see the message (as for Get) and every record of the
// thread: evidence of a thread is given whole or not at all.
func (s *Service) ThreadRecords(_ context.Context, caller identity.ID, id string) ([]*storev1.MessageRecord, error) {
	rec, err := s.get(caller, id)
	if err != nil {
		return nil, err
	}
	recs, err := s.cfg.Store.Thread(rec.GetView().GetThreadId())
	if err != nil {
		return nil, s.storageErr("thread", err)
	}
	// A communication this state's policy rejected is kept (for idempotent
	// redelivery) but in no index; only an admin gets here with one, and
	// its thread is that communication alone.
	if !slices.ContainsFunc(recs, func(r *storev1.MessageRecord) bool { return r.GetView().GetId() == rec.GetView().GetId() }) {
		recs = append(recs, rec)
	}
	for _, r := range recs {
		if err := s.checkVisible(caller, r); err != nil {
			return nil, errorf(ErrPermissionDenied, "thread %s holds message %s of role %q; an operator of role %q cannot take the thread as a whole",
				rec.GetView().GetThreadId(), r.GetView().GetId(), store.VisibleRole(r.GetView()), caller.Role)
		}
	}
	return recs, nil
}

// ExportThread returns the transcript of the thread of message id. It is
// refused for a thread holding a communication marked no onward
// dissemination: a transcript is made to be shown to third parties, and
// such a thread may leave the two states only with both states' consent,
// as a disclosure bundle.
func (s *Service) ExportThread(ctx context.Context, caller identity.ID, id string) (*pocnetv1.Transcript, error) {
	recs, err := s.ThreadRecords(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if c := r.GetView().GetCommunication(); c.GetHandlingCode() == pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION {
			return nil, errorf(ErrFailedPrecondition,
				"message %s (%s from %s) is marked no onward dissemination (HANDLING_CODE_NO_ONWARD_DISSEMINATION): its thread cannot be exported for third parties; it can leave %s and %s only as a disclosure bundle both states consent to (RequestDisclosure: pocctl disclosure request %s --purpose ...)",
				r.GetView().GetId(), typeName(r.GetView().GetType()), r.GetView().GetFromState(),
				r.GetView().GetFromState(), r.GetView().GetToState(), r.GetView().GetThreadId())
		}
	}
	t, err := s.build(recs)
	if err != nil {
		return nil, err
	}
	if err := s.recordExport(ctx, caller, t.GetThreadId(), fmt.Sprintf("transcript of %d envelopes exported", len(t.GetEntries()))); err != nil {
		return nil, err
	}
	s.log.Info("thread exported", zap.String("thread", t.GetThreadId()), zap.Int("entries", len(t.GetEntries())), zap.String("by", caller.String()))
	return t, nil
}

func (s *Service) build(recs []*storev1.MessageRecord) (*pocnetv1.Transcript, error) {
	t, err := transcript.Build(recs, s.cfg.State, s.now())
	if err != nil {
		// A node's records of a thread are whole unless its store is
		// damaged; the caller cannot fix that, but must not get a partial
		// record as if it were the thread.
		s.log.Error("thread records do not make a transcript", zap.Error(err))
		return nil, errorf(ErrFailedPrecondition, "this node's records of the thread do not make a whole transcript (%v); the operator's log has the detail", err)
	}
	return t, nil
}

// RequestDisclosure exports the thread of message id and signs this
// state's consent to disclose it for purpose. The bundle is not valid until
// the other state adds its consent (ConsentDisclosure at its node). Only an
// admin may call it: disclosure is a decision of the state, not of a PoC.
func (s *Service) RequestDisclosure(ctx context.Context, caller identity.ID, id, purpose string) (*pocnetv1.DisclosureBundle, error) {
	if !caller.IsAdmin() {
		return nil, errorf(ErrPermissionDenied, "disclosing a thread is a decision of the state: only an admin operator of %s may request it", s.cfg.State)
	}
	if err := validPurpose(purpose); err != nil {
		return nil, err
	}
	recs, err := s.ThreadRecords(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	t, err := s.build(recs)
	if err != nil {
		return nil, err
	}
	// The state signs only what anyone can verify: a transcript its own
	// directory does not accept would make its consent worthless, and
	// signing it would hide the problem.
	if _, err := transcript.Verify(t, s.cfg.Directory.Directory()); err != nil {
		return nil, errorf(ErrFailedPrecondition, "this node's copy of thread %s does not verify against the directory, so %s does not consent to disclose it: %v", t.GetThreadId(), s.cfg.State, err)
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(t)
	if err != nil {
		return nil, s.storageErr("disclosure", err)
	}
	c := envelope.SignConsent(s.cfg.Signer, transcript.Digest(raw), s.cfg.State, s.now(), purpose)
	if err := s.recordExport(ctx, caller, t.GetThreadId(), "disclosure requested, consent of "+s.cfg.State+" signed for: "+purpose); err != nil {
		return nil, err
	}
	s.log.Info("disclosure requested", zap.String("thread", t.GetThreadId()), zap.String("purpose", purpose), zap.String("by", caller.String()))
	return &pocnetv1.DisclosureBundle{Transcript: raw, Consents: []*pocnetv1.Consent{c}}, nil
}

// ConsentDisclosure adds this state's consent to a bundle the other state
// of the thread requested, after checking it: the bundle verifies, carries
// the other state's consent, and its transcript holds exactly the envelopes
// this node holds of the thread, byte for byte. A state consents only to
// what it can see is its own record of the thread. A bundle this state
// already consented to is returned as it is.
func (s *Service) ConsentDisclosure(ctx context.Context, caller identity.ID, b *pocnetv1.DisclosureBundle) (*pocnetv1.DisclosureBundle, error) {
	if !caller.IsAdmin() {
		return nil, errorf(ErrPermissionDenied, "disclosing a thread is a decision of the state: only an admin operator of %s may consent to it", s.cfg.State)
	}
	if b == nil {
		return nil, fieldErr("bundle", "is required")
	}
	d, err := transcript.CheckBundle(b, s.cfg.Directory.Directory())
	if err != nil {
		return nil, fieldErr("bundle", "%v", err)
	}
	rep := d.Report
	other := rep.States[0]
	switch s.cfg.State {
	case rep.States[0]:
		other = rep.States[1]
	case rep.States[1]:
	default:
		return nil, errorf(ErrFailedPrecondition, "thread %s is between %s and %s; %s is not a party to it and does not consent to its disclosure", rep.ThreadID, rep.States[0], rep.States[1], s.cfg.State)
	}
	if !slices.Contains(d.Missing, s.cfg.State) {
		return b, nil
	}
	if slices.Contains(d.Missing, other) {
		return nil, errorf(ErrFailedPrecondition, "the bundle carries no consent of %s: the state that requests a disclosure consents first (RequestDisclosure at its node), then %s adds its consent", other, s.cfg.State)
	}
	recs, err := s.ThreadRecords(ctx, caller, rep.ThreadID)
	if errors.Is(err, ErrNotFound) {
		return nil, errorf(ErrFailedPrecondition, "this node holds no thread %s; %s consents only to a transcript it can check against its own copy", rep.ThreadID, s.cfg.State)
	}
	if err != nil {
		return nil, err
	}
	if err := sameEnvelopes(d.Transcript, recs, s.cfg.State); err != nil {
		return nil, err
	}
	c := envelope.SignConsent(s.cfg.Signer, d.Digest, s.cfg.State, s.now(), d.Purpose)
	out := &pocnetv1.DisclosureBundle{Transcript: b.GetTranscript(), Consents: append(slices.Clone(b.GetConsents()), c)}
	// The bundle must verify for anyone holding the directory; if it does
	// not (this node's clock far behind the requester's, say), handing it
	// out would look like consent and prove nothing.
	if _, err := transcript.VerifyDisclosure(out, s.cfg.Directory.Directory()); err != nil {
		return nil, errorf(ErrFailedPrecondition, "the bundle with %s's consent does not verify, so it is not returned: %v", s.cfg.State, err)
	}
	if err := s.recordExport(ctx, caller, rep.ThreadID, "disclosure requested by "+other+", consent of "+s.cfg.State+" signed for: "+d.Purpose); err != nil {
		return nil, err
	}
	s.log.Info("disclosure consented", zap.String("thread", rep.ThreadID), zap.String("requested_by", other),
		zap.String("purpose", d.Purpose), zap.String("by", caller.String()))
	return out, nil
}

// sameEnvelopes checks that t holds exactly the envelopes of recs, byte
// for byte, with the same payload keys.
func sameEnvelopes(t *pocnetv1.Transcript, recs []*storev1.MessageRecord, state string) error {
	own := make(map[string]*storev1.MessageRecord, len(recs))
	for _, r := range recs {
		own[r.GetView().GetId()] = r
	}
	differ := func(format string, args ...any) error {
		return errorf(ErrFailedPrecondition, "the bundle's transcript differs from %s's own copy of thread %s: %s; %s does not consent to it",
			state, t.GetThreadId(), fmt.Sprintf(format, args...), state)
	}
	in := map[string]bool{}
	for i, e := range t.GetEntries() {
		// The bundle verified: every header decodes.
		h, _ := envelope.DecodeHeader(e.GetEnvelope())
		id := h.GetId()
		r, ok := own[id]
		if !ok {
			return differ("entry %d (%s) is not an envelope this node holds", i+1, id)
		}
		if !sameEnvelope(e.GetEnvelope(), r.GetEnvelope()) {
			return differ("entry %d (%s) is not the envelope this node holds under that id", i+1, id)
		}
		if !bytes.Equal(e.GetPayloadKey(), r.GetPayloadKey()) {
			return differ("entry %d (%s) carries another payload key", i+1, id)
		}
		// A receipt is an attestation one of the two states signed: the
		// other one consents only to receipts it holds itself, byte for
		// byte. A receipt left out attests nothing and is not a difference.
		if rc := e.GetReceipt(); rc != nil {
			own := r.GetView().GetReceipt()
			if own == nil {
				return differ("entry %d (%s) carries a receipt this node does not hold", i+1, id)
			}
			if !proto.Equal(rc, own) {
				return differ("entry %d (%s) carries another receipt than the one this node holds", i+1, id)
			}
		}
		in[id] = true
	}
	var lacking []string
	for _, r := range recs {
		if !in[r.GetView().GetId()] {
			lacking = append(lacking, fmt.Sprintf("%s (%s from %s, created %s)", r.GetView().GetId(), typeName(r.GetView().GetType()),
				r.GetView().GetFromState(), r.GetView().GetCreatedAt().AsTime().UTC().Format(time.RFC3339)))
		}
	}
	if len(lacking) > 0 {
		return differ("it lacks %s", strings.Join(lacking, ", "))
	}
	return nil
}

func sameEnvelope(a, b *pocnetv1.Envelope) bool {
	return bytes.Equal(a.GetHeader(), b.GetHeader()) && bytes.Equal(a.GetPayload(), b.GetPayload()) &&
		a.GetSignature().GetAlgorithm() == b.GetSignature().GetAlgorithm() &&
		a.GetSignature().GetKeyId() == b.GetSignature().GetKeyId() &&
		bytes.Equal(a.GetSignature().GetValue(), b.GetSignature().GetValue())
}

func validPurpose(p string) error {
	if strings.TrimSpace(p) == "" {
		return fieldErr("purpose", "is required: say for what, and for whom, the thread is to be disclosed")
	}
	return validText("purpose", p, transcript.MaxPurpose, true)
}

// recordExport puts a thread leaving the node (a transcript, a consent) in
// the audit log before it is handed out: nothing leaves without a trace.
func (s *Service) recordExport(ctx context.Context, caller identity.ID, threadID, detail string) error {
	now := s.now()
	err := s.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		audit(tx, now, pocnetv1.AuditAction_AUDIT_ACTION_EXPORTED, caller.String(), &pocnetv1.Message{Id: threadID}, "", detail)
		return nil
	})
	if err != nil {
		return s.storageErr("record export", err)
	}
	return nil
}
