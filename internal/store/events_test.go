package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestMemoryMatchesStore: what Events and Record serve from memory is what
// the store holds, before and after the oldest events leave memory and
// after a reopen, when everything is read from the store again.
func TestMemoryMatchesStore(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	rec := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, time.Unix(1_800_000_000, 0))
	id := rec.GetView().GetId()
	const perUpdate = 100
	updates := (maxRecentEvents + maxRecentEvents/2) / perUpdate
	for u := range updates {
		err := d.Update(context.Background(), func(tx *Tx) error {
			cur, err := tx.Message(id)
			if err == ErrNotFound {
				cur = rec
			} else if err != nil {
				return err
			}
			cur.View.StatusReason = fmt.Sprintf("update %d", u)
			if err := tx.PutMessage(cur); err != nil {
				return err
			}
			for i := range perUpdate {
				tx.AppendEvent(&pocnetv1.Event{Type: pocnetv1.EventType_EVENT_TYPE_STATUS_CHANGED, MessageId: id, Role: fmt.Sprint(u, "/", i)})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	last, _ := d.LastSeq()
	if want := uint64(updates * perUpdate); last != want {
		t.Fatalf("last seq %d, want %d", last, want)
	}
	read := func(d *DB) (map[uint64][]*pocnetv1.Event, *storev1.MessageRecord) {
		t.Helper()
		evs := map[uint64][]*pocnetv1.Event{}
		// From the start (the store), around where memory begins, and at
		// the end (memory).
		for _, after := range []uint64{0, last - maxRecentEvents - 1, last - maxRecentEvents/2 - 1, last - maxRecentEvents/2, last - 10, last} {
			got, err := d.Events(after, 256)
			if err != nil {
				t.Fatal(err)
			}
			for i, ev := range got {
				if ev.GetSeq() != after+1+uint64(i) {
					t.Fatalf("events after %d: #%d has seq %d", after, i, ev.GetSeq())
				}
			}
			evs[after] = got
		}
		r, err := d.Record(id)
		if err != nil {
			t.Fatal(err)
		}
		return evs, r
	}
	// The newest are served from memory, the oldest from the store.
	if _, ok, _ := d.recent.read(last-10, 256); !ok {
		t.Fatal("the newest events are not in memory")
	}
	if _, ok, _ := d.recent.read(0, 256); ok {
		t.Fatal("the oldest events are still in memory")
	}
	if k, _ := parseID(id); !func() bool { _, ok := d.records.get(k); return ok }() {
		t.Fatal("the record just written is not in memory")
	}
	memEvents, memRecord := read(d)
	if memRecord.GetView().GetStatusReason() != fmt.Sprintf("update %d", updates-1) {
		t.Fatalf("record from memory says %q", memRecord.GetView().GetStatusReason())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = open(t, fs)
	defer d.Close()
	diskEvents, diskRecord := read(d)
	if !proto.Equal(memRecord, diskRecord) {
		t.Fatalf("record from memory %v, from the store %v", memRecord, diskRecord)
	}
	for after, want := range diskEvents {
		got := memEvents[after]
		if len(got) != len(want) {
			t.Fatalf("events after %d: %d from memory, %d from the store", after, len(got), len(want))
		}
		for i := range got {
			if !proto.Equal(got[i], want[i]) {
				t.Fatalf("event %d: %v from memory, %v from the store", want[i].GetSeq(), got[i], want[i])
			}
		}
	}
}
