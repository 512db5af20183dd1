package store

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/datakey"
	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Canaries: strings that appear nowhere but in what the tests write.
const (
	canarySubject   = "CANARY-SUBJECT-7f3a9c21-grid-outage"
	canaryBody      = "CANARY-BODY-51d0be84-please-advise-on-attribution"
	canaryIndicator = "CANARY-INDICATOR-c2.evil-9e47.example"
	canaryRequest   = "CANARY-REQUEST-ID-03b6f1d5"
	canaryStix      = "CANARY-STIX-ATTACHMENT-a8e2"
)

var canaries = []string{canarySubject, canaryBody, canaryIndicator, canaryRequest, canaryStix}

func openDir(t *testing.T, dir string, keys *datakey.Ring) *DB {
	t.Helper()
	d, err := Open(dir, Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// communication builds a record as the exchange stores one: the view
// carries the communication, the envelope's payload carries it again, and
// the outbox entry and an event name the message.
func communication(t *testing.T, n int) *storev1.MessageRecord {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	comm := &pocnetv1.Communication{
		Subject:  canarySubject,
		Body:     canaryBody + strings.Repeat(" lorem ipsum", n),
		Language: "en",
		Incident: &pocnetv1.IncidentDetails{
			AffectedSectors: []string{"energy"},
			Indicators:      []*pocnetv1.Indicator{{Type: "domain", Value: canaryIndicator}},
			StixBundle:      []byte(`{"type":"bundle","objects":[{"name":"` + canaryStix + `"}]}`),
		},
	}
	// The envelope is sealed end to end as a node stores it; what this
	// store must seal on top are the record, the view in events and the
	// request id, which carry the same content in other forms.
	env, key := sealedEnvelope(t, id, comm)
	return &storev1.MessageRecord{
		View: &pocnetv1.Message{
			Id: id, ThreadId: id, Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION,
			Direction: pocnetv1.Direction_DIRECTION_OUTBOUND, FromRole: "technical", Communication: comm,
			Status: pocnetv1.Status_STATUS_ACCEPTED,
		},
		Envelope:   env,
		PayloadKey: key,
		Outbox:     &storev1.OutboxEntry{MessageId: id, PeerState: "XBB", Urgency: pocnetv1.Urgency_URGENCY_URGENT, EnqueuedAt: timestamppb.Now()},
	}
}

// putComm writes rec as an accepted outbound communication, with its
// request id, and an event that carries the whole view.
func putComm(tx *Tx, rec *storev1.MessageRecord, requestID string) error {
	if err := put(tx, rec, time.Now()); err != nil {
		return err
	}
	tx.AppendEvent(&pocnetv1.Event{Type: pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED, MessageId: rec.GetView().GetId(), Message: rec.GetView()})
	return tx.PutRequestID("spiffe://pocnet.example/state/XAA/operator/technical/duty", requestID, rec.GetView().GetId())
}

// grep returns the files under dir whose raw bytes contain one of needles,
// with the needle found.
func grep(t *testing.T, dir string, needles []string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found = append(found, filepath.Base(path)+": "+n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestNoCanaryOnDisk writes communications whose subject, body, indicator,
// attachment and request id are canaries, in the WAL and in sstables, and
// finds none of them in any file of the data directory. Controls prove
// that the same grep finds them in a plain file and in a Pebble database
// that holds them unsealed.
func TestNoCanaryOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := openDir(t, dir, testKeys)
	for i := range 20 {
		rec := communication(t, i)
		if err := d.Update(context.Background(), func(tx *Tx) error { return putComm(tx, rec, canaryRequest+"-"+string(rune('a'+i))) }); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			// Half in sstables, half only in the WAL.
			if err := d.db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A status change rewrites the record; the rewritten version is sealed too.
	var first string
	if evs, err := d.Events(0, 1); err != nil || len(evs) != 1 {
		t.Fatalf("events: %v, %v", evs, err)
	} else {
		first = evs[0].GetMessageId()
	}
	if err := d.Update(context.Background(), func(tx *Tx) error {
		r, err := tx.Message(first)
		if err != nil {
			return err
		}
		r.View.Status = pocnetv1.Status_STATUS_DELIVERED
		return tx.PutMessage(r)
	}); err != nil {
		t.Fatal(err)
	}
	got, err := d.Message(first)
	if err != nil || got.GetView().GetCommunication().GetSubject() != canarySubject {
		t.Fatalf("read back: %v, %v", got, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if found := grep(t, dir, canaries); len(found) != 0 {
		t.Fatalf("canaries in the data directory, in clear: %v", found)
	}

	// Control 1: the grep finds a canary in a plain file in the same folder.
	if err := os.WriteFile(filepath.Join(dir, "control"), []byte("x"+canaryBody+"x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if found := grep(t, dir, canaries); len(found) != 1 {
		t.Fatalf("control file: grep found %v, want the body canary once", found)
	}
	// Control 2: unsealed, the same values are found in Pebble's files.
	plain := filepath.Join(t.TempDir(), "plain")
	pdb, err := pebble.Open(plain, &pebble.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	v, err := proto.Marshal(communication(t, 1).GetView())
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(pdb.Set([]byte("m"), v, pebble.Sync), pdb.Set(requestKey(make([]byte, indexKeyLen), "s", canaryRequest), []byte(canaryRequest), pebble.Sync), pdb.Close()); err != nil {
		t.Fatal(err)
	}
	if found := grep(t, plain, []string{canarySubject, canaryBody, canaryRequest}); len(found) < 3 {
		t.Fatalf("unsealed Pebble database: grep found only %v", found)
	}
}

func TestRoundTripAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, testKeys)
	recs := map[string]*storev1.MessageRecord{}
	for i := range 5 {
		rec := communication(t, i)
		recs[rec.GetView().GetId()] = rec
		if err := d.Update(context.Background(), func(tx *Tx) error { return putComm(tx, rec, "req-"+rec.GetView().GetId()) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openDir(t, dir, testKeys)
	defer d.Close()
	checkAll(t, d, recs)
}

// checkAll reads back every record, its request id, the outbox and the
// events, and compares them with recs.
func checkAll(t *testing.T, d *DB, recs map[string]*storev1.MessageRecord) {
	t.Helper()
	for id, want := range recs {
		got, err := d.Message(id)
		if err != nil {
			t.Fatalf("message %s: %v", id, err)
		}
		if !proto.Equal(got.GetView().GetCommunication(), want.GetView().GetCommunication()) || !proto.Equal(got.GetEnvelope(), stored(want.GetEnvelope())) {
			t.Fatalf("message %s read back differs", id)
		}
		if mid, ok, err := d.RequestID("spiffe://pocnet.example/state/XAA/operator/technical/duty", "req-"+id); err != nil || !ok || mid != id {
			t.Fatalf("request id of %s: %s, %v, %v", id, mid, ok, err)
		}
	}
	list, _, err := d.List(pocnetv1.Direction_DIRECTION_UNSPECIFIED, "", nil, len(recs)+1, nil)
	if err != nil || len(list) != len(recs) {
		t.Fatalf("list: %d records, %v; want %d", len(list), err, len(recs))
	}
	ob, err := d.Outbox()
	if err != nil || len(ob) != len(recs) {
		t.Fatalf("outbox: %d entries, %v; want %d", len(ob), err, len(recs))
	}
	evs, err := d.Events(0, 10*len(recs))
	if err != nil || len(evs) != 2*len(recs) {
		t.Fatalf("events: %d, %v; want %d", len(evs), err, 2*len(recs))
	}
	for _, ev := range evs {
		if ev.GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED && ev.GetMessage().GetCommunication().GetSubject() != canarySubject {
			t.Fatalf("event %d lost its message", ev.GetSeq())
		}
	}
}

func TestOpenRefusesWrongOrMissingKeys(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "Options.Keys is required") {
		t.Fatalf("Open without keys = %v", err)
	}
	d := openDir(t, dir, testKeys)
	rec := communication(t, 0)
	if err := d.Update(context.Background(), func(tx *Tx) error { return putComm(tx, rec, "r") }); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Options{Keys: newRing()})
	want := "data key " + testKeys.Current().String() + " is not in the key ring"
	if !errors.Is(err, datakey.ErrUnknownKey) || !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Open with another key = %v, want an error naming %s and containing %q", err, dir, want)
	}
	// The right key still opens it: the failed Open changed nothing.
	d = openDir(t, dir, testKeys)
	defer d.Close()
	if _, err := d.Message(rec.GetView().GetId()); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRefusesUnsealedStore: a database written in clear is refused
// rather than read as garbage or silently mixed with sealed values.
func TestOpenRefusesUnsealedStore(t *testing.T) {
	dir := t.TempDir()
	pdb, err := pebble.Open(dir, &pebble.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(pdb.Set(eventKey(1), []byte("clear"), pebble.Sync), pdb.Close()); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{Keys: testKeys}); err == nil || !strings.Contains(err.Error(), "written without encryption at rest") {
		t.Fatalf("Open of an unsealed store = %v", err)
	}
}

// TestMovedOrChangedValueRefused: a sealed value copied under another key,
// or changed in place, does not open.
func TestMovedOrChangedValueRefused(t *testing.T) {
	d := openDir(t, t.TempDir(), testKeys)
	defer d.Close()
	a, b := communication(t, 0), communication(t, 1)
	for _, rec := range []*storev1.MessageRecord{a, b} {
		if err := d.Update(context.Background(), func(tx *Tx) error { return putComm(tx, rec, rec.GetView().GetId()) }); err != nil {
			t.Fatal(err)
		}
	}
	ka, _ := parseID(a.GetView().GetId())
	kb, _ := parseID(b.GetView().GetId())
	raw := func(k []byte) []byte {
		v, closer, err := d.db.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		return bytes.Clone(v)
	}
	// The disk thief's edits, straight into Pebble.
	if err := d.db.Set(messageKey(kb), raw(messageKey(ka)), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	changed := raw(envelopeKey(ka))
	changed[len(changed)-20] ^= 0x80
	if err := d.db.Set(envelopeKey(ka), changed, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{b.GetView().GetId(), a.GetView().GetId()} {
		_, err := d.Message(id)
		if !errors.Is(err, datakey.ErrAuthentication) || !errors.Is(err, ErrStorage) {
			t.Errorf("Message(%s) after an edit = %v, want ErrAuthentication", id, err)
		}
	}
	// Inside an update too.
	err := d.Update(context.Background(), func(tx *Tx) error {
		_, err := tx.Message(b.GetView().GetId())
		return err
	})
	if !errors.Is(err, datakey.ErrAuthentication) {
		t.Errorf("Tx.Message after a move = %v, want ErrAuthentication", err)
	}
}

func TestIndexValuesStayEmpty(t *testing.T) {
	d := openDir(t, t.TempDir(), testKeys)
	defer d.Close()
	err := d.Update(context.Background(), func(tx *Tx) error {
		tx.set(threadKey([idLen]byte{1}, 1, [idLen]byte{2}), []byte(canaryBody))
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "would be stored in clear") {
		t.Fatalf("a value under an index key = %v, want refused", err)
	}
}

// TestRequestKeyStableAndScoped: the request index survives a reopen and a
// data key rotation (a retry must find its first message), and one scope's
// request id does not match another's.
func TestRequestKeyStableAndScoped(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := mustGenerate(t), mustGenerate(t)
	d := openDir(t, dir, newRing(k1))
	id := uuid.Must(uuid.NewV7()).String()
	if err := d.Update(context.Background(), func(tx *Tx) error { return tx.PutRequestID("scope-a", "req", id) }); err != nil {
		t.Fatal(err)
	}
	if err := d.SetKeys(newRing(k1, k2)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Rewrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openDir(t, dir, newRing(k2))
	defer d.Close()
	if got, ok, err := d.RequestID("scope-a", "req"); err != nil || !ok || got != id {
		t.Fatalf("request id after rotation and reopen: %s, %v, %v", got, ok, err)
	}
	for _, c := range [][2]string{{"scope-b", "req"}, {"scope-", "areq"}, {"scope-a", "re"}} {
		if _, ok, err := d.RequestID(c[0], c[1]); err != nil || ok {
			t.Fatalf("RequestID(%q, %q) = %v, %v; want not found", c[0], c[1], ok, err)
		}
	}
}

func mustGenerate(t *testing.T) datakey.Key {
	t.Helper()
	k, err := datakey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRotationUnderConcurrentWrites rotates the data key while writers add
// messages and change their status, rewraps in the background, and checks
// that no value is left under the old key, that the old key can then be
// dropped, and that the store opens and reads everything with the new key
// alone.
func TestRotationUnderConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	oldKey, newKey := mustGenerate(t), mustGenerate(t)
	d := openDir(t, dir, newRing(oldKey))

	var mu sync.Mutex
	recs := map[string]*storev1.MessageRecord{}
	write := func() error {
		rec := communication(t, 3)
		id := rec.GetView().GetId()
		if err := d.Update(context.Background(), func(tx *Tx) error { return putComm(tx, rec, "req-"+id) }); err != nil {
			return err
		}
		// And rewrite it at once, as a status change does.
		if err := d.Update(context.Background(), func(tx *Tx) error {
			r, err := tx.Message(id)
			if err != nil {
				return err
			}
			r.View.Status = pocnetv1.Status_STATUS_DELIVERED
			return tx.PutMessage(r)
		}); err != nil {
			return err
		}
		mu.Lock()
		recs[id] = rec
		mu.Unlock()
		return nil
	}
	for range 300 {
		if err := write(); err != nil {
			t.Fatal(err)
		}
	}
	if u, err := d.KeyUsage(); err != nil || len(u) != 1 || u[oldKey.ID()] == 0 {
		t.Fatalf("usage before rotation = %v, %v", u, err)
	}

	stop := make(chan struct{})
	var writers sync.WaitGroup
	var written atomic.Int64
	errs := make(chan error, 8)
	for range 8 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := write(); err != nil {
					errs <- err
					return
				}
				written.Add(1)
			}
		}()
	}
	// Rotate mid-stream: add the new key, then rewrap in the background.
	for written.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	if err := d.SetKeys(newRing(newKey)); err == nil || !strings.Contains(err.Error(), "lacks data key "+oldKey.ID().String()) {
		t.Fatalf("SetKeys without the current key = %v, want refused", err)
	}
	if err := d.SetKeys(newRing(oldKey, newKey)); err != nil {
		t.Fatal(err)
	}
	atRotation := written.Load()
	rewrapped, err := d.Rewrap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Rewrap returned after a pass that found nothing under the old key,
	// with the writers still running.
	u, err := d.KeyUsage()
	if err != nil || u[oldKey.ID()] != 0 || u[newKey.ID()] == 0 {
		t.Fatalf("usage after Rewrap = %v, %v; want nothing under %s", u, err, oldKey.ID())
	}
	// Let the writers go on under the new key for a while.
	for written.Load() < atRotation+20 && len(errs) == 0 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	writers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d values rewrapped; %d messages written while rotating", rewrapped, written.Load())
	if u, err := d.KeyUsage(); err != nil || u[oldKey.ID()] != 0 {
		t.Fatalf("usage after the writers stopped = %v, %v", u, err)
	}
	// The old key can go now, without a restart.
	if err := d.SetKeys(newRing(newKey)); err != nil {
		t.Fatalf("dropping the old key after Rewrap: %v", err)
	}
	checkAll(t, d, recs)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openDir(t, dir, newRing(newKey))
	defer d.Close()
	checkAll(t, d, recs)
}

// TestSetKeysRefusesDroppingAKeyInUse: values still under a key keep it in
// the ring until Rewrap moved them.
func TestSetKeysRefusesDroppingAKeyInUse(t *testing.T) {
	k1, k2, k3 := mustGenerate(t), mustGenerate(t), mustGenerate(t)
	d := openDir(t, t.TempDir(), newRing(k1))
	defer d.Close()
	rec := communication(t, 0)
	if err := d.Update(context.Background(), func(tx *Tx) error { return putComm(tx, rec, "r") }); err != nil {
		t.Fatal(err)
	}
	if err := d.SetKeys(newRing(k1, k2)); err != nil {
		t.Fatal(err)
	}
	err := d.SetKeys(newRing(k2, k3))
	if err == nil || !strings.Contains(err.Error(), "sealed under data key "+k1.ID().String()) {
		t.Fatalf("SetKeys dropping a key in use = %v", err)
	}
	if d.Keys().Current() != k2.ID() {
		t.Fatalf("a refused SetKeys changed the ring to %v", d.Keys())
	}
	// A cancelled Rewrap stops and reports it.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Rewrap(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Rewrap with a cancelled context = %v", err)
	}
	if n, err := d.Rewrap(context.Background()); err != nil || n == 0 {
		t.Fatalf("Rewrap = %d, %v", n, err)
	}
	if err := d.SetKeys(newRing(k2, k3)); err != nil {
		t.Fatal(err)
	}
}

var quiet = pebbleLogger{zap.NewNop().Sugar()}
