// Package rpcerr is the one table that turns domain errors into gRPC
// statuses. A client never sees codes.Unknown or an internal detail.
package rpcerr

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pocnet/pocnet/internal/domainerr"
	"github.com/pocnet/pocnet/internal/governance"
)

var table = []struct {
	kind error
	code codes.Code
}{
	{domainerr.InvalidArgument, codes.InvalidArgument},
	{domainerr.NotFound, codes.NotFound},
	{domainerr.PermissionDenied, codes.PermissionDenied},
	{domainerr.FailedPrecondition, codes.FailedPrecondition},
	{domainerr.AlreadyExists, codes.AlreadyExists},
	{domainerr.Unavailable, codes.Unavailable},
	{governance.ErrInvalid, codes.InvalidArgument},
	{governance.ErrUnauthorized, codes.PermissionDenied},
	{governance.ErrObjected, codes.FailedPrecondition},
	{governance.ErrNotYetEffective, codes.FailedPrecondition},
	{governance.ErrStale, codes.FailedPrecondition},
	{governance.ErrUnknownParent, codes.FailedPrecondition},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// Status converts err to a gRPC status error. Errors already carrying a
// status pass through; unknown errors become Internal with a generic
// message (their detail is for the node's log, not the caller).
func Status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range table {
		if errors.Is(err, e.kind) {
			return status.Error(e.code, err.Error())
		}
	}
	return status.Error(codes.Internal, "internal error in the node; the operator's log has the detail")
}
