// Package auth reads the caller's identity once per call from the verified
// TLS peer certificate and decides which identities may call which service:
// nodes of member states call RelayService; operators of the node's own
// state call ContactService and RecordService, each acting for a PoC role
// its state lists (or admin); only admins may disclose a thread, and only
// admins call AuditService. Handlers read the identity from the context and
// never look at TLS.
package auth

import (
	"context"
	"strings"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
)

// Services and the identities allowed to call them.
const (
	relayPrefix   = "/pocnet.v1.RelayService/"
	contactPrefix = "/pocnet.v1.ContactService/"
	auditPrefix   = "/pocnet.v1.AuditService/"
	healthPrefix  = "/grpc.health.v1.Health/"
)

// Authorizer checks callers against the node's own identity and directory.
type Authorizer struct {
	Self      identity.ID
	Directory *directory.Source
	Logger    *zap.Logger
}

// authorize returns the caller's identity or a PermissionDenied /
// Unauthenticated status naming what is wrong.
func (a *Authorizer) authorize(ctx context.Context, method string) (identity.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return identity.ID{}, status.Error(codes.Unauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return identity.ID{}, status.Error(codes.Unauthenticated, "the connection is not mutual TLS")
	}
	// The chain was verified in the handshake (identity.ServerConfig); here
	// the verified leaf is only read.
	id, _, err := identity.PeerID(ti.State)
	if err != nil {
		return identity.ID{}, status.Error(codes.Unauthenticated, err.Error())
	}
	dir := a.Directory.Directory()
	switch {
	case strings.HasPrefix(method, relayPrefix):
		if id.Kind != identity.KindNode {
			return id, status.Errorf(codes.PermissionDenied, "%s is not a node; only member nodes may call RelayService", id)
		}
		if _, ok := dir.Member(id.State); !ok {
			return id, status.Errorf(codes.PermissionDenied, "%s is not a member of the directory", id.State)
		}
	case strings.HasPrefix(method, contactPrefix), strings.HasPrefix(method, recordPrefix):
		if id.Kind != identity.KindOperator {
			return id, status.Errorf(codes.PermissionDenied, "%s is not an operator; only operators of %s may call %s", id, a.Self.State, service(method))
		}
		if id.State != a.Self.State {
			return id, status.Errorf(codes.PermissionDenied, "%s is an operator of %s; this node serves operators of %s only", id, id.State, a.Self.State)
		}
		if !id.IsAdmin() {
			if _, ok := dir.PointOfContact(a.Self.State, id.Role); !ok {
				return id, status.Errorf(codes.PermissionDenied, "role %q of %s is neither admin nor a point of contact %s lists", id.Role, id, a.Self.State)
			}
		}
		if adminOnly[method] && !id.IsAdmin() {
			return id, status.Errorf(codes.PermissionDenied, "%s is not an admin; disclosing a thread is a decision of %s, and only its admin operators may call %s", id, a.Self.State, method)
		}
	case strings.HasPrefix(method, auditPrefix):
		// The audit log shows every operator's actions: the node's own
		// admins read it, no PoC role, no other state, no node.
		if !id.IsAdmin() || id.State != a.Self.State {
			return id, status.Errorf(codes.PermissionDenied, "%s is not an admin operator of %s; only admin operators of %s may call AuditService", id, a.Self.State, a.Self.State)
		}
	case strings.HasPrefix(method, healthPrefix):
		// Any verified member node or own operator may check health.
	default:
		// Reflection and anything else: the node's own operators only.
		if id.Kind != identity.KindOperator || id.State != a.Self.State {
			return id, status.Errorf(codes.PermissionDenied, "%s may not call %s", id, method)
		}
	}
	return id, nil
}

// Unary is the unary server interceptor.
func (a *Authorizer) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		a.Logger.Warn("call refused", zap.String("method", info.FullMethod), zap.String("caller", id.String()), zap.Error(err))
		return nil, err
	}
	return handler(identity.NewContext(ctx, id), req)
}

// Stream is the stream server interceptor.
func (a *Authorizer) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		a.Logger.Warn("call refused", zap.String("method", info.FullMethod), zap.String("caller", id.String()), zap.Error(err))
		return err
	}
	return handler(srv, &wrapped{ServerStream: ss, ctx: identity.NewContext(ss.Context(), id)})
}

type wrapped struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrapped) Context() context.Context { return w.ctx }

// Caller returns the identity the interceptor put in ctx. Handlers behind
// the interceptor always have one; its absence is a wiring bug.
func Caller(ctx context.Context) (identity.ID, error) {
	id, ok := identity.FromContext(ctx)
	if !ok {
		return identity.ID{}, status.Error(codes.Unauthenticated, "no verified caller identity")
	}
	return id, nil
}
