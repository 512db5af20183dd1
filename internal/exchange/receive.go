package exchange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/policy"
	"github.com/pocnet/pocnet/internal/relay"
	"github.com/pocnet/pocnet/internal/store"
	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// MaxDeliverBatch is the most envelopes a peer may deliver in one call.
const MaxDeliverBatch = 256

func refusal(id string, code pocnetv1.RefusalCode, format string, args ...any) *pocnetv1.DeliveryResult {
	return &pocnetv1.DeliveryResult{EnvelopeId: id, Result: &pocnetv1.DeliveryResult_Refusal{
		Refusal: &pocnetv1.DeliveryRefusal{Code: code, Message: fmt.Sprintf(format, args...)}}}
}

// incoming is an envelope that passed every check that needs no store write.
type incoming struct {
	idx    int
	env    *pocnetv1.Envelope
	opened *envelope.Opened
	reject bool
	reason string
	// expired is an envelope past its expiry: refused unless it is already
	// stored, which only the commit order can tell (storeIncoming).
	expired bool
	// copyOf is the first envelope of the same delivery with the same id.
	copyOf *incoming
}

// Receive takes envelopes delivered by peer's node. Each gets a result: a
// signed receipt once stored durably (DELIVERED, or REJECTED by this state's
// policy), or a refusal with nothing stored. An envelope id already stored
// with the same content gets the same receipt again and stores nothing new.
//
// ready, if not nil, waits until the sender says the envelopes are durable
// on its side (they were sent ahead, RelayService.DeliverAhead). Receive
// checks them meanwhile but stores nothing before ready returns nil; if it
// fails, Receive stores nothing and returns its error.
func (s *Service) Receive(ctx context.Context, peer identity.ID, envs []*pocnetv1.Envelope, keys [][]byte, ready func(context.Context) error) ([]*pocnetv1.DeliveryResult, error) {
	results, err := s.receive(ctx, peer, envs, keys, ready)
	if err == nil && s.cfg.OnReceived != nil {
		s.cfg.OnReceived(peer.State, results)
	}
	return results, err
}

func (s *Service) receive(ctx context.Context, peer identity.ID, envs []*pocnetv1.Envelope, keys [][]byte, ready func(context.Context) error) ([]*pocnetv1.DeliveryResult, error) {
	if len(envs) > MaxDeliverBatch {
		return nil, errorf(ErrInvalidArgument, "envelopes: %d in one call, more than the limit of %d", len(envs), MaxDeliverBatch)
	}
	if len(keys) > len(envs) {
		return nil, errorf(ErrInvalidArgument, "encapsulated_keys: %d for %d envelopes; a call carries at most one per envelope", len(keys), len(envs))
	}
	byContext := envelope.KeysByContext(keys)
	now := s.now()
	results := make([]*pocnetv1.DeliveryResult, len(envs))
	// Verification and decryption dominate the cost of a delivery; they are
	// independent per envelope, so a batch uses every core.
	checked := make([]*incoming, len(envs))
	// The envelopes the sender signed together share one signature,
	// checked once. Every envelope of the call is checked against the same
	// directory version.
	dir := s.cfg.Directory.Directory()
	v := envelope.NewVerifier(dir)
	parallel(len(envs), func(i int) {
		checked[i], results[i] = s.check(dir, v, peer, envs[i], byContext, now)
	})
	var todo, firsts []*incoming
	first := map[string]*incoming{}
	for i, in := range checked {
		if res := results[i]; res != nil {
			s.logRefusal(peer.State, res)
			continue
		}
		in.idx = i
		todo = append(todo, in)
		// The same id twice in one delivery is stored once; the copy gets
		// the first one's result, or a conflict if its content differs.
		id := in.opened.Header.GetId()
		if f, ok := first[id]; ok {
			in.copyOf = f
			continue
		}
		first[id] = in
		firsts = append(firsts, in)
	}
	if len(todo) == 0 {
		return results, s.waitReady(ctx, peer, ready)
	}
	// The receipts are signed before the update, so that the signature
	// does not hold up the commit goroutine (and every writer behind it).
	// They attest every envelope the delivery would store; the update uses
	// them only if the commit order confirms that it stores exactly those
	// (storeIncoming), and signs again otherwise.
	pre := s.presign(peer.State, firsts, now)
	if err := s.waitReady(ctx, peer, ready); err != nil {
		return nil, err
	}
	var stored []*incoming
	err := s.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		var err error
		stored, err = s.storeIncoming(tx, peer.State, firsts, pre, results, now)
		return err
	})
	if err != nil {
		s.log.Error("cannot store delivered envelopes; the peer will retry", zap.String("peer", peer.State), zap.Error(err))
		for _, in := range todo {
			results[in.idx] = refusal(in.opened.Header.GetId(), pocnetv1.RefusalCode_REFUSAL_CODE_UNAVAILABLE, "the recipient node could not store the envelope; retry later")
		}
		return results, nil
	}
	for _, in := range stored {
		s.recent.put(in.opened.Header.GetId(), in.env, in.opened.Digest, in.opened.Payload.GetCommunication())
	}
	for _, in := range todo {
		if f := in.copyOf; f != nil {
			if !bytes.Equal(f.opened.Digest, in.opened.Digest) {
				id := in.opened.Header.GetId()
				results[in.idx] = refusal(id, pocnetv1.RefusalCode_REFUSAL_CODE_CONFLICT, "envelope id %s was already stored with different content", id)
			} else {
				results[in.idx] = results[f.idx]
			}
		}
		s.logRefusal(peer.State, results[in.idx])
	}
	return results, nil
}

