package node

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/directory"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// recordStart appends the audit record of the node starting, before it
// serves anything. Its detail names what the node runs with (certificate,
// directory, listener, reflection), so that a change of key, certificate or
// directory between two runs shows in the log. A node that cannot record
// this cannot record anything, and does not start.
func (n *Node) recordStart(cert *tls.Certificate, d *directory.Directory) error {
	dirBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(d.Proto())
	if err != nil {
		return fmt.Errorf("audit: directory: %w", err)
	}
	detail := fmt.Sprintf("certificate sha256:%x, directory %s sha256:%x (%d members), listen %s, reflection %v",
		sha256.Sum256(cert.Certificate[0]), d.Federation(), sha256.Sum256(dirBytes), len(d.States()), n.lis.Addr(), n.cfg.Reflection)
	return n.db.AppendAudit(context.Background(), &pocnetv1.AuditRecord{
		OccurredAt: timestamppb.New(n.now()), Action: pocnetv1.AuditAction_AUDIT_ACTION_NODE_STARTED,
		Actor: n.self.String(), Detail: detail,
	})
}

// recordStop appends the audit record of an orderly stop, after the last
// call was served: a start that follows no stop was a crash or a kill.
func (n *Node) recordStop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.db.AppendAudit(ctx, &pocnetv1.AuditRecord{
		OccurredAt: timestamppb.New(n.now()), Action: pocnetv1.AuditAction_AUDIT_ACTION_NODE_STOPPED,
		Actor: n.self.String(), Detail: "orderly stop",
	})
	if err != nil {
		n.log.Error("cannot record the stop in the audit log", zap.Error(err))
	}
}

// recordAdmin appends an administrative action of the node's host operator
// (a signal, a key change) to the audit log.
func (n *Node) recordAdmin(detail string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.db.AppendAudit(ctx, &pocnetv1.AuditRecord{
		OccurredAt: timestamppb.New(n.now()), Action: pocnetv1.AuditAction_AUDIT_ACTION_ADMIN,
		Actor: n.self.String(), Detail: detail,
	})
	if err != nil {
		n.log.Error("cannot record an administrative action in the audit log", zap.String("action", detail), zap.Error(err))
	}
}
