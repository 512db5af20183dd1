package pocctl

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/datakey"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

var intact = regexp.MustCompile(`^audit log intact: (\d+) records, head ([0-9a-f]{64})\nto detect later removals, verify with --expect-head (\d+:[0-9a-f]{64})\n$`)

// mustRun runs pocctl and fails the test unless it exits with want.
func mustRun(t *testing.T, want int, args ...string) (string, string) {
	t.Helper()
	code, out, errOut := run(t, "", args...)
	if code != want {
		t.Fatalf("pocctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out, errOut
}

// TestAuditAgainstRealNode exports and verifies a real node's log, live
// and from a file, as text and JSON, and checks who may read it.
func TestAuditAgainstRealNode(t *testing.T) {
	fed := testfed.Start(t, testfed.Options{Quiet: true})
	xaa := fed.States()[0]
	admin := fed.OperatorConfigFile(xaa, "admin")

	out, _ := mustRun(t, ExitOK, "--config", admin, "audit", "verify")
	m := intact.FindStringSubmatch(out)
	if m == nil || m[1] != "3" {
		t.Fatalf("live verify of a fresh node (the genesis in force, its start, and this export):\n%s", out)
	}
	noted := m[3]

	file := filepath.Join(t.TempDir(), "audit.jsonl")
	_, errOut := mustRun(t, ExitOK, "--config", admin, "audit", "export", "--out", file)
	if errOut != "exported 4 audit records to "+file+"; check them with: pocctl audit verify "+file+"\n" {
		t.Fatalf("export summary %q", errOut)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v, %v", fi, err)
	}
	out, _ = mustRun(t, ExitOK, "audit", "verify", file, "--expect-head", noted)
	if m := intact.FindStringSubmatch(out); m == nil || m[1] != "4" {
		t.Fatalf("verify FILE:\n%s", out)
	}
	data, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 5 || !strings.Contains(lines[0], `"node":"spiffe://`+fed.Certs.ID+`/state/`+xaa+`/node"`) {
		t.Fatalf("export file:\n%s", data)
	}
	var rec pocnetv1.AuditRecord
	var line struct{ Record []byte }
	if json.Unmarshal([]byte(lines[4]), &line) != nil || proto.Unmarshal(line.Record, &rec) != nil ||
		rec.GetAction() != pocnetv1.AuditAction_AUDIT_ACTION_EXPORTED || rec.GetActor() != fed.Certs.State(xaa).Operator("admin").ID.String() {
		t.Errorf("last exported record: %v", &rec)
	}

	// Standard output, and JSON.
	out, _ = mustRun(t, ExitOK, "--config", admin, "audit", "export")
	if !strings.HasPrefix(out, `{"format":"pocnet-audit-v1",`) || strings.Count(out, "\n") != 6 {
		t.Fatalf("export to stdout:\n%s", out)
	}
	out, _ = mustRun(t, ExitOK, "--config", admin, "-o", "json", "audit", "verify")
	var doc struct {
		Intact  bool   `json:"intact"`
		Records int    `json:"records"`
		Head    string `json:"head"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || !doc.Intact || doc.Records != 6 {
		t.Fatalf("verify -o json: %v\n%s", err, out)
	}
	out, _ = mustRun(t, ExitOK, "--config", admin, "audit", "head")
	if out != doc.Head+"\n" {
		t.Fatalf("audit head %q, want %q (nothing recorded since)", out, doc.Head)
	}

	// A noted head the log does not contain: the log was rewritten.
	bogus := strings.Split(noted, ":")[0] + ":" + strings.Repeat("ab", 32)
	_, errOut = mustRun(t, ExitBroken, "--config", admin, "audit", "verify", "--expect-head", bogus)
	if !strings.HasPrefix(errOut, "pocctl: audit log broken: record 3 differs from the head given with --expect-head: hash ") {
		t.Fatalf("verify with a wrong noted head: %q", errOut)
	}

	// Only admin operators.
	_, errOut = mustRun(t, ExitError, "--config", fed.OperatorConfigFile(xaa, "technical"), "audit", "verify")
	if !strings.Contains(errOut, "is not an admin operator of "+xaa) || !strings.HasSuffix(errOut, "(PermissionDenied)\n") {
		t.Fatalf("technical operator: %q", errOut)
	}
	_, errOut = mustRun(t, ExitUsage, "--config", admin, "audit", "verify", "--expect-head", "12")
	if !strings.Contains(errOut, "--expect-head: head \"12\": want SEQ:HASH") {
		t.Fatalf("bad --expect-head: %q", errOut)
	}
	_, errOut = mustRun(t, ExitError, "audit", "verify", filepath.Join(t.TempDir(), "none.jsonl"))
	if !strings.Contains(errOut, "no such file") {
		t.Fatalf("verify of a missing file: %q", errOut)
	}
}

// auditKey is the store's key of audit record seq ('a' and the seq, 8
// bytes big-endian; see internal/store/keys.go).
func auditKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{'a'}, seq)
}

// TestAuditVerifyDetectsEditsOnDisk stops a node, edits its audit log in
// the Pebble store directly, as someone with the disk could, restarts it,
// and expects pocctl audit verify to say which record and what, and to exit
// with ExitBroken: live, and from an export.
func TestAuditVerifyDetectsEditsOnDisk(t *testing.T) {
	tests := []struct {
		name string
		// edit changes the store as someone holding the disk and, but for
		// the last case, the node's data key could.
		edit func(t *testing.T, db *pebble.DB, keys *datakey.Ring)
		want string
	}{
		{"altered", func(t *testing.T, db *pebble.DB, keys *datakey.Ring) {
			v := get(t, db, keys, 3)
			var e pocnetv1.AuditEntry
			var rec pocnetv1.AuditRecord
			if proto.Unmarshal(v, &e) != nil || proto.Unmarshal(e.GetRecord(), &rec) != nil {
				t.Fatal("record 3 does not decode")
			}
			rec.Actor = "spiffe://someone/else"
			e.Record, _ = proto.Marshal(&rec)
			v, _ = proto.Marshal(&e)
			set(t, db, keys, 3, v)
		}, "record 3 altered: hash does not match its contents"},
		{"deleted", func(t *testing.T, db *pebble.DB, _ *datakey.Ring) {
			if err := db.Delete(auditKey(3), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}, "record 3 missing: seq goes from 2 to 4"},
		{"swapped", func(t *testing.T, db *pebble.DB, keys *datakey.Ring) {
			three, four := get(t, db, keys, 3), get(t, db, keys, 4)
			set(t, db, keys, 3, four)
			set(t, db, keys, 4, three)
		}, "records out of order at 3: record 3 comes after record 4"},
		{"swapped without the data key", func(t *testing.T, db *pebble.DB, _ *datakey.Ring) {
			three, four := get(t, db, nil, 3), get(t, db, nil, 4)
			set(t, db, nil, 3, four)
			set(t, db, nil, 4, three)
		}, "record 3 altered: not a valid audit record (its bytes do not decode)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fed := testfed.Start(t, testfed.Options{Quiet: true})
			xaa := fed.States()[0]
			admin := fed.OperatorConfigFile(xaa, "admin")
			// Records: 1 started, 2-4 exported, 5 stopped.
			for range 3 {
				mustRun(t, ExitOK, "--config", admin, "audit", "export", "--out", filepath.Join(t.TempDir(), "x.jsonl"))
			}
			fed.Stop(xaa)
			db, err := pebble.Open(fed.Node(xaa).Config.DataDir, &pebble.Options{Logger: testLogger{t}})
			if err != nil {
				t.Fatal(err)
			}
			keys, err := fed.Node(xaa).Config.DataKeys()
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(t, db, keys)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			fed.Restart(xaa)

			out, errOut := mustRun(t, ExitBroken, "--config", admin, "audit", "verify")
			if out != "" || errOut != "pocctl: audit log broken: "+tt.want+"\n" {
				t.Fatalf("live verify: stdout %q, stderr %q, want %q", out, errOut, tt.want)
			}
			file := filepath.Join(t.TempDir(), "audit.jsonl")
			mustRun(t, ExitOK, "--config", admin, "audit", "export", "--out", file)
			_, errOut = mustRun(t, ExitBroken, "audit", "verify", file)
			if errOut != "pocctl: audit log broken: "+tt.want+"\n" {
				t.Fatalf("verify FILE: stderr %q, want %q", errOut, tt.want)
			}
			out, _ = mustRun(t, ExitBroken, "-o", "json", "audit", "verify", file)
			var doc struct {
				Intact bool   `json:"intact"`
				Seq    int    `json:"seq"`
				Error  string `json:"error"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Intact || doc.Seq != 3 || doc.Error != tt.want {
				t.Fatalf("verify -o json: %v\n%s", err, out)
			}
		})
	}
}

// get reads audit record seq, opened with keys, or as stored if keys is nil.
func get(t *testing.T, db *pebble.DB, keys *datakey.Ring, seq uint64) []byte {
	t.Helper()
	v, closer, err := db.Get(auditKey(seq))
	if err != nil {
		t.Fatalf("audit record %d: %v", seq, err)
	}
	defer closer.Close()
	if keys == nil {
		return append([]byte(nil), v...)
	}
	p, err := keys.Open(v, auditKey(seq))
	if err != nil {
		t.Fatalf("audit record %d: %v", seq, err)
	}
	return p
}

// set writes audit record seq, sealed with keys, or as given if keys is nil.
func set(t *testing.T, db *pebble.DB, keys *datakey.Ring, seq uint64, v []byte) {
	t.Helper()
	if keys != nil {
		v = keys.Seal(v, auditKey(seq))
	}
	if err := db.Set(auditKey(seq), v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// testLogger keeps Pebble's recovery chatter out of the test output.
type testLogger struct{ t *testing.T }

func (l testLogger) Infof(string, ...any)              {}
func (l testLogger) Errorf(format string, args ...any) { l.t.Logf(format, args...) }
func (l testLogger) Fatalf(format string, args ...any) { l.t.Fatalf(format, args...) }