// waitReady waits for the sender's word that the envelopes sent ahead are
// durable on its side, if they were sent ahead (ready is not nil). Even a
// call that stores nothing waits: the sender acts on no result of a call it
// may still abandon.
func (s *Service) waitReady(ctx context.Context, peer identity.ID, ready func(context.Context) error) error {
	if ready == nil {
		return nil
	}
	err := ready(ctx)
	if err != nil {
		s.log.Info("delivery sent ahead ended before the sender said its envelopes were durable; nothing was stored, the sender delivers them again",
			zap.String("peer", peer.State), zap.Error(err))
	}
	return err
}

func (s *Service) logRefusal(peer string, res *pocnetv1.DeliveryResult) {
	if r := res.GetRefusal(); r != nil {
		s.log.Warn("envelope refused", zap.String("peer", peer), zap.String("id", res.GetEnvelopeId()),
			zap.Stringer("code", r.GetCode()), zap.String("reason", r.GetMessage()))
	}
}

// presigned is a set of receipts signed ahead of the update.
type presigned struct {
	stored   []*incoming // the envelopes they attest, in leaf order
	receipts []*pocnetv1.Receipt
}

// presign signs the receipts of every envelope in firsts that is to be
// stored if its id is new. A failure only means they are signed in the
// update instead.
func (s *Service) presign(from string, firsts []*incoming, now time.Time) *presigned {
	var p presigned
	for _, in := range firsts {
		if !in.expired {
			p.stored = append(p.stored, in)
		}
	}
	if len(p.stored) == 0 {
		return nil
	}
	receipts, err := envelope.SignReceipts(s.cfg.Signer, from, s.cfg.State, now, receiptEntries(p.stored))
	if err != nil {
		return nil
	}
	p.receipts = receipts
	return &p
}

// receiptEntries returns what the receipts of envelopes about to be stored
// attest.
func receiptEntries(stored []*incoming) []*pocnetv1.ReceiptEntry {
	entries := make([]*pocnetv1.ReceiptEntry, len(stored))
	for i, in := range stored {
		entries[i] = &pocnetv1.ReceiptEntry{EnvelopeId: in.opened.Header.GetId(), EnvelopeDigest: in.opened.Digest,
			Outcome: pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED}
		if in.reject {
			entries[i].Outcome, entries[i].Reason = pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_REJECTED, in.reason
		}
	}
	return entries
}

