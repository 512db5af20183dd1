package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pocnet/pocnet/internal/dirsync"
	"github.com/pocnet/pocnet/internal/exchange"
	"github.com/pocnet/pocnet/internal/governance"
)

func TestStatus(t *testing.T) {
	cases := []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{&exchange.Error{Kind: exchange.ErrInvalidArgument, Msg: "subject: is required"}, codes.InvalidArgument, "subject: is required"},
		{&exchange.Error{Kind: exchange.ErrNotFound, Msg: "message x not found"}, codes.NotFound, "message x not found"},
		{fmt.Errorf("wrapped: %w", &exchange.Error{Kind: exchange.ErrPermissionDenied, Msg: "no"}), codes.PermissionDenied, "wrapped: no"},
		{&exchange.Error{Kind: exchange.ErrUnavailable, Msg: "retry"}, codes.Unavailable, "retry"},
		{&exchange.Error{Kind: exchange.ErrAlreadyExists, Msg: "request_id reused"}, codes.AlreadyExists, "request_id reused"},
		{&dirsync.Error{Kind: dirsync.ErrFailedPrecondition, Msg: "stale base"}, codes.FailedPrecondition, "stale base"},
		{&dirsync.Error{Kind: dirsync.ErrInvalidArgument, Msg: "hashes[1]: 1 bytes, want 32"}, codes.InvalidArgument, "hashes[1]: 1 bytes, want 32"},
		{governance.ErrUnauthorized, codes.PermissionDenied, ""},
		{context.DeadlineExceeded, codes.DeadlineExceeded, ""},
		{status.Error(codes.ResourceExhausted, "too big"), codes.ResourceExhausted, "too big"},
		// An unclassified error never leaks its detail, and is never Unknown.
		{errors.New("pebble: corrupt sstable 000123.sst"), codes.Internal, "internal error in the node"},
	}
	for _, tc := range cases {
		st, _ := status.FromError(Status(tc.err))
		if st.Code() != tc.code || (tc.msg != "" && st.Message() != tc.msg && st.Code() != codes.Internal) {
			t.Errorf("Status(%v) = %v %q, want %v %q", tc.err, st.Code(), st.Message(), tc.code, tc.msg)
		}
		if tc.code == codes.Internal && st.Message() != "internal error in the node; the operator's log has the detail" {
			t.Errorf("internal detail leaked: %q", st.Message())
		}
	}
	if Status(nil) != nil {
		t.Error("Status(nil) != nil")
	}
}
