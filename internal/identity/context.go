package identity

import "context"

type ctxKey struct{}

// NewContext returns ctx carrying the caller's verified identity.
func NewContext(ctx context.Context, id ID) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the caller's verified identity, set once by the
// server's interceptor.
func FromContext(ctx context.Context) (ID, bool) {
	id, ok := ctx.Value(ctxKey{}).(ID)
	return id, ok
}
