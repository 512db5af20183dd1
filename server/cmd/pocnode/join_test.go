package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/testfed"
)

// TestStopWhileWaitingToBeAdmitted: the node of a participant the members
// have not admitted waits for them; SIGTERM then stops it as any node stops,
// with status 0 and the reason in its log, and a second start on the same
// store waits again.
func TestStopWhileWaitingToBeAdmitted(t *testing.T) {
	gen, err := certs.Generate(certs.Options{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	genesis, err := gen.Genesis()
	if err != nil {
		t.Fatal(err)
	}
	m, err := certs.NewMember(certs.MemberOptions{Federation: gen.ID, State: "XJJ", Endpoint: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "XJJ")
	if err := m.Write(dir, genesis); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		logPath := filepath.Join(dir, "pocnode.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(pocnodeBin, "--config", filepath.Join(dir, "node", "pocnode.yaml"))
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		readLog := func() string {
			b, _ := os.ReadFile(logPath)
			return string(b)
		}
		testfed.WaitFor(t, "the node to wait to be admitted", func() bool {
			select {
			case err := <-done:
				t.Fatalf("run %d: pocnode exited before waiting to be admitted: %v\n%s", run, err, readLog())
			default:
			}
			return strings.Contains(readLog(), "waiting to be admitted")
		})
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				t.Fatalf("run %d: pocnode stopped while waiting to be admitted exited with status %d, want 0\n%s", run, exit.ExitCode(), readLog())
			} else if err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("run %d: pocnode did not stop on SIGTERM while waiting to be admitted\n%s", run, readLog())
		}
		logFile.Close()
		if out := readLog(); !strings.Contains(out, "signal received while waiting to be admitted") {
			t.Fatalf("run %d: the log does not say why the node stopped:\n%s", run, out)
		}
	}
}
