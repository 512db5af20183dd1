package store

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/google/uuid"

	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestSyncFailureStopsUpdates: once a sync of the write-ahead log fails,
// what the failed group wrote is readable but may not be durable, so the
// store refuses every later update, one that only reads included: nothing
// may be acknowledged on the strength of it (a redelivered receipt, say).
func TestSyncFailureStopsUpdates(t *testing.T) {
	var failSync atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failSync.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) && strings.HasSuffix(op.Path, ".log") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	d, err := Open("db", Options{FS: fs, Keys: testKeys})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	put := func() (string, error) {
		id := uuid.Must(uuid.NewV7()).String()
		return id, d.Update(context.Background(), func(tx *Tx) error {
			return tx.PutMessage(&storev1.MessageRecord{View: &pocnetv1.Message{Id: id, ThreadId: id}})
		})
	}
	if _, err := put(); err != nil {
		t.Fatalf("update before the fault: %v", err)
	}
	failSync.Store(true)
	lost, err := put()
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("update whose sync fails = %v, want ErrStorage", err)
	}
	failSync.Store(false)
	// The record is in the memtable, not necessarily on disk.
	err = d.Update(context.Background(), func(tx *Tx) error {
		_, err := tx.Message(lost)
		return err
	})
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("read-only update after a failed sync = %v, want ErrStorage", err)
	}
	if _, err := put(); !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), "takes no more updates") {
		t.Fatalf("update after a failed sync = %v, want ErrStorage saying the store takes no more updates", err)
	}
}
