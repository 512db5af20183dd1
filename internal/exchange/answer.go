package exchange

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/store"
	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// inbound loads an inbound message caller may answer or mark.
func (s *Service) inbound(caller identity.ID, id string) (*storev1.MessageRecord, error) {
	rec, err := s.get(caller, id)
	if err != nil {
		return nil, err
	}
	if rec.GetView().GetDirection() != pocnetv1.Direction_DIRECTION_INBOUND {
		return nil, errorf(ErrFailedPrecondition, "message %s was sent by this state; only received messages can be answered or marked", id)
	}
	return rec, nil
}

func (s *Service) get(caller identity.ID, id string) (*storev1.MessageRecord, error) {
	if id == "" {
		return nil, fieldErr("id", "is required")
	}
	if _, err := uuid.Parse(id); err != nil {
		return nil, fieldErr("id", "%q is not a message id", id)
	}
	rec, err := s.cfg.Store.Message(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(ErrNotFound, "message %s not found", id)
	}
	if err != nil {
		return nil, s.storageErr("read", err)
	}
	if err := s.checkVisible(caller, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// Get returns one message.
func (s *Service) Get(ctx context.Context, caller identity.ID, id string) (*pocnetv1.Message, error) {
	rec, err := s.get(caller, id)
	if err != nil {
		return nil, err
	}
	m := s.view(rec, s.now())
	if err := s.opened(ctx, caller, []*pocnetv1.Message{m}, "read"); err != nil {
		return nil, err
	}
	return m, nil
}

// List returns a page of messages visible to caller, newest first.
func (s *Service) List(ctx context.Context, caller identity.ID, req *pocnetv1.ListMessagesRequest) ([]*pocnetv1.Message, string, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > 500:
		return nil, "", fieldErr("page_size", "must be between 0 and 500")
	case size == 0:
		size = 50
	}
	if _, ok := pocnetv1.Direction_name[int32(req.GetDirection())]; !ok {
		return nil, "", fieldErr("direction", "unknown direction %d", int32(req.GetDirection()))
	}
	var cursor []byte
	if t := req.GetPageToken(); t != "" {
		var err error
		if cursor, err = base64.RawURLEncoding.DecodeString(t); err != nil || len(cursor) != 24 {
			return nil, "", fieldErr("page_token", "is not a token this node issued")
		}
	}
	role := caller.Role
	if caller.IsAdmin() {
		role = ""
	}
	keep := func(r *storev1.MessageRecord) bool {
		return req.GetIncludeArchived() || r.GetView().GetLocalState() != pocnetv1.LocalState_LOCAL_STATE_ARCHIVED
	}
	recs, next, err := s.cfg.Store.List(req.GetDirection(), role, cursor, size, keep)
	if err != nil {
		return nil, "", s.storageErr("list", err)
	}
	now := s.now()
	out := make([]*pocnetv1.Message, len(recs))
	for i, r := range recs {
		out[i] = s.view(r, now)
	}
	// A list carries the messages whole: each inbound one is read.
	if err := s.opened(ctx, caller, out, "listed"); err != nil {
		return nil, "", err
	}
	var token string
	if next != nil {
		token = base64.RawURLEncoding.EncodeToString(next)
	}
	return out, token, nil
}

// Thread returns the messages of id's thread that caller may see, in order.
func (s *Service) Thread(ctx context.Context, caller identity.ID, id string) ([]*pocnetv1.Message, error) {
	rec, err := s.get(caller, id)
	if err != nil {
		return nil, err
	}
	recs, err := s.cfg.Store.Thread(rec.GetView().GetThreadId())
	if err != nil {
		return nil, s.storageErr("thread", err)
	}
	now := s.now()
	var out []*pocnetv1.Message
	for _, r := range recs {
		if !r.GetRejected() && visible(caller, r.GetView()) {
			out = append(out, s.view(r, now))
		}
	}
	if err := s.opened(ctx, caller, out, "read in its thread"); err != nil {
		return nil, err
	}
	return out, nil
}

// SetLocalState marks an inbound message. It is never sent anywhere: what a
// state has read is its own business.
func (s *Service) SetLocalState(ctx context.Context, caller identity.ID, id string, st pocnetv1.LocalState) (*pocnetv1.Message, error) {
	if _, ok := pocnetv1.LocalState_name[int32(st)]; !ok || st == pocnetv1.LocalState_LOCAL_STATE_UNSPECIFIED {
		return nil, fieldErr("local_state", "must be LOCAL_STATE_NEW, LOCAL_STATE_READ or LOCAL_STATE_ARCHIVED")
	}
	if _, err := s.inbound(caller, id); err != nil {
		return nil, err
	}
	err := s.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		rec, err := tx.Message(id)
		if err != nil {
			return err
		}
		was := rec.GetView().GetLocalState()
		rec.View.LocalState = st
		audit(tx, s.now(), pocnetv1.AuditAction_AUDIT_ACTION_LOCAL_STATE_CHANGED, caller.String(), rec.GetView(), rec.GetView().GetFromState(),
			fmt.Sprintf("%s -> %s", was, st))
		return tx.PutMessage(rec)
	})
	if err != nil {
		return nil, s.storageErr("set local state", err)
	}
	return s.existing(id, s.now())
}

