package peers

import "google.golang.org/grpc"

// ClientConn returns the transport's open connection to state, or nil, so
// that tests can wait for the transport to close it.
func ClientConn(t *Transport, state string) *grpc.ClientConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.conns[state]; ok {
		return c.cc
	}
	return nil
}