// check verifies and opens one envelope and applies policy, all before the
// store is involved: a refused envelope leaves no trace.
func (s *Service) check(dir *directory.Directory, v *envelope.Verifier, peer identity.ID, env *pocnetv1.Envelope, keys map[string][]byte, now time.Time) (*incoming, *pocnetv1.DeliveryResult) {
	parsed, err := envelope.Parse(env)
	if err != nil {
		return nil, refusal("", pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE, "%v", err)
	}
	h := parsed.Header()
	id := h.GetId()
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		return nil, refusal(id, pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE, "header.id %q is not a canonical UUID", id)
	}
	// Addressing is checked before the signature: it is cheap, and it tells
	// a misrouting sender plainly what is wrong.
	if h.GetFederationId() != dir.Federation() || h.GetToState() != s.cfg.State {
		return nil, refusal(id, pocnetv1.RefusalCode_REFUSAL_CODE_WRONG_RECIPIENT, "envelope is addressed to %s in federation %q; this is the node of %s in %q",
			h.GetToState(), h.GetFederationId(), s.cfg.State, dir.Federation())
	}
	if h.GetFromState() != peer.State {
		return nil, refusal(id, pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE, "envelope from %s delivered by the node of %s; nodes deliver only their own state's envelopes", h.GetFromState(), peer.State)
	}
	if len(env.GetEncapsulatedKey()) == 0 {
		// The call carries the key once for the envelopes of its context.
		if k, ok := keys[string(h.GetSealingContext())]; ok {
			parsed = parsed.WithKey(k)
		}
	}
	opened, err := v.OpenParsed(parsed, s.cfg.Opener)
	switch {
	case errors.Is(err, directory.ErrUnknownKey):
		// Most likely a key the sender's state published in a directory
		// version this node does not hold yet: the sender retries, and this
		// node asks the sender for its versions meanwhile.
		if s.cfg.DirectoryBehind != nil {
			s.cfg.DirectoryBehind(peer.State)
		}
		return nil, refusal(id, pocnetv1.RefusalCode_REFUSAL_CODE_UNAVAILABLE, "%v; this node is fetching newer directory versions: retry later", err)
	case errors.Is(err, envelope.ErrBadSignature):
		return nil, refusal(id, pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE, "%v", err)
	case err != nil:
		return nil, refusal(id, pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE, "%v", err)
	}
	if err := s.validateIncoming(opened, now); err != nil {
		return nil, refusal(id, pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE, "%v", err)
	}
	// Whether the id is already stored is left to the commit order
	// (storeIncoming), which looks anyway: a retry of an envelope already
	// stored gets its receipt back, even when it has expired since (delivery
	// happened in time), and only after the next sync (a record can be
	// readable a moment before it is durable, and a receipt must never be).
	in := &incoming{env: env, opened: opened}
	if !now.Before(h.GetExpiresAt().AsTime()) {
		in.expired = true
		return in, nil
	}
	if d := s.decide(opened); !d.Accepted {
		in.reject, in.reason = true, d.Reason
	}
	return in, nil
}

// redelivery answers an envelope id already stored: the same receipt for
// the same content, a conflict for anything else.
func redelivery(prev *storev1.MessageRecord, id string, digest []byte) *pocnetv1.DeliveryResult {
	if !bytes.Equal(prev.GetEnvelopeDigest(), digest) || prev.GetView().GetDirection() != pocnetv1.Direction_DIRECTION_INBOUND {
		return refusal(id, pocnetv1.RefusalCode_REFUSAL_CODE_CONFLICT, "envelope id %s was already stored with different content", id)
	}
	return &pocnetv1.DeliveryResult{EnvelopeId: id, Result: &pocnetv1.DeliveryResult_Receipt{Receipt: prev.GetView().GetReceipt()}}
}

