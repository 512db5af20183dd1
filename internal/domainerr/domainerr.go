// Package domainerr defines the kinds of error that the node's domain
// packages (exchange, dirsync) return for a caller to read, and the error
// that carries one with its message. server/rpcerr maps each kind to one
// gRPC code, in one table.
package domainerr

import (
	"errors"
	"fmt"
)

// Kinds.
var (
	InvalidArgument    = errors.New("invalid argument")
	NotFound           = errors.New("not found")
	PermissionDenied   = errors.New("permission denied")
	FailedPrecondition = errors.New("failed precondition")
	AlreadyExists      = errors.New("already exists")
	// Unavailable means the node could not do it now; nothing was changed,
	// and the caller may retry.
	Unavailable = errors.New("unavailable")
)

// Error is an error of one kind, with a message that does not repeat the
// kind and is always safe and useful to show to the caller.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the kind, so that errors.Is(err, NotFound) works.
func (e *Error) Unwrap() error { return e.Kind }

// New returns an Error of kind with a formatted message.
func New(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}
