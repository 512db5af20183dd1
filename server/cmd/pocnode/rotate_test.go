package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/datakey"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestDataKeyRotationWithoutDowntime: a running node gets a new data key
// by SIGHUP while it keeps taking messages; it reseals everything under the
// new key, and then starts with the new key alone and reads everything.
func TestDataKeyRotationWithoutDowntime(t *testing.T) {
	f := newFed(t, map[string]string{"XAA": freeAddr(t), "XBB": freeAddr(t)})
	f.start("XAA")
	tech, admin := f.client("XAA", "technical"), f.client("XAA", "admin")
	ids := sendN(t, tech, "before", 20)

	keyFile := filepath.Join(f.dir, "XAA", "node", certs.DataKeyFile)
	old, err := datakey.Load(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(pocnodeBin, "--config", f.configPath("XAA"), "--add-data-key").CombinedOutput(); err != nil {
		t.Fatalf("pocnode --add-data-key: %v\n%s", err, out)
	}
	ring, err := datakey.Load(keyFile)
	if err != nil || ring.Current() == old.Current() || len(ring.IDs()) != 2 {
		t.Fatalf("after --add-data-key the key file holds %v (%v), want the old key and a new current one", ring, err)
	}
	if err := f.procs["XAA"].cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, sendN(t, tech, "during", 20)...)
	testfed.WaitFor(t, "XAA to reseal everything under "+ring.Current().String(), func() bool {
		b, _ := os.ReadFile(f.procs["XAA"].log)
		return strings.Contains(string(b), "every value is sealed under the current data key")
	})
	ids = append(ids, sendN(t, tech, "after", 20)...)
	f.kill("XAA")

	// The old key leaves the key file: the store must not need it.
	only, err := ring.Without(old.Current())
	if err != nil {
		t.Fatal(err)
	}
	if err := datakey.Write(keyFile, only); err != nil {
		t.Fatal(err)
	}
	f.start("XAA")
	out := list(t, admin, pocnetv1.Direction_DIRECTION_OUTBOUND)
	if len(out) != len(ids) {
		t.Fatalf("XAA lists %d messages after rotation, want %d", len(out), len(ids))
	}
	for _, m := range out {
		if !strings.Contains(m.GetCommunication().GetSubject(), " ") {
			t.Fatalf("message %s unreadable after rotation: %v", m.GetId(), m.GetCommunication())
		}
	}
}