// Acknowledge sends an acknowledgement of an inbound communication. A second
// acknowledgement returns the first.
func (s *Service) Acknowledge(ctx context.Context, caller identity.ID, id, note string) (*pocnetv1.Message, error) {
	if err := validText("note", note, MaxShortTextBytes, false); err != nil {
		return nil, err
	}
	return s.answer(ctx, caller, id, pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT,
		&pocnetv1.Payload{Body: &pocnetv1.Payload_Acknowledgement{Acknowledgement: &pocnetv1.Acknowledgement{Note: note}}}, "", nil)
}

// Decline declines an inbound communication; the reason is optional. A
// second decline returns the first.
func (s *Service) Decline(ctx context.Context, caller identity.ID, id, reason string) (*pocnetv1.Message, error) {
	if err := validText("reason", reason, MaxDeclineReason, false); err != nil {
		return nil, err
	}
	return s.answer(ctx, caller, id, pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE,
		&pocnetv1.Payload{Body: &pocnetv1.Payload_Decline{Decline: &pocnetv1.Decline{Reason: reason}}}, "", nil)
}

// Respond answers an inbound communication with a communication of its own.
func (s *Service) Respond(ctx context.Context, caller identity.ID, id, requestID string, comm *pocnetv1.Communication) (*pocnetv1.Message, error) {
	if err := validateRequestID("request_id", requestID); err != nil {
		return nil, err
	}
	if comm == nil {
		return nil, fieldErr("communication", "is required")
	}
	return s.answer(ctx, caller, id, pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE, nil, requestID, comm)
}

// answer builds, stores and queues an answer of type typ to inbound message
// id. Answers happen only here, only because an operator asked.
func (s *Service) answer(ctx context.Context, caller identity.ID, id string, typ pocnetv1.EnvelopeType, p *pocnetv1.Payload, requestID string, comm *pocnetv1.Communication) (*pocnetv1.Message, error) {
	now := s.now()
	parent, err := s.inbound(caller, id)
	if err != nil {
		return nil, err
	}
	pv := parent.GetView()
	if parent.GetRejected() {
		return nil, errorf(ErrFailedPrecondition, "message %s was refused by this state's policy and cannot be answered", id)
	}
	if pv.GetType() != pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION && pv.GetType() != pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE {
		return nil, errorf(ErrFailedPrecondition, "message %s is an %s; only communications and responses can be answered", id, typeName(pv.GetType()))
	}
	if existing, err := answerConflict(parent, typ); err != nil || existing != "" {
		if err != nil {
			return nil, err
		}
		return s.existing(existing, now)
	}
	scope := caller.String()
	var digest []byte
	if typ == pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE {
		// Validated only now: a response takes the kind and urgency of the
		// communication it answers unless it says otherwise.
		comm = withDefaults(comm, pv)
		if err := validateCommunication(comm, "communication", now, true); err != nil {
			return nil, err
		}
		p = &pocnetv1.Payload{Body: &pocnetv1.Payload_Communication{Communication: comm}}
		digest = requestDigest(&pocnetv1.RespondRequest{Id: id, Communication: comm})
		if requestID != "" {
			if dup, ok, err := s.cfg.Store.RequestID(scope, requestID); err != nil {
				return nil, s.storageErr("respond", err)
			} else if ok {
				return s.replay(dup, requestID, digest, now)
			}
		}
	}
	newID, err := uuid.NewV7()
	if err != nil {
		return nil, s.storageErr("answer", err)
	}
	kind, urgency := pv.GetCommunication().GetKind(), pv.GetCommunication().GetUrgency()
	var respondBy *timestamppb.Timestamp
	exercise := pv.GetCommunication().GetExercise()
	if comm != nil {
		kind, urgency, respondBy, exercise = comm.GetKind(), comm.GetUrgency(), comm.GetRespondBy(), comm.GetExercise() || exercise
	}
	h := &pocnetv1.EnvelopeHeader{
		Id: newID.String(), Type: typ, FederationId: s.cfg.Directory.Directory().Federation(),
		FromState: s.cfg.State, FromRole: pv.GetToRole(), ToState: pv.GetFromState(), ToRole: pv.GetFromRole(),
		Kind: kind, Urgency: urgency, CreatedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(now.Add(DefaultExpiry)),
		InReplyTo: pv.GetId(), ThreadId: pv.GetThreadId(), Exercise: exercise,
		RespondBy: respondBy,
	}
	rec, err := s.outboundRecord(h, p, now)
	if err != nil {
		return nil, err
	}
	rec.View.RequestId = requestID
	rec.RequestDigest = digest
	var existing string
	err = s.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		// Re-check under the commit order: two operators may answer at once.
		cur, err := tx.Message(id)
		if err != nil {
			return err
		}
		if existing, err = answerConflict(cur, typ); err != nil || existing != "" {
			return err
		}
		if requestID != "" {
			if dup, ok, err := tx.RequestID(scope, requestID); err != nil {
				return err
			} else if ok {
				existing = dup
				return nil
			}
			if err := tx.PutRequestID(scope, requestID, h.GetId()); err != nil {
				return err
			}
		}
		switch typ {
		case pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT:
			cur.AcknowledgementId = h.GetId()
		case pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
			cur.DeclineId = h.GetId()
		case pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE:
			cur.Responded = true
		}
		cur.View.AnswerIds = append(cur.View.AnswerIds, h.GetId())
		if cur.GetView().GetLocalState() == pocnetv1.LocalState_LOCAL_STATE_NEW {
			cur.View.LocalState = pocnetv1.LocalState_LOCAL_STATE_READ
		}
		if err := tx.PutMessage(cur); err != nil {
			return err
		}
		return s.putOutbound(tx, rec, caller.String(), now)
	})
	if err != nil {
		return nil, s.storageErr(typeName(typ), err)
	}
	if existing != "" {
		if requestID != "" && typ == pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE {
			return s.replay(existing, requestID, digest, now)
		}
		return s.existing(existing, now)
	}
	s.log.Info("answer accepted", zap.String("id", h.GetId()), zap.String("type", typeName(typ)), zap.String("in_reply_to", id),
		zap.String("to", h.GetToState()+"/"+h.GetToRole()))
	// The record was built for this request and is held by no one else.
	return withOverdue(rec.GetView(), now), nil
}

