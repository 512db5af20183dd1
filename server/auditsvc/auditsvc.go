// Package auditsvc adapts AuditService, through which a state's admin
// operators export the node's audit log for verification, to the store's
// log. It validates the request, reads entries exactly as stored and streams
// them; it never decodes, re-serializes or judges them: verification is the
// reader's, against bytes the node cannot have prettified.
package auditsvc

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/auth"
	"github.com/pocnet/pocnet/server/rpcerr"
)

// Log is the node's audit log; *store.DB implements it.
type Log interface {
	// AuditHead returns the newest record's seq and hash.
	AuditHead() (uint64, []byte)
	// AuditRange returns up to limit entries with after < seq <= through and
	// the seq to resume after.
	AuditRange(after, through uint64, limit int) ([]*pocnetv1.AuditEntry, uint64, error)
	// AppendAudit commits records durably.
	AppendAudit(ctx context.Context, recs ...*pocnetv1.AuditRecord) error
}

// PageEntries and PageBytes bound one response of an export: at most
// PageEntries entries and, past the first entry, PageBytes bytes, so that a
// response stays well below gRPC's default message limit.
const (
	PageEntries = 256
	PageBytes   = 1 << 20
)

// Config configures the service.
type Config struct {
	Log Log
	// Now is the clock of the export records; nil means time.Now.
	Now func() time.Time
}

// Service implements pocnet.v1.AuditService.
type Service struct {
	pocnetv1.UnsafeAuditServiceServer
	cfg Config
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}
}

// Register registers the service on s.
func Register(s grpc.ServiceRegistrar, svc *Service) {
	pocnetv1.RegisterAuditServiceServer(s, svc)
}

// admin returns the caller, who must be an admin operator. The interceptor
// refuses everyone else already; the check is repeated here because the log
// shows every operator's actions and must never leak through a wiring
// mistake.
func admin(ctx context.Context) (identity.ID, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return caller, err
	}
	if !caller.IsAdmin() {
		return caller, status.Errorf(codes.PermissionDenied, "%s is not an admin operator; only admin operators may read the audit log", caller)
	}
	return caller, nil
}

// GetAuditHead implements AuditService.
func (s *Service) GetAuditHead(ctx context.Context, _ *pocnetv1.GetAuditHeadRequest) (*pocnetv1.GetAuditHeadResponse, error) {
	if _, err := admin(ctx); err != nil {
		return nil, err
	}
	seq, hash := s.cfg.Log.AuditHead()
	return &pocnetv1.GetAuditHeadResponse{Seq: seq, Hash: hash}, nil
}

// ExportAudit implements AuditService. The export is recorded in the log,
// durably, before any entry leaves the node: who read the log is part of
// it. The stream ends at the head as it stands after that record.
func (s *Service) ExportAudit(req *pocnetv1.ExportAuditRequest, stream grpc.ServerStreamingServer[pocnetv1.ExportAuditResponse]) error {
	ctx := stream.Context()
	caller, err := admin(ctx)
	if err != nil {
		return err
	}
	after := req.GetAfterSeq()
	if head, _ := s.cfg.Log.AuditHead(); after > head {
		return status.Errorf(codes.InvalidArgument, "after_seq: %d is past the newest record, %d", after, head)
	}
	detail := fmt.Sprintf("audit log exported after record %d", after)
	if req.GetLimit() > 0 {
		detail += fmt.Sprintf(", at most %d records", req.GetLimit())
	}
	err = s.cfg.Log.AppendAudit(ctx, &pocnetv1.AuditRecord{
		OccurredAt: timestamppb.New(s.cfg.Now()), Action: pocnetv1.AuditAction_AUDIT_ACTION_EXPORTED,
		Actor: caller.String(), Detail: detail,
	})
	if err != nil {
		return rpcerr.Status(err)
	}
	through, _ := s.cfg.Log.AuditHead()
	if n := req.GetLimit(); n > 0 && n < through-after {
		through = after + n
	}
	for after < through {
		entries, last, err := s.cfg.Log.AuditRange(after, through, PageEntries)
		if err != nil {
			return rpcerr.Status(err)
		}
		if len(entries) == 0 {
			return nil
		}
		if err := send(stream, entries); err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return err
		}
		after = last
	}
	return nil
}

// send sends entries in responses of at most PageBytes (or one entry).
func send(stream grpc.ServerStreamingServer[pocnetv1.ExportAuditResponse], entries []*pocnetv1.AuditEntry) error {
	resp := &pocnetv1.ExportAuditResponse{}
	size := 0
	for _, e := range entries {
		n := proto.Size(e)
		if len(resp.Entries) > 0 && size+n > PageBytes {
			if err := stream.Send(resp); err != nil {
				return err
			}
			resp, size = &pocnetv1.ExportAuditResponse{}, 0
		}
		resp.Entries = append(resp.Entries, e)
		size += n
	}
	return stream.Send(resp)
}
