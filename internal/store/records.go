package store

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/envelope"
	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("store: not found")

// Direction bytes of the list index. 0 indexes both directions.
const (
	dirAny      byte = 0
	dirOutbound byte = 1
	dirInbound  byte = 2
)

func dirByte(d pocnetv1.Direction) byte {
	switch d {
	case pocnetv1.Direction_DIRECTION_OUTBOUND:
		return dirOutbound
	case pocnetv1.Direction_DIRECTION_INBOUND:
		return dirInbound
	default:
		return dirAny
	}
}

// urgencyRank orders the outbox: urgent first.
func urgencyRank(u pocnetv1.Urgency) byte {
	switch u {
	case pocnetv1.Urgency_URGENCY_URGENT:
		return 0
	case pocnetv1.Urgency_URGENCY_PRIORITY:
		return 1
	default:
		return 2
	}
}

// Message reads a message record as this update sees it, without its
// envelope and communication (see PutMessage): enough to change its status
// or answers and put it back.
func (t *Tx) Message(id string) (*storev1.MessageRecord, error) {
	k, err := parseID(id)
	if err != nil {
		return nil, err
	}
	v, ok, err := t.get(messageKey(k))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	return unmarshalRecord(v)
}

// PutMessage writes a message record (creating or replacing it). The
// envelope, when rec carries one, is written to its own key, once, without
// its encapsulated key; the record itself is stored without the envelope
// and without the view's communication, which Message restores from the
// envelope's payload.
//
// The encapsulated key of an outbound envelope is kept once per sealing
// context ('c'), for the relay to add back (SealingContext); that of an
// inbound one is not kept at all: the record holds the payload key it
// opened.
func (t *Tx) PutMessage(rec *storev1.MessageRecord) error {
	k, err := parseID(rec.GetView().GetId())
	if err != nil {
		return err
	}
	env, comm := rec.Envelope, rec.GetView().Communication
	if env != nil {
		if enc := env.GetEncapsulatedKey(); len(enc) > 0 && rec.GetView().GetDirection() == pocnetv1.Direction_DIRECTION_OUTBOUND {
			t.putContext(enc)
		}
		// A copy: env is shared, and keeps its key in memory.
		ev, err := proto.Marshal(envelope.WithKey(env, nil))
		if err != nil {
			return fmt.Errorf("store: envelope: %w", err)
		}
		t.set(envelopeKey(k), ev)
	}
	rec.Envelope, rec.View.Communication = nil, nil
	v, err := proto.Marshal(rec)
	rec.Envelope, rec.View.Communication = env, comm
	if err != nil {
		return fmt.Errorf("store: message: %w", err)
	}
	t.set(messageKey(k), v)
	return nil
}

// maxContexts bounds DB.contexts. A node makes a context per peer key
// every envelope.ContextLifetime at most (more under a heavy load):
// thousands a day in a large federation.
const maxContexts = 4096

// putContext writes the encapsulated key enc under its sealing context,
// unless an update applied lately or an earlier one of this group did.
func (t *Tx) putContext(enc []byte) {
	id := string(envelope.ContextID(enc))
	if _, ok := t.db.contexts[id]; ok || slices.Contains(t.group.contexts, id) || slices.Contains(t.contexts, id) {
		return
	}
	t.set(contextKey([]byte(id)), enc)
	t.contexts = append(t.contexts, id)
}

// rememberContexts records the sealing contexts of a group just applied.
// It runs in the commit goroutine.
func (d *DB) rememberContexts(ids []string) {
	if len(ids) == 0 {
		return
	}
	if len(d.contexts)+len(ids) > maxContexts {
		clear(d.contexts)
	}
	for _, id := range ids {
		d.contexts[id] = struct{}{}
	}
}

// SealingContext returns the encapsulated key of sealing context id, as
// PutMessage kept it for an outbound envelope; ErrNotFound if it has none.
func (d *DB) SealingContext(id []byte) ([]byte, error) {
	if len(id) != envelope.ContextIDSize {
		return nil, fmt.Errorf("store: sealing context id of %d bytes, want %d", len(id), envelope.ContextIDSize)
	}
	return get(d, contextKey(id), func(v []byte) ([]byte, error) { return v, nil })
}

