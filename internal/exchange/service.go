package exchange

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/relay"
	"github.com/pocnet/pocnet/internal/store"
	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Enqueuer takes committed outbox entries for delivery.
type Enqueuer interface {
	Enqueue(items ...relay.Item)
}

// Config configures a Service.
type Config struct {
	// State is this node's state code.
	State     string
	Directory *directory.Source
	Store     *store.DB
	Signer    *envelope.Signer
	// Sealer seals payloads to the recipients' published keys.
	Sealer *envelope.Sealer
	// Opener opens payloads sealed to this state.
	Opener *envelope.Opener
	// DirectoryBehind, if set, is told of a peer whose envelope names a
	// signing key this node's directory does not list: the peer's state
	// may have published it in a version this node lacks.
	DirectoryBehind func(peer string)
	// OnReceived, if set, is told of this node's answers to every delivery
	// from a peer.
	OnReceived func(peer string, results []*pocnetv1.DeliveryResult)
	// Relay is set with SetRelay when the worker is built after the service.
	Relay  Enqueuer
	Logger *zap.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is the exchange of one node.
type Service struct {
	cfg    Config
	log    *zap.Logger
	relay  Enqueuer
	recent *recent
	// signer signs the envelopes built at the same time together.
	signer *envelope.Batcher
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Directory == nil || cfg.Signer == nil || cfg.Sealer == nil || cfg.Opener == nil {
		return nil, errors.New("exchange: Store, Directory, Signer, Sealer and Opener are required")
	}
	if err := identity.ValidateState(cfg.State); err != nil {
		return nil, fmt.Errorf("exchange: state: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, log: cfg.Logger, relay: cfg.Relay, recent: newRecent(), signer: envelope.NewBatcher(cfg.Signer)}, nil
}

// SetRelay sets the worker that delivers committed outbox entries. It must
// be called before the service handles requests.
func (s *Service) SetRelay(r Enqueuer) { s.relay = r }

func (s *Service) now() time.Time { return s.cfg.Now() }

// storageErr turns a store failure into ErrUnavailable for the caller, and
// logs the detail, which the caller never sees.
func (s *Service) storageErr(op string, err error) error {
	var de *Error
	if errors.As(err, &de) {
		return err
	}
	s.log.Error("storage failure", zap.String("op", op), zap.Error(err))
	return errorf(ErrUnavailable, "%s: the node could not store the request; nothing was stored, retry later (with the same request id)", op)
}

// roleFor returns the PoC role a caller acts for, checking it against the
// node's own directory entry. Admins act for fromRole, which must be a PoC.
func (s *Service) roleFor(caller identity.ID, fromRole string) (string, error) {
	dir := s.cfg.Directory.Directory()
	if caller.IsAdmin() {
		if fromRole == "" {
			return "", fieldErr("from_role", "is required when an admin sends: name the PoC role to send for")
		}
		if _, ok := dir.PointOfContact(s.cfg.State, fromRole); !ok {
			return "", fieldErr("from_role", "%s lists no point of contact with role %q", s.cfg.State, fromRole)
		}
		return fromRole, nil
	}
	if fromRole != "" && fromRole != caller.Role {
		return "", errorf(ErrPermissionDenied, "from_role: an operator of role %q can only send for %q", caller.Role, caller.Role)
	}
	return caller.Role, nil
}

// visible reports whether caller may see a message.
func visible(caller identity.ID, v *pocnetv1.Message) bool {
	return caller.IsAdmin() || store.VisibleRole(v) == caller.Role
}

func (s *Service) checkVisible(caller identity.ID, rec *storev1.MessageRecord) error {
	if rec.GetRejected() {
		// A policy-rejected envelope is in no inbox; only admins see it.
		if caller.IsAdmin() {
			return nil
		}
		return errorf(ErrNotFound, "message %s not found", rec.GetView().GetId())
	}
	if !visible(caller, rec.GetView()) {
		return errorf(ErrPermissionDenied, "message %s belongs to role %q; an operator of role %q may not see it", rec.GetView().GetId(), store.VisibleRole(rec.GetView()), caller.Role)
	}
	return nil
}

func requestDigest(parts ...proto.Message) []byte {
	h := sha256.New()
	for _, p := range parts {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p)
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return h.Sum(nil)
}

// Send accepts a communication from caller for delivery.
func (s *Service) Send(ctx context.Context, caller identity.ID, req *pocnetv1.SendCommunicationRequest) (*pocnetv1.Message, error) {
	now := s.now()
	dir := s.cfg.Directory.Directory()
	if err := validateRequestID("request_id", req.GetRequestId()); err != nil {
		return nil, err
	}
	if req.GetToState() == "" {
		return nil, fieldErr("to_state", "is required")
	}
	if err := identity.ValidateState(req.GetToState()); err != nil {
		return nil, fieldErr("to_state", "%v", err)
	}
	if req.GetToState() == s.cfg.State {
		return nil, fieldErr("to_state", "%s is this node's own state", req.GetToState())
	}
	if _, ok := dir.Member(req.GetToState()); !ok {
		return nil, fieldErr("to_state", "%s is not a member of federation %s", req.GetToState(), dir.Federation())
	}
	if req.GetToRole() == "" {
		return nil, fieldErr("to_role", "is required (a PoC role of %s, see its policy)", req.GetToState())
	}
	if _, ok := dir.PointOfContact(req.GetToState(), req.GetToRole()); !ok {
		return nil, fieldErr("to_role", "%s lists no point of contact with role %q", req.GetToState(), req.GetToRole())
	}
	fromRole, err := s.roleFor(caller, req.GetFromRole())
	if err != nil {
		return nil, err
	}
	if err := validateCommunication(req.GetCommunication(), "communication", now, true); err != nil {
		return nil, err
	}
	expires := now.Add(DefaultExpiry)
	if req.ExpiresAt != nil {
		if err := req.GetExpiresAt().CheckValid(); err != nil {
			return nil, fieldErr("expires_at", "%v", err)
		}
		expires = req.GetExpiresAt().AsTime()
		if !expires.After(now) {
			return nil, fieldErr("expires_at", "%s is in the past", expires.UTC().Format(time.RFC3339))
		}
		if expires.Sub(now) > MaxExpiry {
			return nil, fieldErr("expires_at", "is more than %v ahead", MaxExpiry)
		}
	}
	comm := withDefaults(req.GetCommunication(), nil)
	scope := caller.String()
	// The digest tells a retry from a reused request id; without a request
	// id there is nothing to compare it with.
	var digest []byte
	if rid := req.GetRequestId(); rid != "" {
		digest = requestDigest(&pocnetv1.SendCommunicationRequest{ToState: req.GetToState(), ToRole: req.GetToRole(), FromRole: fromRole, Communication: comm})
		// Fast path for a retry: answer from the first message without
		// building and signing an envelope. Update re-checks under the lock.
		if existing, ok, err := s.cfg.Store.RequestID(scope, rid); err != nil {
			return nil, s.storageErr("send", err)
		} else if ok {
			return s.replay(existing, rid, digest, now)
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, s.storageErr("send", err)
	}
	h := &pocnetv1.EnvelopeHeader{
		Id: id.String(), Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, FederationId: dir.Federation(),
		FromState: s.cfg.State, FromRole: fromRole, ToState: req.GetToState(), ToRole: req.GetToRole(),
		Kind: comm.GetKind(), Urgency: comm.GetUrgency(), CreatedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(expires),
		ThreadId: id.String(), Exercise: comm.GetExercise(),
		RespondBy: comm.GetRespondBy(),
	}
	rec, err := s.outboundRecord(h, &pocnetv1.Payload{Body: &pocnetv1.Payload_Communication{Communication: comm}}, now)
	if err != nil {
		return nil, err
	}
	rec.View.RequestId = req.GetRequestId()
	rec.RequestDigest = digest
	var dup string
	err = s.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		if rid := req.GetRequestId(); rid != "" {
			existing, ok, err := tx.RequestID(scope, rid)
			if err != nil {
				return err
			}
			if ok {
				dup = existing
				return nil
			}
			if err := tx.PutRequestID(scope, rid, h.GetId()); err != nil {
				return err
			}
		}
		return s.putOutbound(tx, rec, caller.String(), now)
	})
	if err != nil {
		return nil, s.storageErr("send", err)
	}
	if dup != "" {
		return s.replay(dup, req.GetRequestId(), digest, now)
	}
	s.log.Info("communication accepted", zap.String("id", h.GetId()), zap.String("to", h.GetToState()+"/"+h.GetToRole()),
		zap.String("from_role", fromRole), zap.Stringer("kind", h.GetKind()), zap.Stringer("urgency", h.GetUrgency()))
	// The record was built for this request and is held by no one else:
	// its view is handed out as it is, not copied.
	return withOverdue(rec.GetView(), now), nil
}

// replay answers a retried request with the message it first created, or
// refuses a request id reused for something else.
func (s *Service) replay(id, rid string, digest []byte, now time.Time) (*pocnetv1.Message, error) {
	rec, err := s.cfg.Store.Message(id)
	if err != nil {
		return nil, s.storageErr("send", err)
	}
	if string(rec.GetRequestDigest()) != string(digest) {
		return nil, errorf(ErrAlreadyExists, "request_id %q was already used for message %s with different content; use a new request id for a new message", rid, id)
	}
	return s.view(rec, now), nil
}

// withDefaults fills the defaults of a communication: kind and urgency of
// the communication answered (urgency routine for a new one), handling code
// no restriction.
func withDefaults(c *pocnetv1.Communication, parent *pocnetv1.Message) *pocnetv1.Communication {
	c = proto.Clone(c).(*pocnetv1.Communication)
	if c.GetKind() == pocnetv1.Kind_KIND_UNSPECIFIED && parent != nil {
		c.Kind = parent.GetCommunication().GetKind()
	}
	if c.GetUrgency() == pocnetv1.Urgency_URGENCY_UNSPECIFIED {
		c.Urgency = pocnetv1.Urgency_URGENCY_ROUTINE
		if parent != nil {
			c.Urgency = parent.GetCommunication().GetUrgency()
		}
	}
	if c.GetHandlingCode() == pocnetv1.HandlingCode_HANDLING_CODE_UNSPECIFIED {
		c.HandlingCode = pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION
	}
	return c
}

// outboundRecord seals and signs a new envelope and builds its record,
// outside the commit goroutine so that signing never holds up other
// writers. Envelopes built by concurrent requests are signed together.
func (s *Service) outboundRecord(h *pocnetv1.EnvelopeHeader, p *pocnetv1.Payload, now time.Time) (*storev1.MessageRecord, error) {
	key, ok := s.cfg.Directory.Directory().SealingKey(h.GetToState())
	if !ok {
		return nil, errorf(ErrFailedPrecondition, "the directory publishes no active encryption key for %s; nothing can be sealed to it", h.GetToState())
	}
	b, err := envelope.Seal(s.cfg.Sealer, key, h, p)
	if err != nil {
		// Every field was validated; what is left is the envelope's total size.
		return nil, errorf(ErrInvalidArgument, "communication: %v", err)
	}
	s.signer.Sign(b.Envelope, h.GetToState())
	v := messageFromHeader(h, p)
	v.Direction = pocnetv1.Direction_DIRECTION_OUTBOUND
	v.Status = pocnetv1.Status_STATUS_ACCEPTED
	v.History = []*pocnetv1.StatusChange{{Status: pocnetv1.Status_STATUS_ACCEPTED, At: timestamppb.New(now)}}
	return &storev1.MessageRecord{
		View:           v,
		Envelope:       b.Envelope,
		EnvelopeDigest: b.Digest,
		PayloadKey:     b.PayloadKey,
		Outbox: &storev1.OutboxEntry{
			MessageId: h.GetId(), PeerState: h.GetToState(), ExpiresAt: h.GetExpiresAt(),
			Urgency: h.GetUrgency(), EnqueuedAt: timestamppb.New(now),
		},
	}, nil
}

// putOutbound writes a new outbound message, its indexes, its outbox entry,
// its ACCEPTED event and its audit record, all in the caller's update.
func (s *Service) putOutbound(tx *store.Tx, rec *storev1.MessageRecord, actor string, now time.Time) error {
	if err := tx.PutMessage(rec); err != nil {
		return err
	}
	if err := tx.IndexMessage(rec, now); err != nil {
		return err
	}
	if err := tx.PutOutbox(rec.GetOutbox()); err != nil {
		return err
	}
	tx.AppendEvent(statusEvent(rec.GetView(), now))
	// The relay gets the envelope as soon as the update is applied, and
	// sends it ahead while the sync runs: the peer stores it only once the
	// sync succeeded.
	tx.OnApplied(func(d *store.Durable) { s.enqueue(d, rec) })
	v := rec.GetView()
	audit(tx, now, sentAction(v.GetType()), actor, v, v.GetToState(),
		fmt.Sprintf("%s %s to %s/%s for %s", typeName(v.GetType()), v.GetCommunication().GetKind(), v.GetToState(), v.GetToRole(), v.GetFromRole()))
	return nil
}

// enqueue hands an outbound message, whose update was just applied, to
// the relay worker; d is the outcome of that update's sync. It runs in the
// commit goroutine (store.Tx.OnApplied).
func (s *Service) enqueue(d *store.Durable, rec *storev1.MessageRecord) {
	s.recent.put(rec.GetView().GetId(), rec.GetEnvelope(), rec.GetEnvelopeDigest(), rec.GetView().GetCommunication())
	if s.relay == nil {
		return
	}
	o := rec.GetOutbox()
	s.relay.Enqueue(relay.Item{ID: o.GetMessageId(), Peer: o.GetPeerState(), Urgency: o.GetUrgency(), ExpiresAt: o.GetExpiresAt().AsTime(), Durable: d})
}

// Recover queues every outbox entry of the store; a node calls it once at
// start, before serving.
func (s *Service) Recover() (int, error) {
	entries, err := s.cfg.Store.Outbox()
	if err != nil {
		return 0, err
	}
	items := make([]relay.Item, 0, len(entries))
	for _, o := range entries {
		items = append(items, relay.Item{ID: o.GetMessageId(), Peer: o.GetPeerState(), Urgency: o.GetUrgency(), ExpiresAt: o.GetExpiresAt().AsTime()})
	}
	if s.relay != nil && len(items) > 0 {
		s.relay.Enqueue(items...)
	}
	return len(items), nil
}

func messageFromHeader(h *pocnetv1.EnvelopeHeader, p *pocnetv1.Payload) *pocnetv1.Message {
	v := &pocnetv1.Message{
		Id: h.GetId(), ThreadId: h.GetThreadId(), InReplyTo: h.GetInReplyTo(), Type: h.GetType(),
		FromState: h.GetFromState(), FromRole: h.GetFromRole(), ToState: h.GetToState(), ToRole: h.GetToRole(),
		CreatedAt: h.GetCreatedAt(), ExpiresAt: h.GetExpiresAt(),
	}
	switch b := p.GetBody().(type) {
	case *pocnetv1.Payload_Communication:
		v.Communication = b.Communication
	case *pocnetv1.Payload_Acknowledgement:
		v.AcknowledgementNote = b.Acknowledgement.GetNote()
	case *pocnetv1.Payload_Decline:
		v.DeclineReason = b.Decline.GetReason()
	}
	return v
}

func statusEvent(v *pocnetv1.Message, now time.Time) *pocnetv1.Event {
	return &pocnetv1.Event{
		OccurredAt: timestamppb.New(now), Type: pocnetv1.EventType_EVENT_TYPE_STATUS_CHANGED,
		MessageId: v.GetId(), ThreadId: v.GetThreadId(), Status: v.GetStatus(), Role: store.VisibleRole(v),
	}
}

// statusRank orders statuses; a status never moves back to a lower rank.
func statusRank(st pocnetv1.Status) int {
	switch st {
	case pocnetv1.Status_STATUS_ACCEPTED:
		return 1
	case pocnetv1.Status_STATUS_DELIVERED:
		return 2
	case pocnetv1.Status_STATUS_ACKNOWLEDGED:
		return 3
	case pocnetv1.Status_STATUS_RESPONDED, pocnetv1.Status_STATUS_DECLINED:
		return 4
	case pocnetv1.Status_STATUS_REJECTED, pocnetv1.Status_STATUS_UNDELIVERABLE:
		return 5
	default:
		return 0
	}
}

// advance records st in v's trail (once) and makes it the current status if
// it ranks higher. It reports whether the current status changed.
func advance(v *pocnetv1.Message, st pocnetv1.Status, reason string, at time.Time) bool {
	seen := false
	for _, h := range v.GetHistory() {
		if h.GetStatus() == st {
			seen = true
		}
	}
	if !seen {
		v.History = append(v.History, &pocnetv1.StatusChange{Status: st, At: timestamppb.New(at), Reason: reason})
	}
	if statusRank(st) > statusRank(v.GetStatus()) {
		v.Status = st
		v.StatusReason = reason
		return true
	}
	return false
}

// view returns what an operator sees of a record at time now.
func (s *Service) view(rec *storev1.MessageRecord, now time.Time) *pocnetv1.Message {
	return withOverdue(proto.Clone(rec.GetView()).(*pocnetv1.Message), now)
}

// withOverdue completes v, what an operator sees of a message, at time now.
func withOverdue(v *pocnetv1.Message, now time.Time) *pocnetv1.Message {
	if v.GetDirection() == pocnetv1.Direction_DIRECTION_OUTBOUND && v.GetCommunication().GetRespondBy() != nil {
		switch v.GetStatus() {
		case pocnetv1.Status_STATUS_ACCEPTED, pocnetv1.Status_STATUS_DELIVERED, pocnetv1.Status_STATUS_ACKNOWLEDGED:
			v.AnswerOverdue = now.After(v.GetCommunication().GetRespondBy().AsTime())
		}
	}
	return v
}