// validateIncoming checks that a verified envelope is well formed: the
// signature proves who sent it, not that its sender's software was right.
func (s *Service) validateIncoming(o *envelope.Opened, now time.Time) error {
	h, p := o.Header, o.Payload
	if h.GetCreatedAt() == nil || h.GetExpiresAt() == nil || h.GetCreatedAt().CheckValid() != nil || h.GetExpiresAt().CheckValid() != nil {
		return errors.New("header.created_at and header.expires_at are required")
	}
	if h.GetCreatedAt().AsTime().After(now.Add(maxFutureClockSkew)) {
		return fmt.Errorf("header.created_at %s is in the future", h.GetCreatedAt().AsTime().UTC().Format(time.RFC3339))
	}
	// No envelope lives longer than MaxExpiry: an older creation time can
	// only be a back-dated one, which a retired signing key would otherwise
	// still cover.
	if h.GetCreatedAt().AsTime().Before(now.Add(-MaxExpiry - maxFutureClockSkew)) {
		return fmt.Errorf("header.created_at %s is older than any envelope can live (%v)", h.GetCreatedAt().AsTime().UTC().Format(time.RFC3339), MaxExpiry)
	}
	if err := identity.ValidateRole(h.GetFromRole()); err != nil {
		return fmt.Errorf("header.from_role: %v", err)
	}
	if err := identity.ValidateRole(h.GetToRole()); err != nil {
		return fmt.Errorf("header.to_role: %v", err)
	}
	if _, err := uuid.Parse(h.GetThreadId()); err != nil {
		return fmt.Errorf("header.thread_id %q is not a message id", h.GetThreadId())
	}
	switch h.GetType() {
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION:
		if h.GetInReplyTo() != "" || h.GetThreadId() != h.GetId() {
			return errors.New("a communication starts its own thread and replies to nothing")
		}
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT, pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE, pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
		if _, err := uuid.Parse(h.GetInReplyTo()); err != nil {
			return fmt.Errorf("header.in_reply_to %q is not a message id", h.GetInReplyTo())
		}
	default:
		return fmt.Errorf("header.type %v is not known", h.GetType())
	}
	var ok bool
	switch h.GetType() {
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE:
		c := p.GetCommunication()
		if ok = c != nil; ok {
			if err := validateCommunication(c, "payload.communication", now, false); err != nil {
				return err
			}
			if c.GetKind() != h.GetKind() || c.GetUrgency() != h.GetUrgency() {
				return errors.New("header kind and urgency differ from the payload's")
			}
		}
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT:
		ok = p.GetAcknowledgement() != nil
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
		ok = p.GetDecline() != nil
	}
	if !ok {
		return fmt.Errorf("payload does not match header.type %v", h.GetType())
	}
	return nil
}

// decide applies this state's published policy. An answer is always taken
// when it answers something this state sent to its sender: we asked.
func (s *Service) decide(o *envelope.Opened) policy.Decision {
	h := o.Header
	if h.GetType() != pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION {
		parent, err := s.cfg.Store.Message(h.GetInReplyTo())
		if err != nil || parent.GetView().GetDirection() != pocnetv1.Direction_DIRECTION_OUTBOUND || parent.GetView().GetToState() != h.GetFromState() {
			return policy.Decision{Reason: fmt.Sprintf("%s answers message %s, which %s did not send to %s", typeName(h.GetType()), h.GetInReplyTo(), s.cfg.State, h.GetFromState())}
		}
		if parent.GetView().GetThreadId() != h.GetThreadId() || parent.GetView().GetFromRole() != h.GetToRole() {
			return policy.Decision{Reason: fmt.Sprintf("%s does not match the thread or role of message %s", typeName(h.GetType()), h.GetInReplyTo())}
		}
		return policy.Decision{Accepted: true}
	}
	member, _ := s.cfg.Directory.Directory().Member(s.cfg.State)
	return policy.Check(member, h.GetToRole(), h.GetKind(), o.Payload.GetCommunication().GetLanguage())
}

