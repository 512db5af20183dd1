package node_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/node"
)

// TestKeyRotationUnderTraffic: XAA rotates its signing key and XBB its
// encryption key, live, through the signed directory, while XAA holds a
// backlog sealed to XBB's old key and signed with its own old key. Nothing
// is lost and no node is restarted for it: the backlog is delivered and
// read with the old keys, new messages use the new ones. A node given the
// old directory and no store refuses to start without the private key the
// directory still publishes; a restarted node keeps the keys it made.
func TestKeyRotationUnderTraffic(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	ctx := context.Background()
	techA, adminA, adminB := f.Contact("XAA", "technical"), f.Contact("XAA", "admin"), f.Contact("XBB", "admin")
	var ids []string
	sendN := func(phase string, n int) {
		for i := range n {
			ids = append(ids, send(t, techA, "XBB", "technical", rfi(fmt.Sprintf("%s %d", phase, i))).GetId())
		}
	}
	sendN("before", 10)
	for _, id := range ids {
		waitStatus(t, adminA, id, pocnetv1.Status_STATUS_DELIVERED)
	}

	// A backlog at XAA, sealed to XBB's current key and signed with XAA's.
	f.Stop("XBB")
	sendN("backlog", 10)
	oldSigning := envelopeKeyID(t, f, ids[len(ids)-1])

	// XAA rotates its signing key while XBB is down.
	v, newSigning, _, err := f.Node("XAA").Directory().RotateKeys(ctx, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if v.Number() != 2 || newSigning == oldSigning {
		t.Fatalf("rotation: version %d, key %s (old %s)", v.Number(), newSigning, oldSigning)
	}
	sendN("signed anew", 5)
	if got := envelopeKeyID(t, f, ids[len(ids)-1]); got != newSigning {
		t.Fatalf("after the rotation XAA signs with %s, want %s", got, newSigning)
	}

	// XBB comes back with the old directory: it learns the new one from
	// XAA (an envelope signed with a key it does not know yet is retried,
	// not refused), and the backlog signed before the rotation is valid.
	f.Restart("XBB")
	adminB = f.Contact("XBB", "admin")
	for _, id := range ids {
		waitStatus(t, adminA, id, pocnetv1.Status_STATUS_DELIVERED)
	}
	if n := f.Node("XBB").Directory().Latest().Number(); n != 2 {
		t.Fatalf("XBB holds directory version %d, want 2", n)
	}

	// XBB rotates its encryption key; XAA seals to the new one once it
	// holds the version, and XBB still opens what was sealed to the old.
	_, _, newEnc, err := f.Node("XBB").Directory().RotateKeys(ctx, false, true)
	if err != nil {
		t.Fatal(err)
	}
	testfed.WaitFor(t, "XAA holds XBB's new key", func() bool {
		k, ok := f.Node("XAA").Directory().Latest().Directory().SealingKey("XBB")
		return ok && k.GetKeyId() == newEnc
	})
	sendN("sealed anew", 10)
	for _, id := range ids {
		waitStatus(t, adminA, id, pocnetv1.Status_STATUS_DELIVERED)
	}
	readAll := func() {
		t.Helper()
		in := inbox(t, adminB)
		if len(in) != len(ids) {
			t.Fatalf("XBB has %d messages, want %d", len(in), len(ids))
		}
		for _, id := range ids {
			if m := get(t, adminB, id); !strings.Contains(m.GetCommunication().GetSubject(), " ") {
				t.Fatalf("message %s is not readable at XBB: %v", id, m.GetCommunication())
			}
		}
	}
	readAll()

	// A node of XBB with the genesis alone, a fresh store and only the new
	// key's file would leave what is sealed to the old key undecryptable:
	// it refuses to start.
	bad := *f.Node("XBB").Config
	bad.DataDir = t.TempDir()
	bad.Keys.Encryption = nil
	bad.Listen = "127.0.0.1:0"
	if n, err := node.Start(node.Options{Config: &bad, Logger: zap.NewNop()}); err == nil {
		n.Stop()
		t.Fatal("XBB started without the private key of an encryption key it publishes")
	} else if !strings.Contains(err.Error(), "neither a file listed nor the node's store holds its private key") {
		t.Fatalf("start without the key: %v", err)
	}

	// Restarted, both nodes keep the keys they made: old and new messages
	// read, new ones flow.
	f.Restart("XAA")
	f.Restart("XBB")
	techA, adminA, adminB = f.Contact("XAA", "technical"), f.Contact("XAA", "admin"), f.Contact("XBB", "admin")
	readAll()
	sendN("final", 5)
	for _, id := range ids {
		waitStatus(t, adminA, id, pocnetv1.Status_STATUS_DELIVERED)
	}
	readAll()
	if got := envelopeKeyID(t, f, ids[len(ids)-1]); got != newSigning {
		t.Fatalf("after a restart XAA signs with %s, want %s", got, newSigning)
	}
}

// envelopeKeyID returns the key id of the signature of message id's
// envelope, as its transcript carries it.
func envelopeKeyID(t *testing.T, f *testfed.Federation, id string) string {
	t.Helper()
	tr := exportThread(t, records(f, "XAA", "admin"), id)
	return tr.GetEntries()[0].GetEnvelope().GetSignature().GetKeyId()
}

func writeKey(t *testing.T, dir, name string, pem []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
