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
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/datakey"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// testKeys is the key ring of every test store that does not test keys, so
// that a store reopened after a crash opens with the same ring.
var testKeys = newRing()

func newRing(keys ...datakey.Key) *datakey.Ring {
	if len(keys) == 0 {
		k, err := datakey.Generate()
		if err != nil {
			panic(err)
		}
		keys = append(keys, k)
	}
	r, err := datakey.NewRing(keys...)
	if err != nil {
		panic(err)
	}
	return r
}

func open(t *testing.T, fs vfs.FS) *DB {
	t.Helper()
	d, err := Open("db", Options{FS: fs, Keys: testKeys})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func record(t *testing.T, dir pocnetv1.Direction, role string, urg pocnetv1.Urgency, at time.Time) *storev1.MessageRecord {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	v := &pocnetv1.Message{Id: id, ThreadId: id, Direction: dir}
	if dir == pocnetv1.Direction_DIRECTION_INBOUND {
		v.ToRole = role
	} else {
		v.FromRole = role
	}
	return &storev1.MessageRecord{View: v, Envelope: &pocnetv1.Envelope{Header: []byte(id)}, Outbox: &storev1.OutboxEntry{
		MessageId: id, PeerState: "XBB", Urgency: urg, EnqueuedAt: timestamppb.New(at),
	}}
}

func put(tx *Tx, rec *storev1.MessageRecord, at time.Time) error {
	if err := tx.PutMessage(rec); err != nil {
		return err
	}
	if err := tx.IndexMessage(rec, at); err != nil {
		return err
	}
	if err := tx.PutOutbox(rec.GetOutbox()); err != nil {
		return err
	}
	tx.AppendEvent(&pocnetv1.Event{Type: pocnetv1.EventType_EVENT_TYPE_STATUS_CHANGED, MessageId: rec.GetView().GetId(), Role: VisibleRole(rec.GetView())})
	return nil
}

// TestAcknowledgedUpdatesSurviveCrash commits many concurrent updates, then
// keeps only what was synced (a crash at that instant) and checks that every
// update Update acknowledged is there, with contiguous event seqs.
func TestAcknowledgedUpdatesSurviveCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	d := open(t, fs)
	const n = 300
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	now := time.Now()
	for i := range n {
		rec := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, now)
		ids[i] = rec.GetView().GetId()
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- d.Update(context.Background(), func(tx *Tx) error { return put(tx, rec, now.Add(time.Duration(i))) })
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The crash: only synced data survives; the original DB is abandoned.
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	r := open(t, crashed)
	defer r.Close()
	for _, id := range ids {
		if _, err := r.Message(id); err != nil {
			t.Fatalf("acknowledged message %s lost in crash: %v", id, err)
		}
	}
	last, _ := r.LastSeq()
	if last != n {
		t.Fatalf("last seq after crash = %d, want %d", last, n)
	}
	evs, err := r.Events(0, 2*n)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, ev := range evs {
		if ev.GetSeq() != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, ev.GetSeq())
		}
		seen[ev.GetMessageId()] = true
	}
	if len(evs) != n || len(seen) != n {
		t.Fatalf("%d events for %d distinct messages, want %d", len(evs), len(seen), n)
	}
	out, err := r.Outbox()
	if err != nil || len(out) != n {
		t.Fatalf("outbox after crash: %d entries, err %v", len(out), err)
	}
}

