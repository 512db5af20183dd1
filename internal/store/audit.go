package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/pocnet/pocnet/internal/datakey"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/audit"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func auditKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{nsAudit}, seq)
}

// Audit adds rec to the audit log in this update. Its seq and prev_hash are
// assigned at commit, in the commit goroutine, so that the record is in the
// same synced batch as the writes it describes and the chain order is the
// commit order. If the update fails, the record is dropped with its writes
// and takes no seq: the chain never has a gap. rec is copied; a record
// without a time gets the commit time.
func (t *Tx) Audit(rec *pocnetv1.AuditRecord) {
	if rec == nil {
		return
	}
	t.auditRecs = append(t.auditRecs, proto.Clone(rec).(*pocnetv1.AuditRecord))
}

// addAudit seals tx's audit records after *head into b and advances *head.
// Only the commit goroutine calls it; *head becomes the DB's head only if
// the batch commits.
func addAudit(b *pebble.Batch, keys *datakey.Ring, tx *Tx, head *audit.Head) error {
	for _, rec := range tx.auditRecs {
		e, next, err := audit.Seal(*head, rec)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		v, err := proto.Marshal(e)
		if err != nil {
			return fmt.Errorf("store: audit entry: %w", err)
		}
		// Sealed at rest like every value: records name operators and
		// messages. The chain hashes the plain record bytes, so sealing
		// (and resealing under a new data key) never changes it.
		if err := setSealed(b, keys, auditKey(next.Seq), v); err != nil {
			return fmt.Errorf("%w: batch: %v", ErrStorage, err)
		}
		*head = next
	}
	return nil
}

// readAuditHead recovers the head of the audit log at Open from its newest
// entry. The next record links to that entry's stored hash: if the entry
// was altered on disk, verification names it, and the records after it
// still chain to what it was.
func (d *DB) readAuditHead() (audit.Head, error) {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte{nsAudit}, UpperBound: []byte{nsAudit + 1}})
	if err != nil {
		return audit.Head{}, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer it.Close()
	if !it.Last() {
		if err := it.Error(); err != nil {
			return audit.Head{}, fmt.Errorf("%w: %v", ErrStorage, err)
		}
		return audit.Head{Hash: audit.Genesis()}, nil
	}
	k := it.Key()
	if len(k) != 1+seqLen {
		return audit.Head{}, fmt.Errorf("%w: malformed audit key %x", ErrStorage, k)
	}
	seq := beUint64(k[1:])
	var e pocnetv1.AuditEntry
	v, err := d.open(k, it.Value())
	if err != nil {
		return audit.Head{}, err
	}
	if err := proto.Unmarshal(v, &e); err != nil || len(e.GetHash()) != audit.HashLen {
		// Chaining on from a guess would hide the damage; refusing to start
		// makes the operator look.
		return audit.Head{}, fmt.Errorf("%w: newest audit entry %d is unreadable; run pocctl audit verify on a copy", ErrStorage, seq)
	}
	if rec, err := audit.Decode(&e); err != nil || rec.GetSeq() != seq || !bytes.Equal(e.GetHash(), audit.Hash(rec.GetPrevHash(), e.GetRecord())) {
		d.log.Error("the newest audit record does not match its hash or key; the log is broken there (pocctl audit verify says how)", zap.Uint64("seq", seq))
	}
	return audit.Head{Seq: seq, Hash: append([]byte(nil), e.GetHash()...)}, nil
}

func (d *DB) auditHeadSnapshot() audit.Head {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.auditHead
}

func (d *DB) setAuditHead(h audit.Head) {
	d.mu.Lock()
	d.auditHead = h
	d.mu.Unlock()
}

// AuditHead returns the seq and hash of the newest committed audit record:
// 0 and 32 zero bytes for an empty log.
func (d *DB) AuditHead() (uint64, []byte) {
	h := d.auditHeadSnapshot()
	return h.Seq, append([]byte(nil), h.Hash...)
}

// Audit returns up to limit audit entries with seq > after, in order,
// exactly as stored. A stored value that is not an entry is returned as its
// raw bytes in Record, without a hash, so that verification names the
// damaged record instead of the export failing.
func (d *DB) Audit(after uint64, limit int) ([]*pocnetv1.AuditEntry, error) {
	out, _, err := d.AuditRange(after, math.MaxUint64, limit)
	return out, err
}

// AuditRange is Audit for the entries with after < seq <= through. It also
// returns the seq under which the last returned entry is stored (after if
// none), from which to resume: a reader pages by the store's keys, never by
// what a possibly damaged record says.
func (d *DB) AuditRange(after, through uint64, limit int) ([]*pocnetv1.AuditEntry, uint64, error) {
	if after >= through {
		return nil, after, nil
	}
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: auditKey(after + 1), UpperBound: prefixEnd(auditKey(through))})
	if err != nil {
		return nil, after, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer it.Close()
	var out []*pocnetv1.AuditEntry
	last := after
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		k := it.Key()
		if len(k) != 1+seqLen {
			return nil, after, fmt.Errorf("%w: malformed audit key %x", ErrStorage, k)
		}
		// A value that does not open under the data key (altered or moved
		// on disk without it) or does not decode is exported as it is, so
		// that verification names the record instead of the export failing.
		var e pocnetv1.AuditEntry
		v, err := d.open(k, it.Value())
		if err != nil {
			v = append([]byte(nil), it.Value()...)
		}
		if err != nil || proto.Unmarshal(v, &e) != nil {
			e = pocnetv1.AuditEntry{Record: v}
		}
		out = append(out, &e)
		last = beUint64(k[1:])
	}
	if err := it.Error(); err != nil {
		return nil, after, fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return out, last, nil
}

// AppendAudit commits audit records that describe no other write (a node
// starting, an export), durably, before returning.
func (d *DB) AppendAudit(ctx context.Context, recs ...*pocnetv1.AuditRecord) error {
	return d.Update(ctx, func(tx *Tx) error {
		for _, r := range recs {
			tx.Audit(r)
		}
		return nil
	})
}