// IndexMessage adds a new message to the list indexes of its visible role
// and to its thread, ordered by at (when this node stored it).
func (t *Tx) IndexMessage(rec *storev1.MessageRecord, at time.Time) error {
	v := rec.GetView()
	id, err := parseID(v.GetId())
	if err != nil {
		return err
	}
	thread, err := parseID(v.GetThreadId())
	if err != nil {
		return err
	}
	role := VisibleRole(v)
	ns := at.UnixNano()
	d := dirByte(v.GetDirection())
	for _, dir := range []byte{d, dirAny} {
		t.set(listKey(dir, role, ns, id), nil)
		t.set(listKey(dir, "", ns, id), nil)
	}
	t.set(threadKey(thread, ns, id), nil)
	return nil
}

// VisibleRole is the PoC role whose operators may see a message: the
// addressee of an inbound message, the sender of an outbound one.
func VisibleRole(v *pocnetv1.Message) string {
	if v.GetDirection() == pocnetv1.Direction_DIRECTION_INBOUND {
		return v.GetToRole()
	}
	return v.GetFromRole()
}

// RequestID returns the message id a client request id was first used for.
func (t *Tx) RequestID(scope, requestID string) (string, bool, error) {
	v, ok, err := t.get(requestKey(t.db.indexKey, scope, requestID))
	if err != nil || !ok {
		return "", false, err
	}
	if len(v) != idLen {
		return "", false, fmt.Errorf("%w: malformed request record", ErrStorage)
	}
	return formatID(v), true, nil
}

// PutRequestID records that a client request id created message id.
func (t *Tx) PutRequestID(scope, requestID, id string) error {
	k, err := parseID(id)
	if err != nil {
		return err
	}
	if len(scope) > maxScopeLen {
		return fmt.Errorf("store: request scope longer than %d bytes", maxScopeLen)
	}
	t.set(requestKey(t.db.indexKey, scope, requestID), k[:])
	return nil
}

func outboxEntryKey(e *storev1.OutboxEntry) ([]byte, error) {
	k, err := parseID(e.GetMessageId())
	if err != nil {
		return nil, err
	}
	return outboxKey(urgencyRank(e.GetUrgency()), e.GetEnqueuedAt().AsTime().UnixNano(), k), nil
}

// PutOutbox adds an envelope to the outbox.
func (t *Tx) PutOutbox(e *storev1.OutboxEntry) error {
	k, err := outboxEntryKey(e)
	if err != nil {
		return err
	}
	v, err := proto.Marshal(e)
	if err != nil {
		return fmt.Errorf("store: outbox: %w", err)
	}
	t.set(k, v)
	return nil
}

// DeleteOutbox removes an envelope from the outbox.
func (t *Tx) DeleteOutbox(e *storev1.OutboxEntry) error {
	k, err := outboxEntryKey(e)
	if err != nil {
		return err
	}
	t.del(k)
	return nil
}

func unmarshalRecord(v []byte) (*storev1.MessageRecord, error) {
	var rec storev1.MessageRecord
	if err := proto.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("%w: message record: %v", ErrStorage, err)
	}
	return &rec, nil
}

// Message reads one message record with its envelope and communication.
func (d *DB) Message(id string) (*storev1.MessageRecord, error) {
	k, err := parseID(id)
	if err != nil {
		return nil, err
	}
	rec, err := get(d, messageKey(k), unmarshalRecord)
	if err != nil {
		return nil, err
	}
	env, err := get(d, envelopeKey(k), unmarshalEnvelope)
	if err != nil {
		return nil, err
	}
	rec.Envelope = env
	if v := rec.GetView(); v.GetType() == pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION || v.GetType() == pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE {
		// The payload stays sealed on disk; the record keeps its key.
		p, err := envelope.Decode(env, rec.GetPayloadKey())
		if err != nil {
			return nil, fmt.Errorf("%w: payload of %s: %v", ErrStorage, id, err)
		}
		v.Communication = p.GetCommunication()
	}
	return rec, nil
}

// Record reads a message record without its envelope and communication,
// as Tx.Message does: what changes after the message is stored. A caller
// that holds the envelope or the communication (they never change) saves
// reading and decrypting them again; the record of a message written
// lately comes from memory (recentRecords).
func (d *DB) Record(id string) (*storev1.MessageRecord, error) {
	k, err := parseID(id)
	if err != nil {
		return nil, err
	}
	if v, ok := d.records.get(k); ok {
		return unmarshalRecord(v)
	}
	return get(d, messageKey(k), unmarshalRecord)
}

// Envelope reads the envelope of a message.
func (d *DB) Envelope(id string) (*pocnetv1.Envelope, error) {
	k, err := parseID(id)
	if err != nil {
		return nil, err
	}
	return get(d, envelopeKey(k), unmarshalEnvelope)
}