// storeIncoming writes the checked envelopes of one delivery (firsts: one
// per id) in the caller's update, with their receipts: one signature over
// the tree of the envelopes stored now, checked or made in commit order, so
// that it never attests an envelope that a concurrent delivery of the same
// id got in first. pre, if not nil, holds receipts signed ahead for the
// envelopes expected to be stored; they are used only if exactly those are.
// It returns the envelopes it stored.
func (s *Service) storeIncoming(tx *store.Tx, from string, firsts []*incoming, pre *presigned, results []*pocnetv1.DeliveryResult, now time.Time) ([]*incoming, error) {
	var fresh []*incoming
	for _, in := range firsts {
		id := in.opened.Header.GetId()
		if prev, err := tx.Message(id); err == nil {
			results[in.idx] = redelivery(prev, id, in.opened.Digest)
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if in.expired {
			h := in.opened.Header
			results[in.idx] = refusal(id, pocnetv1.RefusalCode_REFUSAL_CODE_EXPIRED, "envelope expired at %s", h.GetExpiresAt().AsTime().UTC().Format(time.RFC3339))
			continue
		}
		fresh = append(fresh, in)
	}
	if len(fresh) == 0 {
		return nil, nil
	}
	var receipts []*pocnetv1.Receipt
	if pre != nil && slices.Equal(pre.stored, fresh) {
		receipts = pre.receipts
	} else {
		var err error
		if receipts, err = envelope.SignReceipts(s.cfg.Signer, from, s.cfg.State, now, receiptEntries(fresh)); err != nil {
			return nil, err
		}
	}
	for i, in := range fresh {
		if err := s.putIncoming(tx, in, receipts[i], now); err != nil {
			return nil, err
		}
		results[in.idx] = &pocnetv1.DeliveryResult{EnvelopeId: in.opened.Header.GetId(), Result: &pocnetv1.DeliveryResult_Receipt{Receipt: receipts[i]}}
	}
	return fresh, nil
}

// putIncoming writes one new inbound envelope, its indexes and its event.
func (s *Service) putIncoming(tx *store.Tx, in *incoming, receipt *pocnetv1.Receipt, now time.Time) error {
	h := in.opened.Header
	v := messageFromHeader(h, in.opened.Payload)
	v.Direction = pocnetv1.Direction_DIRECTION_INBOUND
	v.LocalState = pocnetv1.LocalState_LOCAL_STATE_NEW
	v.ReceivedAt = timestamppb.New(now)
	v.Receipt = receipt
	rec := &storev1.MessageRecord{View: v, Envelope: in.env, EnvelopeDigest: in.opened.Digest, PayloadKey: in.opened.PayloadKey, Rejected: in.reject}
	if err := tx.PutMessage(rec); err != nil {
		return err
	}
	if in.reject {
		audit(tx, now, pocnetv1.AuditAction_AUDIT_ACTION_REJECTED, s.nodeActor(), v, h.GetFromState(),
			fmt.Sprintf("%s to %s refused by %s's policy: %s", typeName(h.GetType()), h.GetToRole(), s.cfg.State, in.reason))
	} else {
		audit(tx, now, pocnetv1.AuditAction_AUDIT_ACTION_RECEIVED, s.nodeActor(), v, h.GetFromState(),
			fmt.Sprintf("%s from %s/%s to %s", typeName(h.GetType()), h.GetFromState(), h.GetFromRole(), h.GetToRole()))
	}
	if in.reject {
		// Kept for idempotent redelivery only; in no inbox, no event.
		return nil
	}
	if err := tx.IndexMessage(rec, now); err != nil {
		return err
	}
	tx.AppendEvent(&pocnetv1.Event{
		OccurredAt: timestamppb.New(now), Type: pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED,
		MessageId: h.GetId(), ThreadId: v.GetThreadId(), Role: v.GetToRole(),
	})
	if h.GetType() != pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION {
		return s.applyAnswer(tx, v, now)
	}
	return nil
}

// applyAnswer moves the status of the message an answer answers. A late
// answer is applied like any other: respond-by is a wish, not a deadline.
func (s *Service) applyAnswer(tx *store.Tx, answer *pocnetv1.Message, now time.Time) error {
	parent, err := tx.Message(answer.GetInReplyTo())
	if err != nil {
		return err
	}
	st := map[pocnetv1.EnvelopeType]pocnetv1.Status{
		pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT: pocnetv1.Status_STATUS_ACKNOWLEDGED,
		pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE:        pocnetv1.Status_STATUS_RESPONDED,
		pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:         pocnetv1.Status_STATUS_DECLINED,
	}[answer.GetType()]
	pv := parent.GetView()
	pv.AnswerIds = append(pv.AnswerIds, answer.GetId())
	changed := advance(pv, st, answer.GetDeclineReason(), now)
	if err := tx.PutMessage(parent); err != nil {
		return err
	}
	if changed {
		tx.AppendEvent(statusEvent(pv, now))
	}
	return nil
}

// Load returns stored envelopes for delivery (relay.Handler): those of
// messages accepted lately from memory, as sealed, the others from the
// store, each with the encapsulated key of its sealing context added back
// (the store keeps it once per context, not with each envelope).
func (s *Service) Load(ids []string) ([]*pocnetv1.Envelope, error) {
	out := make([]*pocnetv1.Envelope, len(ids))
	var encs map[string][]byte // by sealing context, for this call
	for i, id := range ids {
		if st := s.recent.get(id); st != nil {
			out[i] = st.env
			continue
		}
		env, err := s.cfg.Store.Envelope(id)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", id, err)
		}
		if encs == nil {
			encs = map[string][]byte{}
		}
		if err := s.addContextKey(env, encs); err != nil {
			// The recipient may have the context set up already; if not,
			// it refuses the envelope saying why, and the sender's record
			// shows it. Holding the envelope back would help nobody.
			s.log.Error("envelope sent without its encapsulated key", zap.String("id", id), zap.Error(err))
		}
		out[i] = env
	}
	return out, nil
}

