package relaysvc

import "testing"

// TestHoldBound: one peer's calls waiting for the word hold at most
// MaxAheadBytes, except a lone call; other peers are not affected, and
// what a call held is released when it ends.
func TestHoldBound(t *testing.T) {
	s := New(Config{})
	const half = MaxAheadBytes / 2
	steps := []struct {
		state string
		n     int
		ok    bool
	}{
		{"XAA", MaxAheadBytes + 1, true}, // alone: taken, whatever its size
		{"XAA", 1, false},
		{"XBB", half, true}, // another peer has its own bound
		{"XBB", half, true},
		{"XBB", 1, false},
	}
	for i, st := range steps {
		if _, ok := s.hold(st.state, st.n); ok != st.ok {
			t.Fatalf("step %d: hold(%s, %d) = %v, want %v", i, st.state, st.n, ok, st.ok)
		}
	}
	s.release("XAA", MaxAheadBytes+1)
	if _, ok := s.hold("XAA", half); !ok {
		t.Fatal("XAA refused after its only call ended")
	}
	s.release("XBB", half)
	if held, ok := s.hold("XBB", half+1); ok || held != half {
		t.Fatalf("hold(XBB) after one release = (%d, %v), want refused with %d held", held, ok, half)
	}
	s.release("XBB", half)
	s.release("XAA", half)
	if len(s.held) != 0 {
		t.Fatalf("held %v after every call ended, want nothing", s.held)
	}
}
