package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/audit"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// sent is the audit record of sending rec.
func sent(rec interface{ GetView() *pocnetv1.Message }) *pocnetv1.AuditRecord {
	return &pocnetv1.AuditRecord{
		Action: pocnetv1.AuditAction_AUDIT_ACTION_SENT, Actor: "spiffe://pocnet.test/state/XAA/operator/technical/alice",
		MessageId: rec.GetView().GetId(), PeerState: "XBB", Detail: "communication to XBB/technical",
	}
}

// verifyAudit checks d's whole audit log against its head and returns the
// decoded records.
func verifyAudit(t *testing.T, d *DB) []*pocnetv1.AuditRecord {
	t.Helper()
	entries, err := d.Audit(0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	seq, hash := d.AuditHead()
	head, err := audit.Verify(entries, audit.Anchor{Head: audit.Head{Seq: seq, Hash: hash}, Label: "the store's head"})
	if err != nil {
		t.Fatalf("audit log of %d entries: %v", len(entries), err)
	}
	if head.Seq != seq || head.Seq != uint64(len(entries)) {
		t.Fatalf("verified head %v, store head %d, %d entries", head, seq, len(entries))
	}
	recs := make([]*pocnetv1.AuditRecord, len(entries))
	for i, e := range entries {
		if recs[i], err = audit.Decode(e); err != nil {
			t.Fatal(err)
		}
	}
	return recs
}

// TestAuditChainAcrossGroupsAndReopen appends records from concurrent
// updates (many share a batch), reopens the store and appends more: one
// chain, gapless, each record in the batch of the writes it describes.
func TestAuditChainAcrossGroupsAndReopen(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	if seq, hash := d.AuditHead(); seq != 0 || !bytes.Equal(hash, audit.Genesis()) {
		t.Fatalf("empty log head %d %x", seq, hash)
	}
	now := time.Now()
	appendSome := func(d *DB, n int) {
		var wg sync.WaitGroup
		for i := range n {
			rec := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := d.Update(context.Background(), func(tx *Tx) error {
					tx.Audit(sent(rec))
					if i%3 == 0 {
						tx.Audit(&pocnetv1.AuditRecord{Action: pocnetv1.AuditAction_AUDIT_ACTION_ADMIN, Detail: "second record of one update"})
					}
					return put(tx, rec, now)
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	appendSome(d, 60)
	first := verifyAudit(t, d)
	if len(first) != 80 {
		t.Fatalf("%d records, want 80", len(first))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = open(t, fs)
	defer d.Close()
	seq, hash := d.AuditHead()
	if seq != 80 {
		t.Fatalf("head after reopen: %d", seq)
	}
	appendSome(d, 30)
	if err := d.AppendAudit(context.Background(), &pocnetv1.AuditRecord{Action: pocnetv1.AuditAction_AUDIT_ACTION_NODE_STARTED}); err != nil {
		t.Fatal(err)
	}
	recs := verifyAudit(t, d)
	if len(recs) != 121 || !bytes.Equal(recs[80].GetPrevHash(), hash) {
		t.Fatalf("%d records; record 81 links to %x, want the head before reopening %x", len(recs), recs[80].GetPrevHash(), hash)
	}
	for _, r := range recs {
		if r.GetOccurredAt() == nil {
			t.Fatalf("record %d has no time", r.GetSeq())
		}
		if r.GetAction() == pocnetv1.AuditAction_AUDIT_ACTION_SENT {
			if _, err := d.Message(r.GetMessageId()); err != nil {
				t.Fatalf("record %d names message %s: %v", r.GetSeq(), r.GetMessageId(), err)
			}
		}
	}
	// Paging.
	page, err := d.Audit(100, 5)
	if err != nil || len(page) != 5 {
		t.Fatalf("Audit(100, 5): %d entries, %v", len(page), err)
	}
	if r, _ := audit.Decode(page[0]); r.GetSeq() != 101 {
		t.Fatalf("page starts at %d", r.GetSeq())
	}
	if rest, err := d.Audit(121, 10); err != nil || len(rest) != 0 {
		t.Fatalf("Audit past the head: %d entries, %v", len(rest), err)
	}
}

// TestAuditFailedUpdateLeavesNoGap puts failing and panicking updates in
// one group between good ones: their records are dropped with their writes,
// and the good ones' records are consecutive.
func TestAuditFailedUpdateLeavesNoGap(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	now := time.Now()
	if err := d.AppendAudit(context.Background(), &pocnetv1.AuditRecord{Action: pocnetv1.AuditAction_AUDIT_ACTION_NODE_STARTED}); err != nil {
		t.Fatal(err)
	}
	// Hold the commit goroutine so that everything below queues up and is
	// committed as one group.
	release, holding := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- d.Update(context.Background(), func(*Tx) error { close(holding); <-release; return nil })
	}()
	<-holding
	boom := errors.New("boom")
	const n = 30
	type outcome struct {
		id  string
		ok  bool
		err error
	}
	results := make(chan outcome, n)
	for i := range n {
		rec := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
		go func() {
			err := d.Update(context.Background(), func(tx *Tx) error {
				tx.Audit(sent(rec))
				if err := put(tx, rec, now); err != nil {
					return err
				}
				switch i % 5 {
				case 1:
					return boom
				case 3:
					panic("bad update")
				}
				return nil
			})
			results <- outcome{id: rec.GetView().GetId(), ok: i%5 != 1 && i%5 != 3, err: err}
		}()
	}
	for len(d.reqs) < n {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	good := map[string]bool{}
	for range n {
		o := <-results
		if o.ok != (o.err == nil) {
			t.Fatalf("update of %s: %v", o.id, o.err)
		}
		if o.ok {
			good[o.id] = true
		}
	}
	recs := verifyAudit(t, d)
	if len(recs) != 1+len(good) {
		t.Fatalf("%d records, want %d", len(recs), 1+len(good))
	}
	for _, r := range recs[1:] {
		if !good[r.GetMessageId()] {
			t.Fatalf("record %d is of an update that failed (%s)", r.GetSeq(), r.GetMessageId())
		}
		delete(good, r.GetMessageId())
	}
	if len(good) != 0 {
		t.Fatalf("committed updates without their records: %v", good)
	}
	// The chain goes on from there.
	if err := d.AppendAudit(context.Background(), &pocnetv1.AuditRecord{Action: pocnetv1.AuditAction_AUDIT_ACTION_ADMIN}); err != nil {
		t.Fatal(err)
	}
	verifyAudit(t, d)
}

// TestAuditSurvivesCrash: after a crash that keeps only what was synced,
// every acknowledged update's record is there, the chain verifies, and the
// recovered head is its last record.
func TestAuditSurvivesCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	d := open(t, fs)
	now := time.Now()
	const n = 200
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		rec := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.Update(context.Background(), func(tx *Tx) error {
				tx.Audit(sent(rec))
				return put(tx, rec, now)
			})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- rec.GetView().GetId()
		}()
	}
	wg.Wait()
	close(ids)
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	r := open(t, crashed)
	defer r.Close()
	recs := verifyAudit(t, r)
	have := map[string]bool{}
	for _, rec := range recs {
		have[rec.GetMessageId()] = true
	}
	for id := range ids {
		if !have[id] {
			t.Fatalf("acknowledged update %s lost its audit record in the crash", id)
		}
	}
	if len(recs) != n {
		t.Fatalf("%d records after the crash, want %d", len(recs), n)
	}
	if err := r.AppendAudit(context.Background(), &pocnetv1.AuditRecord{Action: pocnetv1.AuditAction_AUDIT_ACTION_NODE_STARTED}); err != nil {
		t.Fatal(err)
	}
	verifyAudit(t, r)
}

// TestAuditDamagedEntries: a stored value that is not an entry is exported
// raw, so that verification names it; an unreadable newest entry stops the
// store from opening rather than chaining on from a guess.
func TestAuditDamagedEntries(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	for i := range 3 {
		if err := d.AppendAudit(context.Background(), &pocnetv1.AuditRecord{Action: pocnetv1.AuditAction_AUDIT_ACTION_ADMIN, Detail: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.db.Set(auditKey(2), []byte{0xff, 0xff, 0xff}, nil); err != nil {
		t.Fatal(err)
	}
	entries, err := d.Audit(0, 10)
	if err != nil || len(entries) != 3 {
		t.Fatalf("Audit: %d entries, %v", len(entries), err)
	}
	if !bytes.Equal(entries[1].GetRecord(), []byte{0xff, 0xff, 0xff}) || entries[1].GetHash() != nil {
		t.Fatalf("damaged entry exported as %v", entries[1])
	}
	if _, err := audit.Verify(entries); err == nil || !strings.HasPrefix(err.Error(), "record 2 altered: not a valid audit record") {
		t.Fatalf("Verify = %v", err)
	}
	if err := d.db.Set(auditKey(3), []byte{0xff}, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("db", Options{FS: fs, Keys: testKeys}); !errors.Is(err, ErrStorage) {
		t.Fatalf("Open with an unreadable newest audit entry: %v", err)
	}
}

// TestAuditRecordIsCopied: the caller's record is not changed by the commit.
func TestAuditRecordIsCopied(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	rec := &pocnetv1.AuditRecord{Action: pocnetv1.AuditAction_AUDIT_ACTION_ADMIN, Detail: "x"}
	before := proto.Clone(rec)
	if err := d.AppendAudit(context.Background(), rec, rec); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(rec, before) {
		t.Fatalf("record changed to %v", rec)
	}
	if recs := verifyAudit(t, d); len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
}

// TestAuditRangePagesByKey: paging resumes after the last key returned, so
// that a gap left by a deleted record neither repeats nor skips an entry,
// and nothing past through is returned.
func TestAuditRangePagesByKey(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	for range 6 {
		if err := d.AppendAudit(context.Background(), &pocnetv1.AuditRecord{Action: pocnetv1.AuditAction_AUDIT_ACTION_ADMIN}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.db.Delete(auditKey(2), nil); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	after := uint64(0)
	for {
		page, last, err := d.AuditRange(after, 5, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			if last != after {
				t.Fatalf("empty page moved the cursor from %d to %d", after, last)
			}
			break
		}
		for _, e := range page {
			r, err := audit.Decode(e)
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, r.GetSeq())
		}
		after = last
	}
	if fmt.Sprint(seqs) != "[1 3 4 5]" {
		t.Fatalf("paged seqs %v, want [1 3 4 5]", seqs)
	}
}
