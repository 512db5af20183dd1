package node_test

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/node"
)

// TestKeyRotationUnderTraffic: XBB rotates its encryption key and XAA its
// signing key while XAA holds a backlog sealed to XBB's old key and signed
// with its own old key. Nothing is lost: the backlog is delivered and read
// with the old keys, new messages use the new ones, and XBB refuses to
// start without a private key its directory entry still publishes.
func TestKeyRotationUnderTraffic(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
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

	// Rotation: new keys on disk, the directory lists old and new. XAA
	// signs the new directory with its new key: the old one is retired.
	pb := proto.Clone(f.Certs.Directory).(*pocnetv1.Directory)
	now := time.Now()
	newSigning, _ := envelope.GenerateSigningKey()
	newEncryption, _ := envelope.GenerateEncryptionKey()
	for _, m := range pb.GetMembers() {
		switch m.GetState() {
		case "XAA":
			m.SigningKeys[0].Status, m.SigningKeys[0].RetiredAt = pocnetv1.KeyStatus_KEY_STATUS_RETIRED, ts(now)
			m.SigningKeys = append(m.SigningKeys, certs.PublishSigningKey(newSigning))
		case "XBB":
			m.EncryptionKeys[0].Status = pocnetv1.KeyStatus_KEY_STATUS_RETIRED
			m.EncryptionKeys = append(m.EncryptionKeys, certs.PublishEncryptionKey(newEncryption))
		}
	}
	signers := map[string]ed25519.PrivateKey{"XAA": newSigning}
	f.ReplaceGenesis(pb, signers)
	cfgA, cfgB := f.Node("XAA").Config, f.Node("XBB").Config
	cfgA.Keys.Signing = writeKey(t, filepath.Dir(cfgA.Keys.Signing), "signing-key-2.pem", must(envelope.MarshalSigningKey(newSigning)))
	oldEncryption := cfgB.Keys.Encryption
	cfgB.Keys.Encryption = append(append([]string(nil), oldEncryption...),
		writeKey(t, filepath.Dir(oldEncryption[0]), "encryption-key-2.pem", must(envelope.MarshalEncryptionKey(newEncryption))))

	// XBB without its retired key's private half would leave the backlog
	// undecryptable: it must refuse to start.
	bad := *cfgB
	bad.Keys.Encryption = bad.Keys.Encryption[1:]
	bad.DataDir = t.TempDir()
	if n, err := node.Start(node.Options{Config: &bad, Logger: zap.NewNop()}); err == nil {
		n.Stop()
		t.Fatal("XBB started without the private key of an encryption key it still publishes")
	} else if !strings.Contains(err.Error(), "no file listed holds its private key") {
		t.Fatalf("start without the old key: %v", err)
	}

	f.Restart("XAA")
	f.Restart("XBB")
	techA, adminA, adminB = f.Contact("XAA", "technical"), f.Contact("XAA", "admin"), f.Contact("XBB", "admin")
	sendN("after", 10)
	for _, id := range ids {
		waitStatus(t, adminA, id, pocnetv1.Status_STATUS_DELIVERED)
	}
	in := inbox(t, adminB)
	if len(in) != len(ids) {
		t.Fatalf("XBB has %d messages, want %d", len(in), len(ids))
	}
	readAll := func() {
		t.Helper()
		for _, id := range ids {
			if m := get(t, adminB, id); !strings.Contains(m.GetCommunication().GetSubject(), " ") {
				t.Fatalf("message %s is not readable at XBB: %v", id, m.GetCommunication())
			}
		}
	}
	readAll()

	// The rotation ends: the old key leaves the directory and XBB's disk.
	// Messages already stored stay readable, and new ones still flow.
	for _, m := range pb.GetMembers() {
		if m.GetState() == "XBB" {
			m.EncryptionKeys = m.EncryptionKeys[1:]
		}
	}
	f.ReplaceGenesis(pb, signers)
	cfgB.Keys.Encryption = cfgB.Keys.Encryption[1:]
	f.Restart("XAA")
	f.Restart("XBB")
	techA, adminA, adminB = f.Contact("XAA", "technical"), f.Contact("XAA", "admin"), f.Contact("XBB", "admin")
	readAll()
	sendN("final", 5)
	for _, id := range ids {
		waitStatus(t, adminA, id, pocnetv1.Status_STATUS_DELIVERED)
	}
	readAll()
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