func get[T any](d *DB, key []byte, decode func([]byte) (T, error)) (T, error) {
	var zero T
	v, closer, err := d.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return zero, ErrNotFound
	}
	if err != nil {
		return zero, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	p, err := d.open(key, v)
	closer.Close()
	if err != nil {
		return zero, err
	}
	return decode(p)
}

func unmarshalEnvelope(v []byte) (*pocnetv1.Envelope, error) {
	var env pocnetv1.Envelope
	if err := proto.Unmarshal(v, &env); err != nil {
		return nil, fmt.Errorf("%w: envelope: %v", ErrStorage, err)
	}
	return &env, nil
}

// RequestID returns the message id a client request id was first used for.
func (d *DB) RequestID(scope, requestID string) (string, bool, error) {
	v, err := get(d, requestKey(d.indexKey, scope, requestID), func(v []byte) ([]byte, error) { return v, nil })
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if len(v) != idLen {
		return "", false, fmt.Errorf("%w: malformed request record", ErrStorage)
	}
	return formatID(v), true, nil
}

// List returns up to limit messages of direction (unspecified: both)
// visible to role ("" for every role), newest first, starting after cursor
// (nil for the newest). keep, if not nil, filters records. It returns the
// cursor to pass for the next page, nil at the end.
func (d *DB) List(dir pocnetv1.Direction, role string, cursor []byte, limit int, keep func(*storev1.MessageRecord) bool) ([]*storev1.MessageRecord, []byte, error) {
	prefix := listPrefix(dirByte(dir), role)
	upper := prefixEnd(prefix)
	if cursor != nil {
		if len(cursor) != listSuffix {
			return nil, nil, fmt.Errorf("store: malformed cursor")
		}
		upper = append(append([]byte(nil), prefix...), cursor...)
	}
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer it.Close()
	var out []*storev1.MessageRecord
	var last []byte
	for ok := it.Last(); ok; ok = it.Prev() {
		k := it.Key()
		if len(k) != len(prefix)+listSuffix {
			return nil, nil, fmt.Errorf("%w: malformed index key %x", ErrStorage, k)
		}
		if len(out) == limit {
			return out, last, nil
		}
		last = append([]byte(nil), k[len(prefix):]...)
		rec, err := d.Message(formatID(k[len(k)-idLen:]))
		if err != nil {
			return nil, nil, err
		}
		if keep == nil || keep(rec) {
			out = append(out, rec)
		}
	}
	if err := it.Error(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return out, nil, nil
}

// Thread returns the messages of a thread in the order this node stored
// them.
func (d *DB) Thread(threadID string) ([]*storev1.MessageRecord, error) {
	k, err := parseID(threadID)
	if err != nil {
		return nil, err
	}
	prefix := threadPrefix(k)
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer it.Close()
	var out []*storev1.MessageRecord
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()
		rec, err := d.Message(formatID(key[len(key)-idLen:]))
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return out, nil
}

// Events returns up to limit events with seq > after, in order, as
// applied: whoever hands them out must stop at LastSeq, what is durable.
// The newest come from memory (recentEvents), older ones from the store.
func (d *DB) Events(after uint64, limit int) ([]*pocnetv1.Event, error) {
	if out, ok, err := d.recent.read(after, limit); ok || err != nil {
		return out, err
	}
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: eventKey(after + 1), UpperBound: []byte{nsEvent + 1}})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer it.Close()
	var out []*pocnetv1.Event
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		v, err := d.open(it.Key(), it.Value())
		if err != nil {
			return nil, err
		}
		var ev pocnetv1.Event
		if err := proto.Unmarshal(v, &ev); err != nil {
			return nil, fmt.Errorf("%w: event: %v", ErrStorage, err)
		}
		out = append(out, &ev)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return out, nil
}

// Outbox returns every outbox entry, urgent first, then oldest first.
func (d *DB) Outbox() ([]*storev1.OutboxEntry, error) {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte{nsOutbox}, UpperBound: []byte{nsOutbox + 1}})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer it.Close()
	var out []*storev1.OutboxEntry
	for ok := it.First(); ok; ok = it.Next() {
		v, err := d.open(it.Key(), it.Value())
		if err != nil {
			return nil, err
		}
		var e storev1.OutboxEntry
		if err := proto.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("%w: outbox entry: %v", ErrStorage, err)
		}
		out = append(out, &e)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return out, nil
}