// answerConflict returns the id of an earlier identical answer (ack or
// decline again), or an error when typ contradicts an earlier answer.
func answerConflict(rec *storev1.MessageRecord, typ pocnetv1.EnvelopeType) (string, error) {
	id := rec.GetView().GetId()
	switch typ {
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT:
		return rec.GetAcknowledgementId(), nil
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
		if rec.GetDeclineId() != "" {
			return rec.GetDeclineId(), nil
		}
		if rec.GetResponded() {
			return "", errorf(ErrFailedPrecondition, "message %s was already responded to; a decline cannot follow a response", id)
		}
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE:
		if rec.GetDeclineId() != "" {
			return "", errorf(ErrFailedPrecondition, "message %s was declined (%s); a response cannot follow a decline", id, rec.GetDeclineId())
		}
	}
	return "", nil
}

func (s *Service) existing(id string, now time.Time) (*pocnetv1.Message, error) {
	rec, err := s.cfg.Store.Message(id)
	if err != nil {
		return nil, s.storageErr("read", err)
	}
	return s.view(rec, now), nil
}

func typeName(t pocnetv1.EnvelopeType) string {
	switch t {
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION:
		return "communication"
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT:
		return "acknowledgement"
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE:
		return "response"
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
		return "decline"
	default:
		return "envelope"
	}
}

// Events calls send for each event visible to caller after seq after, then
// for each new one as it is committed, until ctx ends or send fails.
func (s *Service) Events(ctx context.Context, caller identity.ID, after uint64, send func(*pocnetv1.Event) error) error {
	// A watch hands out every message of the caller's role, whole, from
	// after on: it is recorded once, when it starts, with its cursor; the
	// event log says what it then carried.
	now := s.now()
	err := s.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		audit(tx, now, pocnetv1.AuditAction_AUDIT_ACTION_OPENED, caller.String(), &pocnetv1.Message{}, "",
			fmt.Sprintf("watch of events after seq %d started by %s", after, caller.Role))
		return nil
	})
	if err != nil {
		return s.storageErr("record watch", err)
	}
	for {
		last, changed := s.cfg.Store.LastSeq()
		if after > last {
			return fieldErr("after_seq", "%d is beyond the newest event %d of this node", after, last)
		}
		for after < last {
			evs, err := s.cfg.Store.Events(after, 256)
			if err != nil {
				return s.storageErr("watch", err)
			}
			if len(evs) == 0 {
				break
			}
			for _, ev := range evs {
				// A committed batch is readable a moment before its seqs are
				// published as the newest; never hand out a seq beyond the
				// published one, so a client may always resume from it.
				if ev.GetSeq() > last {
					break
				}
				after = ev.GetSeq()
				if !caller.IsAdmin() && ev.GetRole() != caller.Role {
					continue
				}
				if rec, err := s.message(ev.GetMessageId()); err == nil {
					ev.Message = s.view(rec, s.now())
				}
				if err := send(ev); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}
