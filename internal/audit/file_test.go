package audit

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

const testNode = "spiffe://pocnet.test/state/XAA/node"

// export writes entries as an export file with head as the node's head.
func export(t testing.TB, entries []*pocnetv1.AuditEntry, head Head) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, FileHeader{Node: testNode, ExportedAt: t0, Head: head})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFileRoundTrip(t *testing.T) {
	entries, head := chain(t, 5)
	file := export(t, entries, head)
	lines := strings.Split(strings.TrimSuffix(string(file), "\n"), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], `{"format":"pocnet-audit-v1","node":"`+testNode+`","exported_at":"2026-03-14T03:00:00Z","start":"0:0000`) ||
		!strings.HasSuffix(lines[0], `"head":"`+head.String()+`"}`) || !strings.HasPrefix(lines[1], `{"record":"`) {
		t.Fatalf("file:\n%s", file)
	}
	res, err := VerifyFile(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 5 || res.Head.String() != head.String() || res.Header.Node != testNode || !res.Header.ExportedAt.Equal(t0) {
		t.Fatalf("result %+v", res)
	}
	// Against a head noted when the log had 3 records, and a wrong one.
	if _, err := VerifyFile(bytes.NewReader(file), Anchor{Head: Head{Seq: 3, Hash: entries[2].GetHash()}}); err != nil {
		t.Fatalf("noted head: %v", err)
	}
	_, err = VerifyFile(bytes.NewReader(file), Anchor{Head: Head{Seq: 3, Hash: entries[1].GetHash()}, Label: "the noted head"})
	if err == nil || !strings.HasPrefix(err.Error(), "record 3 differs from the noted head") {
		t.Fatalf("wrong noted head: %v", err)
	}
}

func TestFileProblems(t *testing.T) {
	entries, head := chain(t, 4)
	good := string(export(t, entries, head))
	lines := strings.SplitAfter(good, "\n")
	tests := []struct {
		name    string
		file    string
		problem Problem
		msg     string
	}{
		{"empty", "", Malformed, "line 1: the file is empty"},
		{"not a header", "{}\n", Malformed, `line 1: format "", want "pocnet-audit-v1"`},
		{"header with an unknown field", strings.Replace(lines[0], `{"format"`, `{"x":1,"format"`, 1) + strings.Join(lines[1:], ""), Malformed, `line 1: not a pocnet-audit-v1 header: json: unknown field "x"`},
		{"bad head", strings.Replace(lines[0], `"head":"4:`, `"head":"four:`, 1), Malformed, "line 1: head: "},
		{"cut mid-line", good[:len(good)-10], Malformed, "line 5: the file ends without a newline"},
		{"a line of garbage", lines[0] + lines[1] + "garbage\n" + strings.Join(lines[2:], ""), Malformed, "line 3: not an audit entry"},
		{"an entry with an unknown field", lines[0] + strings.Replace(lines[1], `{"record"`, `{"seq":1,"record"`, 1), Malformed, `line 2: not an audit entry: json: unknown field "seq"`},
		{"two objects on a line", lines[0] + strings.TrimSuffix(lines[1], "\n") + "{}\n", Malformed, "line 2: not an audit entry: data after the object"},
		{"bad base64", lines[0] + strings.Replace(lines[1], `"record":"`, `"record":"*`, 1), Malformed, "line 2: not an audit entry"},
		{"last line removed", strings.Join(lines[:4], ""), Truncated, "log ends at 3 but the export's head is 4 (records removed from the end)"},
		{"a line removed", lines[0] + lines[1] + strings.Join(lines[3:], ""), Missing, "record 2 missing: seq goes from 1 to 3"},
		{"lines swapped", lines[0] + lines[1] + lines[3] + lines[2] + lines[4], OutOfOrder, "records out of order at 2: record 2 comes after record 3"},
		{"a line too long", lines[0] + strings.Repeat(" ", MaxLine+1) + "\n", Malformed, "line 2: longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyFile(strings.NewReader(tt.file))
			var ae *Error
			if !errors.As(err, &ae) || !errors.Is(err, ErrBroken) || ae.Problem != tt.problem || !strings.HasPrefix(err.Error(), tt.msg) {
				t.Fatalf("VerifyFile = %v (%v), want %v: %q", err, ae, tt.problem, tt.msg)
			}
		})
	}
	// Windows line ends are no problem.
	if _, err := VerifyFile(strings.NewReader(strings.ReplaceAll(good, "\n", "\r\n"))); err != nil {
		t.Fatalf("CRLF: %v", err)
	}
}

// errReader fails after its data.
type errReader struct{ data []byte }

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestFileReadFailureIsNotBroken(t *testing.T) {
	entries, head := chain(t, 2)
	file := export(t, entries, head)
	_, err := VerifyFile(&errReader{data: file[:len(file)-5]})
	if err == nil || errors.Is(err, ErrBroken) || err.Error() != "disk on fire" {
		t.Fatalf("VerifyFile = %v, want the read error as is", err)
	}
}
