package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// gatedStore opens a store on a crashable file system whose log syncs can
// be held (gatedFS). release lets held syncs go on; it is safe to call
// more than once and runs at cleanup, before Close waits for the syncs.
//
// maxDefer is the store's MaxDefer: 0 for the default, an hour where only
// another update's sync may make a deferred one durable.
func gatedStore(t *testing.T, maxDefer time.Duration) (d *DB, fs *vfs.MemFS, g *gatedFS, release func()) {
	t.Helper()
	fs = vfs.NewCrashableMem()
	g = &gatedFS{gate: make(chan struct{})}
	onSync := func(_ time.Duration, n int) {
		g.syncs.Add(1)
		g.synced.Add(int64(n))
	}
	d, err := Open("db", Options{FS: g.wrap(fs), Keys: testKeys, OnSync: onSync, maxDefer: maxDefer})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			g.held.Store(false)
			close(g.gate)
		})
	}
	t.Cleanup(func() {
		release()
		d.Close()
	})
	return d, fs, g, release
}

// readable waits until id is readable: its update was applied.
func readable(t *testing.T, d *DB, id string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if _, err := d.Record(id); err == nil {
			return
		} else if !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("update of %s never applied", id)
		}
		time.Sleep(time.Millisecond)
	}
}

// survives reports which of ids a crash at this instant would keep.
func survives(t *testing.T, fs *vfs.MemFS, ids ...string) []bool {
	t.Helper()
	r := open(t, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
	defer r.Close()
	kept := make([]bool, len(ids))
	for i, id := range ids {
		_, err := r.Message(id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		kept[i] = err == nil
	}
	return kept
}

func returnedYet(ch <-chan error) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestDeferredDurableByNextSync: a deferred update is applied at once, but
// neither answered nor are its events published before a sync covers it;
// the sync of an update behind it makes both durable. MaxDefer is an hour:
// no sync is made for the deferred update alone.
func TestDeferredDurableByNextSync(t *testing.T) {
	d, fs, g, release := gatedStore(t, time.Hour)
	now := time.Now()
	before, _ := d.LastSeq()

	syncsBefore, syncedBefore := g.syncs.Load(), g.synced.Load()
	g.held.Store(true)
	deferred := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
	deferredDone := make(chan error, 1)
	go func() {
		deferredDone <- d.UpdateDeferred(context.Background(), func(tx *Tx) error { return put(tx, deferred, now) })
	}()
	readable(t, d, deferred.GetView().GetId())
	if returnedYet(deferredDone) {
		t.Fatal("UpdateDeferred returned while no sync could have covered it")
	}
	if last, _ := d.LastSeq(); last != before {
		t.Fatalf("LastSeq = %d before any sync, want %d: an event was published before it was durable", last, before)
	}
	if kept := survives(t, fs, deferred.GetView().GetId()); kept[0] {
		t.Fatal("the deferred update was synced while every log sync was held")
	}

	next := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
	nextDone := make(chan error, 1)
	go func() {
		nextDone <- d.Update(context.Background(), func(tx *Tx) error { return put(tx, next, now) })
	}()
	readable(t, d, next.GetView().GetId())
	release()
	for _, ch := range []chan error{deferredDone, nextDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(wait):
			t.Fatal("an update never returned after the syncs were let go")
		}
	}
	if last, _ := d.LastSeq(); last != before+2 {
		t.Fatalf("LastSeq = %d after the sync, want %d", last, before+2)
	}
	if n, m := g.syncs.Load()-syncsBefore, g.synced.Load()-syncedBefore; n != 1 || m != 2 {
		t.Fatalf("OnSync was told of %d syncs making %d updates durable, want 1 sync making 2", n, m)
	}
	for i, kept := range survives(t, fs, deferred.GetView().GetId(), next.GetView().GetId()) {
		if !kept {
			t.Fatalf("acknowledged update %d lost in a crash", i)
		}
	}
}

// TestDeferredAloneIsSynced: a deferred update with no update behind it is
// synced on its own and then answered.
func TestDeferredAloneIsSynced(t *testing.T) {
	fs := vfs.NewCrashableMem()
	d := open(t, fs)
	defer d.Close()
	now := time.Now()
	rec := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
	if err := d.UpdateDeferred(context.Background(), func(tx *Tx) error { return put(tx, rec, now) }); err != nil {
		t.Fatal(err)
	}
	if kept := survives(t, fs, rec.GetView().GetId()); !kept[0] {
		t.Fatal("acknowledged deferred update lost in a crash")
	}
}

// TestReadAfterDeferredWaitsForSync: an update that writes nothing but read
// what a deferred update wrote is not answered before that is durable.
func TestReadAfterDeferredWaitsForSync(t *testing.T) {
	d, fs, g, release := gatedStore(t, time.Hour)
	now := time.Now()
	g.held.Store(true)
	rec := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
	id := rec.GetView().GetId()
	deferredDone := make(chan error, 1)
	go func() {
		deferredDone <- d.UpdateDeferred(context.Background(), func(tx *Tx) error { return put(tx, rec, now) })
	}()
	readable(t, d, id)
	readDone := make(chan error, 1)
	read := make(chan struct{})
	go func() {
		readDone <- d.Update(context.Background(), func(tx *Tx) error {
			defer close(read)
			_, err := tx.Message(id)
			return err
		})
	}()
	<-read
	// Were it answered without a sync, it would be in a moment; none can
	// come while syncs are held.
	select {
	case err := <-readDone:
		t.Fatalf("a read of an update no sync covers was answered (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	if kept := survives(t, fs, id); kept[0] {
		t.Fatal("the deferred update was synced while every log sync was held")
	}
	release()
	for _, ch := range []chan error{deferredDone, readDone} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeferredSyncFails: when the sync that would cover a deferred update
// fails, its caller is told, as Update's would be.
func TestDeferredSyncFails(t *testing.T) {
	d, _, g, _ := gatedStore(t, 0)
	g.failing.Store(true)
	now := time.Now()
	rec := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
	err := d.UpdateDeferred(context.Background(), func(tx *Tx) error { return put(tx, rec, now) })
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("UpdateDeferred = %v after a failed sync, want ErrStorage", err)
	}
	if err := d.Update(context.Background(), func(*Tx) error { return nil }); !errors.Is(err, ErrStorage) {
		t.Fatalf("Update after a failed sync = %v, want ErrStorage", err)
	}
}

// TestDeferredAcrossLogRotation: a deferred update written to a log that
// Pebble then closes for a new one is still answered only after a sync
// that the store asked for, and then survives a crash.
func TestDeferredAcrossLogRotation(t *testing.T) {
	fs := vfs.NewCrashableMem()
	d, err := Open("db", Options{FS: fs, Keys: testKeys, maxDefer: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	now := time.Now()
	deferred := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
	deferredDone := make(chan error, 1)
	go func() {
		deferredDone <- d.UpdateDeferred(context.Background(), func(tx *Tx) error { return put(tx, deferred, now) })
	}()
	readable(t, d, deferred.GetView().GetId())
	// A flush moves Pebble to a new log.
	if err := d.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if returnedYet(deferredDone) {
		t.Fatal("UpdateDeferred returned before the store asked for any sync")
	}
	next := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
	if err := d.Update(context.Background(), func(tx *Tx) error { return put(tx, next, now) }); err != nil {
		t.Fatal(err)
	}
	if err := <-deferredDone; err != nil {
		t.Fatal(err)
	}
	for i, kept := range survives(t, fs, deferred.GetView().GetId(), next.GetView().GetId()) {
		if !kept {
			t.Fatalf("acknowledged update %d lost in a crash", i)
		}
	}
}

// TestCloseSyncsHeld: Close makes what is held durable and answers it.
func TestCloseSyncsHeld(t *testing.T) {
	fs := vfs.NewCrashableMem()
	d, err := Open("db", Options{FS: fs, Keys: testKeys, maxDefer: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rec := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
	done := make(chan error, 1)
	go func() {
		done <- d.UpdateDeferred(context.Background(), func(tx *Tx) error { return put(tx, rec, now) })
	}()
	readable(t, d, rec.GetView().GetId())
	if returnedYet(done) {
		t.Fatal("UpdateDeferred returned before the store asked for any sync")
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("UpdateDeferred = %v across Close", err)
	}
	if kept := survives(t, fs, rec.GetView().GetId()); !kept[0] {
		t.Fatal("an update answered at Close was lost in a crash")
	}
	// The crash clone taken before Close shows it was not durable until then.
	r := open(t, crashed)
	defer r.Close()
	if _, err := r.Message(rec.GetView().GetId()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before Close, a crash would have kept the held update (%v): it was synced without being asked", err)
	}
}
