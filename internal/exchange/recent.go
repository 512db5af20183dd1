package exchange

import (
	"sync"

	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// maxRecentBytes bounds the memory the recent cache holds.
const maxRecentBytes = 16 << 20

// recent keeps, for the messages this node stored lately, what never
// changes once a message is stored: its envelope as signed, the envelope's
// digest and the communication it carries. The relay worker delivers the envelope of a
// message just accepted, and a watcher reads the message just received,
// without reading and decrypting them from the store again. Only what an
// update stored is put here, once applied (readable from the store too),
// and the store stays the authority: a message's status is always read
// from it.
//
// Entries are shared and must never be modified. The oldest go first when
// the cache is full; a miss only means reading the store.
type recent struct {
	mu    sync.Mutex
	m     map[string]*stored
	order []string // ids, oldest first from head
	head  int
	bytes int
}

type stored struct {
	env    *pocnetv1.Envelope
	digest []byte
	comm   *pocnetv1.Communication // nil for acknowledgements and declines
	size   int
}

func newRecent() *recent { return &recent{m: map[string]*stored{}} }

// put remembers the envelope, its digest and the communication of a
// stored message.
func (r *recent) put(id string, env *pocnetv1.Envelope, digest []byte, comm *pocnetv1.Communication) {
	if env == nil {
		return
	}
	// An estimate: the communication is smaller than the payload that
	// carries it.
	size := 2*(len(env.GetHeader())+len(env.GetPayload())) + 512
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[id]; ok {
		return
	}
	for r.bytes+size > maxRecentBytes && r.head < len(r.order) {
		old := r.order[r.head]
		r.order[r.head] = ""
		r.head++
		r.bytes -= r.m[old].size
		delete(r.m, old)
	}
	if r.head > len(r.order)/2 {
		r.order = append(r.order[:0], r.order[r.head:]...)
		r.head = 0
	}
	r.m[id] = &stored{env: env, digest: digest, comm: comm, size: size}
	r.order = append(r.order, id)
	r.bytes += size
}

func (r *recent) get(id string) *stored {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[id]
}

// message reads a message record with its communication, as
// store.DB.Message does, taking the communication from the recent cache
// when it is there. The record's view may share the cached communication:
// callers only read it (view clones it).
func (s *Service) message(id string) (*storev1.MessageRecord, error) {
	st := s.recent.get(id)
	if st == nil {
		return s.cfg.Store.Message(id)
	}
	rec, err := s.cfg.Store.Record(id)
	if err != nil {
		return nil, err
	}
	rec.Envelope = st.env
	if t := rec.GetView().GetType(); t == pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION || t == pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE {
		if st.comm == nil {
			return s.cfg.Store.Message(id)
		}
		rec.View.Communication = st.comm
	}
	return rec, nil
}