// addContextKey sets env's encapsulated key from the store's copy for its
// sealing context; encs memoizes the keys read.
func (s *Service) addContextKey(env *pocnetv1.Envelope, encs map[string][]byte) error {
	h, err := envelope.DecodeHeader(env)
	if err != nil {
		return err
	}
	id := h.GetSealingContext()
	if len(id) == 0 || len(env.GetEncapsulatedKey()) > 0 {
		return nil
	}
	enc, ok := encs[string(id)]
	if !ok {
		if enc, err = s.cfg.Store.SealingContext(id); err != nil {
			return fmt.Errorf("sealing context %x: %w", id, err)
		}
		encs[string(id)] = enc
	}
	env.EncapsulatedKey = enc
	return nil
}

// digest returns the digest of env, the envelope of message id, from the
// recent cache if it holds that very envelope.
func (s *Service) digest(id string, env *pocnetv1.Envelope) []byte {
	if st := s.recent.get(id); st != nil && st.env == env && st.digest != nil {
		return st.digest
	}
	return envelope.Digest(env)
}

type outcome struct {
	item    relay.Item
	status  pocnetv1.Status
	reason  string
	receipt *pocnetv1.Receipt
}

// Delivered verifies a peer's receipts and commits the new statuses
// (relay.Handler). A receipt that does not verify is not believed: the
// envelope stays queued and is delivered again, until it expires.
func (s *Service) Delivered(ctx context.Context, peer string, items []relay.Item, envs []*pocnetv1.Envelope, results []*pocnetv1.DeliveryResult) ([]relay.Item, error) {
	// The receipts of one delivery share one signed body: the verifier
	// checks it once, then each receipt's inclusion proof.
	rv := envelope.NewReceiptVerifier(s.cfg.Directory.Directory())
	verified := make([]*envelope.Receipted, len(items))
	verr := make([]error, len(items))
	parallel(len(items), func(i int) {
		// A result that is neither a refusal nor a valid receipt (an empty
		// one included) fails here and is delivered again.
		if results[i].GetRefusal() == nil && results[i].GetEnvelopeId() == items[i].ID {
			verified[i], verr[i] = rv.Verify(results[i].GetReceipt(), s.cfg.State, peer, items[i].ID, s.digest(items[i].ID, envs[i]))
		}
	})
	var retry []relay.Item
	var done []outcome
	for i, it := range items {
		res := results[i]
		if res.GetEnvelopeId() != it.ID {
			s.log.Error("peer answered for another envelope", zap.String("peer", peer), zap.String("sent", it.ID), zap.String("answered", res.GetEnvelopeId()))
			retry = append(retry, it)
			continue
		}
		if r := res.GetRefusal(); r != nil {
			if r.GetCode() == pocnetv1.RefusalCode_REFUSAL_CODE_UNAVAILABLE {
				retry = append(retry, it)
				continue
			}
			done = append(done, outcome{item: it, status: pocnetv1.Status_STATUS_UNDELIVERABLE,
				reason: fmt.Sprintf("refused by the node of %s (%s): %s", peer, refusalName(r.GetCode()), r.GetMessage())})
			continue
		}
		got, err := verified[i], verr[i]
		if err != nil {
			s.log.Error("receipt does not verify; will deliver again", zap.String("peer", peer), zap.String("id", it.ID), zap.Error(err))
			retry = append(retry, it)
			continue
		}
		o := outcome{item: it, status: pocnetv1.Status_STATUS_DELIVERED, receipt: res.GetReceipt()}
		if got.Entry.GetOutcome() == pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_REJECTED {
			o.status, o.reason = pocnetv1.Status_STATUS_REJECTED, got.Entry.GetReason()
		}
		done = append(done, o)
	}
	if len(done) == 0 {
		return retry, nil
	}
	if err := s.finish(ctx, done, s.now()); err != nil {
		return nil, err
	}
	return retry, nil
}

