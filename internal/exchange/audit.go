package exchange

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/store"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// The audit log (internal/audit, chained by the store) records each
// transition in the same update as the transition, so that the log and the
// messages can never disagree. Details say what happened, never what a
// message says.

// audit queues one record in tx.
func audit(tx *store.Tx, now time.Time, action pocnetv1.AuditAction, actor string, v *pocnetv1.Message, peer, detail string) {
	tx.Audit(&pocnetv1.AuditRecord{
		OccurredAt: timestamppb.New(now), Action: action, Actor: actor,
		MessageId: v.GetId(), InReplyTo: v.GetInReplyTo(), PeerState: peer, Detail: detail,
	})
}

// nodeActor is this node's identity, the actor of what the node does by
// itself (storing a delivery, settling an outcome).
func (s *Service) nodeActor() string {
	return identity.Node(s.cfg.Directory.Directory().Federation(), s.cfg.State).String()
}

// sentAction is the audit action of an outbound envelope of type t.
func sentAction(t pocnetv1.EnvelopeType) pocnetv1.AuditAction {
	switch t {
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT:
		return pocnetv1.AuditAction_AUDIT_ACTION_ACKNOWLEDGED
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE:
		return pocnetv1.AuditAction_AUDIT_ACTION_RESPONDED
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
		return pocnetv1.AuditAction_AUDIT_ACTION_DECLINED
	default:
		return pocnetv1.AuditAction_AUDIT_ACTION_SENT
	}
}

// settledAction is the audit action of a final delivery status.
func settledAction(st pocnetv1.Status) pocnetv1.AuditAction {
	switch st {
	case pocnetv1.Status_STATUS_DELIVERED:
		return pocnetv1.AuditAction_AUDIT_ACTION_DELIVERED
	case pocnetv1.Status_STATUS_REJECTED:
		return pocnetv1.AuditAction_AUDIT_ACTION_REJECTED
	default:
		return pocnetv1.AuditAction_AUDIT_ACTION_UNDELIVERABLE
	}
}

// opened records that caller read inbound messages. A read that cannot be
// recorded is refused: no operator reads without a trace.
func (s *Service) opened(ctx context.Context, caller identity.ID, msgs []*pocnetv1.Message, how string) error {
	var inbound []*pocnetv1.Message
	for _, m := range msgs {
		if m.GetDirection() == pocnetv1.Direction_DIRECTION_INBOUND {
			inbound = append(inbound, m)
		}
	}
	if len(inbound) == 0 {
		return nil
	}
	now := s.now()
	err := s.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		for _, m := range inbound {
			audit(tx, now, pocnetv1.AuditAction_AUDIT_ACTION_OPENED, caller.String(), m, m.GetFromState(),
				fmt.Sprintf("%s by %s", how, caller.Role))
		}
		return nil
	})
	if err != nil {
		return s.storageErr("record opening", err)
	}
	return nil
}
