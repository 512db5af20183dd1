package exchange

import (
	"fmt"

	"github.com/pocnet/pocnet/internal/domainerr"
)

// Error kinds (package domainerr); server/rpcerr maps each to one gRPC
// code. The message of an error is always safe and useful to show to the
// caller.
var (
	ErrInvalidArgument    = domainerr.InvalidArgument
	ErrNotFound           = domainerr.NotFound
	ErrPermissionDenied   = domainerr.PermissionDenied
	ErrFailedPrecondition = domainerr.FailedPrecondition
	ErrAlreadyExists      = domainerr.AlreadyExists
	// ErrUnavailable means the node could not store the request; nothing was
	// stored, and retrying with the same request id is safe.
	ErrUnavailable = domainerr.Unavailable
)

// Error is a domain error with a message for the caller.
type Error = domainerr.Error

func errorf(kind error, format string, args ...any) error {
	return domainerr.New(kind, format, args...)
}

// fieldErr is an invalid argument naming the field.
func fieldErr(field, format string, args ...any) error {
	return &Error{Kind: ErrInvalidArgument, Msg: field + ": " + fmt.Sprintf(format, args...)}
}
