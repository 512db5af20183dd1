package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/google/uuid"

	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// wait bounds the waits of these tests: it turns a hang into a failure,
// and no assertion depends on it.
const wait = 30 * time.Second

// gatedFS holds every sync of a write-ahead log while closed, or fails it
// while failing is set.
type gatedFS struct {
	held    atomic.Bool
	gate    chan struct{} // closed to let held syncs go on
	failing atomic.Bool
	syncs   atomic.Int64 // syncs reported, if OnSync counts them
	synced  atomic.Int64 // updates reported made durable, if OnSync adds them
}

func (g *gatedFS) wrap(fs vfs.FS) vfs.FS {
	return errorfs.Wrap(fs, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if (op.Kind != errorfs.OpFileSync && op.Kind != errorfs.OpFileSyncData && op.Kind != errorfs.OpFileSyncTo) || !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		if g.held.Load() {
			<-g.gate
		}
		if g.failing.Load() {
			return errorfs.ErrInjected
		}
		return nil
	}))
}

func newRecord() *storev1.MessageRecord {
	id := uuid.Must(uuid.NewV7()).String()
	return &storev1.MessageRecord{View: &pocnetv1.Message{Id: id, ThreadId: id}}
}

// TestOnAppliedBeforeDurable: a hook runs once its update is applied,
// readable, while the sync is still under way; its Durable resolves when
// the sync does, and only then does Update return.
func TestOnAppliedBeforeDurable(t *testing.T) {
	g := &gatedFS{gate: make(chan struct{})}
	d, err := Open("db", Options{FS: g.wrap(vfs.NewMem()), Keys: testKeys})
	if err != nil {
		t.Fatal(err)
	}
	var release sync.Once
	open := func() {
		release.Do(func() {
			g.held.Store(false)
			close(g.gate)
		})
	}
	defer d.Close()
	defer open() // before Close, which waits for the sync, if a check fails

	g.held.Store(true)
	rec := newRecord()
	hooked := make(chan *Durable, 1)
	returned := make(chan error, 1)
	go func() {
		returned <- d.Update(context.Background(), func(tx *Tx) error {
			tx.OnApplied(func(dur *Durable) { hooked <- dur })
			return tx.PutMessage(rec)
		})
	}()
	var dur *Durable
	select {
	case dur = <-hooked:
	case <-time.After(wait):
		t.Fatal("the hook did not run while the sync was held")
	}
	// Applied: readable already.
	if _, err := d.Record(rec.GetView().GetId()); err != nil {
		t.Fatalf("record not readable when the hook ran: %v", err)
	}
	select {
	case <-dur.Done():
		t.Fatal("Durable resolved while the sync was held")
	case err := <-returned:
		t.Fatalf("Update returned (%v) while the sync was held", err)
	default:
	}
	open()
	select {
	case <-dur.Done():
	case <-time.After(wait):
		t.Fatal("Durable never resolved after the sync")
	}
	if err := dur.Err(); err != nil {
		t.Fatalf("Durable.Err = %v after a good sync", err)
	}
	if err := <-returned; err != nil {
		t.Fatalf("Update = %v", err)
	}
}

// TestOnAppliedNotForFailedUpdate: an update that fails leaves nothing,
// and its hook never runs; a hook that panics does not stop its update or
// the store.
func TestOnAppliedNotForFailedUpdate(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	var ran atomic.Int32
	refused := errors.New("refused")
	err := d.Update(context.Background(), func(tx *Tx) error {
		tx.OnApplied(func(*Durable) { ran.Add(1) })
		if err := tx.PutMessage(newRecord()); err != nil {
			return err
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("Update = %v, want the function's error", err)
	}
	rec := newRecord()
	err = d.Update(context.Background(), func(tx *Tx) error {
		tx.OnApplied(func(*Durable) { panic("hook bug") })
		return tx.PutMessage(rec)
	})
	if err != nil {
		t.Fatalf("update whose hook panicked = %v, want it committed", err)
	}
	if _, err := d.Record(rec.GetView().GetId()); err != nil {
		t.Fatalf("record of the update whose hook panicked: %v", err)
	}
	err = d.Update(context.Background(), func(tx *Tx) error {
		tx.OnApplied(func(*Durable) { ran.Add(1) })
		return tx.PutMessage(newRecord())
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := ran.Load(); n != 1 {
		t.Fatalf("hooks ran %d times, want once: only for the update that succeeded", n)
	}
}

// TestOnAppliedSyncFails: when the sync fails, the hook's Durable says so,
// as Update does.
func TestOnAppliedSyncFails(t *testing.T) {
	g := &gatedFS{gate: make(chan struct{})}
	d, err := Open("db", Options{FS: g.wrap(vfs.NewMem()), Keys: testKeys})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	g.failing.Store(true)
	var dur *Durable
	err = d.Update(context.Background(), func(tx *Tx) error {
		tx.OnApplied(func(d *Durable) { dur = d })
		return tx.PutMessage(newRecord())
	})
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("Update = %v, want ErrStorage", err)
	}
	if dur == nil {
		t.Fatal("the hook did not run: the update was applied before its sync failed")
	}
	select {
	case <-dur.Done():
	default:
		t.Fatal("Durable unresolved after Update returned")
	}
	if !errors.Is(dur.Err(), ErrStorage) {
		t.Fatalf("Durable.Err = %v, want ErrStorage", dur.Err())
	}
}