func TestFailedUpdateWritesNothing(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	rec := record(t, pocnetv1.Direction_DIRECTION_OUTBOUND, "technical", pocnetv1.Urgency_URGENCY_ROUTINE, time.Now())
	boom := errors.New("boom")
	err := d.Update(context.Background(), func(tx *Tx) error {
		if err := put(tx, rec, time.Now()); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if _, err := d.Message(rec.GetView().GetId()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("message of a failed update: %v, want ErrNotFound", err)
	}
	if last, _ := d.LastSeq(); last != 0 {
		t.Fatalf("failed update appended events: last seq %d", last)
	}
	// A panicking update fails alone; the store keeps working.
	if err := d.Update(context.Background(), func(*Tx) error { panic("bad update") }); err == nil {
		t.Fatal("panicking update reported success")
	}
	if err := d.Update(context.Background(), func(tx *Tx) error { return put(tx, rec, time.Now()) }); err != nil {
		t.Fatalf("update after a panic: %v", err)
	}
}

// TestUpdatesSeeEachOther: an update reads what earlier updates wrote, even
// within one group commit; a request id is taken once however many race.
func TestUpdatesSeeEachOther(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	const racers = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := uuid.Must(uuid.NewV7()).String()
			won := false
			err := d.Update(context.Background(), func(tx *Tx) error {
				won = false
				if _, ok, err := tx.RequestID("spiffe://x/op", "req-1"); err != nil || ok {
					return err
				}
				won = true
				return tx.PutRequestID("spiffe://x/op", "req-1", id)
			})
			if err != nil {
				t.Error(err)
			}
			if won {
				mu.Lock()
				winners++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d updates took the same request id, want 1", winners)
	}
}

func TestListThreadOutboxOrder(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	base := time.Unix(1_800_000_000, 0)
	var recs []*storev1.MessageRecord
	urg := []pocnetv1.Urgency{pocnetv1.Urgency_URGENCY_ROUTINE, pocnetv1.Urgency_URGENCY_URGENT, pocnetv1.Urgency_URGENCY_PRIORITY}
	for i := range 9 {
		role := []string{"technical", "policy", "technical"}[i%3]
		dir := pocnetv1.Direction_DIRECTION_OUTBOUND
		if i%2 == 1 {
			dir = pocnetv1.Direction_DIRECTION_INBOUND
		}
		rec := record(t, dir, role, urg[i%3], base.Add(time.Duration(i)*time.Second))
		recs = append(recs, rec)
		if err := d.Update(context.Background(), func(tx *Tx) error { return put(tx, rec, base.Add(time.Duration(i)*time.Second)) }); err != nil {
			t.Fatal(err)
		}
	}
	// All roles, both directions, newest first, pages of 4.
	var got []string
	var cursor []byte
	for page := 0; ; page++ {
		out, next, err := d.List(pocnetv1.Direction_DIRECTION_UNSPECIFIED, "", cursor, 4, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out {
			got = append(got, r.GetView().GetId())
		}
		if next == nil {
			break
		}
		if page > 5 {
			t.Fatal("pagination does not end")
		}
		cursor = next
	}
	if len(got) != 9 {
		t.Fatalf("listed %d, want 9", len(got))
	}
	for i, id := range got {
		if want := recs[8-i].GetView().GetId(); id != want {
			t.Fatalf("position %d = %s, want %s (newest first)", i, id, want)
		}
	}
	// One role, one direction.
	out, _, err := d.List(pocnetv1.Direction_DIRECTION_INBOUND, "policy", nil, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out {
		if r.GetView().GetToRole() != "policy" || r.GetView().GetDirection() != pocnetv1.Direction_DIRECTION_INBOUND {
			t.Fatalf("inbound/policy list has %v", r.GetView())
		}
	}
	if len(out) != 2 { // i = 1, 7
		t.Fatalf("inbound/policy list has %d, want 2", len(out))
	}
	// Outbox: urgent first, then priority, then routine; oldest first within.
	ob, err := d.Outbox()
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, e := range ob {
		order = append(order, fmt.Sprintf("%v@%d", e.GetUrgency(), e.GetEnqueuedAt().AsTime().Unix()-base.Unix()))
	}
	want := "[URGENCY_URGENT@1 URGENCY_URGENT@4 URGENCY_URGENT@7 URGENCY_PRIORITY@2 URGENCY_PRIORITY@5 URGENCY_PRIORITY@8 URGENCY_ROUTINE@0 URGENCY_ROUTINE@3 URGENCY_ROUTINE@6]"
	if fmt.Sprint(order) != want {
		t.Fatalf("outbox order = %v\nwant %s", order, want)
	}
	// Deleting an outbox entry removes exactly it.
	if err := d.Update(context.Background(), func(tx *Tx) error { return tx.DeleteOutbox(ob[0]) }); err != nil {
		t.Fatal(err)
	}
	if ob2, _ := d.Outbox(); len(ob2) != 8 || ob2[0].GetMessageId() != ob[1].GetMessageId() {
		t.Fatalf("after delete: %d entries", len(ob2))
	}
	// Events resume after a seq.
	evs, err := d.Events(5, 100)
	if err != nil || len(evs) != 4 || evs[0].GetSeq() != 6 {
		t.Fatalf("events after 5: %d, first %v, err %v", len(evs), evs, err)
	}
	_, _, err = d.List(pocnetv1.Direction_DIRECTION_INBOUND, "", []byte("short"), 10, nil)
	if err == nil {
		t.Fatal("malformed cursor accepted")
	}
}

func TestUpdateAfterClose(t *testing.T) {
	d := open(t, vfs.NewMem())
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Update(context.Background(), func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Close = %v, want ErrClosed", err)
	}
}

func BenchmarkUpdateParallel(b *testing.B) {
	d, err := Open(b.TempDir(), Options{Keys: testKeys})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	now := time.Now()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := uuid.Must(uuid.NewV7()).String()
			rec := &storev1.MessageRecord{View: &pocnetv1.Message{Id: id, ThreadId: id, FromRole: "technical", Direction: pocnetv1.Direction_DIRECTION_OUTBOUND},
				Outbox: &storev1.OutboxEntry{MessageId: id, EnqueuedAt: timestamppb.New(now)}}
			if err := d.Update(context.Background(), func(tx *Tx) error { return put(tx, rec, now) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestStatusUpdateKeepsEnvelopeAndContent: a record rewritten from Tx.Message
// (which carries neither envelope nor communication) keeps both.
func TestStatusUpdateKeepsEnvelopeAndContent(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	id := uuid.Must(uuid.NewV7()).String()
	comm := &pocnetv1.Communication{Subject: "kept", Language: "en"}
	env, key := sealedEnvelope(t, id, comm)
	rec := &storev1.MessageRecord{
		View:       &pocnetv1.Message{Id: id, ThreadId: id, Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, Communication: comm, Status: pocnetv1.Status_STATUS_ACCEPTED},
		Envelope:   env,
		PayloadKey: key,
	}
	if err := d.Update(context.Background(), func(tx *Tx) error { return tx.PutMessage(rec) }); err != nil {
		t.Fatal(err)
	}
	if rec.GetEnvelope() == nil || rec.GetView().GetCommunication() == nil {
		t.Fatal("PutMessage changed the caller's record")
	}
	if err := d.Update(context.Background(), func(tx *Tx) error {
		r, err := tx.Message(id)
		if err != nil {
			return err
		}
		r.View.Status = pocnetv1.Status_STATUS_DELIVERED
		return tx.PutMessage(r)
	}); err != nil {
		t.Fatal(err)
	}
	got, err := d.Message(id)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetView().GetStatus() != pocnetv1.Status_STATUS_DELIVERED || got.GetView().GetCommunication().GetSubject() != "kept" || string(got.GetEnvelope().GetHeader()) != string(env.GetHeader()) {
		t.Fatalf("after a status update: %v", got)
	}
}

// sealedEnvelope builds a real sealed envelope carrying comm, as a node stores it,
// and returns it with its payload key.
func sealedEnvelope(t *testing.T, id string, comm *pocnetv1.Communication) (*pocnetv1.Envelope, []byte) {
	t.Helper()
	sk, err := envelope.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := envelope.NewSigner(sk)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := envelope.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := ek.PublicKey().Bytes()
	to := &pocnetv1.EncryptionKey{KeyId: directory.EncryptionKeyID(pub), PublicKey: pub, Status: pocnetv1.KeyStatus_KEY_STATUS_ACTIVE}
	h := &pocnetv1.EnvelopeHeader{Id: id, FromState: "XAA", ToState: "XBB"}
	b, err := envelope.Build(signer, envelope.NewSealer("pocnet.example", "XAA", nil), to, h,
		&pocnetv1.Payload{Body: &pocnetv1.Payload_Communication{Communication: comm}})
	if err != nil {
		t.Fatal(err)
	}
	return b.Envelope, b.PayloadKey
}

// stored is env as the store keeps it: without its encapsulated key.
func stored(env *pocnetv1.Envelope) *pocnetv1.Envelope {
	c := proto.Clone(env).(*pocnetv1.Envelope)
	c.EncapsulatedKey = nil
	return c
}

// TestSealingContextKept checks that the store keeps an outbound
// envelope's encapsulated key under its sealing context and never with the
// envelope, keeps none for an inbound one, and keeps it even when the
// update that first carried it failed.
func TestSealingContextKept(t *testing.T) {
	d := openDir(t, t.TempDir(), testKeys)
	defer d.Close()
	ctx := context.Background()
	recs := make([]*storev1.MessageRecord, 3)
	for i := range recs {
		recs[i] = communication(t, i)
	}
	enc := recs[0].GetEnvelope().GetEncapsulatedKey()
	id := envelope.ContextID(enc)

	// An update that fails after PutMessage applies nothing; the context
	// must still be written by the next envelope of that context.
	failed := errors.New("refused after PutMessage")
	if err := d.Update(ctx, func(tx *Tx) error {
		if err := put(tx, recs[0], time.Now()); err != nil {
			return err
		}
		return failed
	}); !errors.Is(err, failed) {
		t.Fatalf("update: %v", err)
	}
	if _, err := d.SealingContext(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("context of a failed update: %v, want ErrNotFound", err)
	}
	for _, rec := range recs[:2] {
		if err := d.Update(ctx, func(tx *Tx) error { return put(tx, rec, time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}
	got, err := d.SealingContext(id)
	if err != nil || !bytes.Equal(got, enc) {
		t.Fatalf("SealingContext = %d bytes, %v; want the %d-byte key", len(got), err, len(enc))
	}
	for _, rec := range recs[:2] {
		env, err := d.Envelope(rec.GetView().GetId())
		if err != nil {
			t.Fatal(err)
		}
		if len(env.GetEncapsulatedKey()) != 0 || !proto.Equal(env, stored(rec.GetEnvelope())) {
			t.Fatalf("stored envelope of %s: key of %d bytes, or not the envelope written", rec.GetView().GetId(), len(env.GetEncapsulatedKey()))
		}
		if len(rec.GetEnvelope().GetEncapsulatedKey()) == 0 {
			t.Fatal("PutMessage took the key off the caller's envelope")
		}
	}

	// An inbound envelope's key is not kept: the record has its payload key.
	in := recs[2]
	in.View.Direction = pocnetv1.Direction_DIRECTION_INBOUND
	if err := d.Update(ctx, func(tx *Tx) error { return put(tx, in, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	inID := envelope.ContextID(in.GetEnvelope().GetEncapsulatedKey())
	if _, err := d.SealingContext(inID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("context of an inbound envelope: %v, want ErrNotFound", err)
	}
	if _, err := d.SealingContext(inID[:8]); err == nil || !strings.Contains(err.Error(), "8 bytes") {
		t.Fatalf("short context id: %v", err)
	}
}
