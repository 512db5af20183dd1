package store

import (
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// maxRecentEvents bounds the events kept in memory.
const maxRecentEvents = 4096

// recentEvents holds the plaintext of the newest events applied, so that a
// watcher following the log reads them without an iterator over the store
// and a decryption each. A watcher further behind reads the store. Events
// enter in the order they are applied; what may be handed out is still
// decided by the seq published once durable (DB.LastSeq).
type recentEvents struct {
	mu   sync.Mutex
	next uint64   // seq the next event applied will have
	vals [][]byte // events next-len(vals) .. next-1, marshaled
}

// add appends the events of an applied group, the first with seq first.
// Only the commit goroutine calls it.
func (r *recentEvents) add(first uint64, vals [][]byte) {
	if len(vals) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if first != r.next {
		// Not contiguous (cannot happen): start over from these. A new
		// slice, as everywhere the held ones may be shared with readers.
		r.vals = nil
	}
	r.vals = append(r.vals, vals...)
	r.next = first + uint64(len(vals))
	if n := len(r.vals); n > maxRecentEvents {
		r.vals = append(r.vals[:0:0], r.vals[n-maxRecentEvents/2:]...)
	}
}

// read returns up to limit events with seq > after if memory holds them
// all, and whether it did.
func (r *recentEvents) read(after uint64, limit int) ([]*pocnetv1.Event, bool, error) {
	r.mu.Lock()
	first := r.next - uint64(len(r.vals))
	if after+1 < first {
		r.mu.Unlock()
		return nil, false, nil
	}
	var vals [][]byte
	if after+1 < r.next {
		vals = r.vals[after+1-first:]
		vals = vals[:min(len(vals), limit)]
	}
	r.mu.Unlock()
	// The values are never changed once added: decode them unlocked.
	out := make([]*pocnetv1.Event, len(vals))
	for i, v := range vals {
		var ev pocnetv1.Event
		if err := proto.Unmarshal(v, &ev); err != nil {
			return nil, true, fmt.Errorf("%w: event: %v", ErrStorage, err)
		}
		out[i] = &ev
	}
	return out, true, nil
}

// maxRecentRecords bounds the records kept in memory.
const maxRecentRecords = 4096

// recentRecords holds the plaintext of the latest record of the messages
// written lately, replaced in the order groups are applied, so that it is
// what the store holds. A watcher reads the record of each message it is
// told of; most were just written.
type recentRecords struct {
	mu    sync.Mutex
	m     map[[idLen]byte][]byte
	order [][idLen]byte // ids in the order added, oldest first from head
	head  int
}

// add records the message records among a group's writes. Only the commit
// goroutine calls it, after the group is applied.
func (r *recentRecords) add(ops []*op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[[idLen]byte][]byte{}
	}
	for _, o := range ops {
		if len(o.key) != 1+idLen || o.key[0] != nsMessage {
			continue
		}
		id := [idLen]byte(o.key[1:])
		if o.del {
			delete(r.m, id)
			continue
		}
		if _, ok := r.m[id]; !ok {
			r.order = append(r.order, id)
		}
		// Values are never changed once written: the slice is shared.
		r.m[id] = o.value
	}
	for len(r.order)-r.head > maxRecentRecords {
		delete(r.m, r.order[r.head])
		r.head++
	}
	if r.head > maxRecentRecords {
		r.order = append(r.order[:0], r.order[r.head:]...)
		r.head = 0
	}
}

func (r *recentRecords) get(id [idLen]byte) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.m[id]
	return v, ok
}
