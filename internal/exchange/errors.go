package exchange

import (
	"errors"
	"fmt"
)

// Error kinds. The server maps each to one gRPC code; the message of an
// error is always safe and useful to show to the caller.
var (
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrNotFound           = errors.New("not found")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrAlreadyExists      = errors.New("already exists")
	// ErrUnavailable means the node could not store the request; nothing was
	// stored, and retrying with the same request id is safe.
	ErrUnavailable = errors.New("unavailable")
)

// Error is a domain error with a message for the caller.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the kind, so errors.Is(err, ErrNotFound) works.
func (e *Error) Unwrap() error { return e.Kind }

func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// fieldErr is an invalid argument naming the field.
func fieldErr(field, format string, args ...any) error {
	return &Error{Kind: ErrInvalidArgument, Msg: field + ": " + fmt.Sprintf(format, args...)}
}