// Expired marks items undeliverable (relay.Handler).
func (s *Service) Expired(ctx context.Context, items []relay.Item) error {
	now := s.now()
	done := make([]outcome, len(items))
	for i, it := range items {
		done[i] = outcome{item: it, status: pocnetv1.Status_STATUS_UNDELIVERABLE,
			reason: fmt.Sprintf("expired at %s before the node of %s could take it", it.ExpiresAt.UTC().Format(time.RFC3339), it.Peer)}
	}
	return s.finish(ctx, done, now)
}

// finish commits final delivery outcomes: status, receipt, outbox removal
// and event, one update for the whole batch. It is deferred: the outcome is
// already durable at the peer (a crash before this commit only means one
// more delivery, answered with the same receipt), so it is applied at once
// and made durable by the fsync of the next update, rather than delaying
// that update behind an fsync of its own or adding its work to its group.
func (s *Service) finish(ctx context.Context, done []outcome, now time.Time) error {
	return s.cfg.Store.UpdateDeferred(ctx, func(tx *store.Tx) error {
		for _, o := range done {
			rec, err := tx.Message(o.item.ID)
			if err != nil {
				return err
			}
			if rec.GetOutbox() == nil {
				continue // already settled by an earlier result
			}
			if err := tx.DeleteOutbox(rec.GetOutbox()); err != nil {
				return err
			}
			rec.Outbox = nil
			if o.receipt != nil {
				rec.View.Receipt = o.receipt
			}
			if advance(rec.GetView(), o.status, o.reason, now) {
				tx.AppendEvent(statusEvent(rec.GetView(), now))
			}
			detail := "receipt signed by the node of " + o.item.Peer
			if o.status != pocnetv1.Status_STATUS_DELIVERED {
				detail = o.reason
			}
			audit(tx, now, settledAction(o.status), s.nodeActor(), rec.GetView(), o.item.Peer, detail)
			if err := tx.PutMessage(rec); err != nil {
				return err
			}
		}
		return nil
	})
}

func refusalName(c pocnetv1.RefusalCode) string {
	switch c {
	case pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE:
		return "invalid envelope"
	case pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE:
		return "bad signature"
	case pocnetv1.RefusalCode_REFUSAL_CODE_WRONG_RECIPIENT:
		return "wrong recipient"
	case pocnetv1.RefusalCode_REFUSAL_CODE_CONFLICT:
		return "conflict"
	case pocnetv1.RefusalCode_REFUSAL_CODE_EXPIRED:
		return "expired"
	default:
		return "refused"
	}
}

// parallel calls fn(i) for i in [0, n) on up to GOMAXPROCS goroutines and
// returns when all calls have returned.
func parallel(n int, fn func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}
