package pocctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRecordCommandsUsage(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.json")
	if err := os.WriteFile(junk, []byte(`{"not": "a transcript"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	noDir := filepath.Join(dir, "directory.json")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"verify needs the directory", []string{"thread", "verify", junk}, ExitUsage, `required flag(s) "directory" not set`},
		{"verify needs a file", []string{"thread", "verify", "--directory", noDir}, ExitUsage, "verify needs 1 argument(s): [FILE], got 0"},
		{"export needs an id", []string{"thread", "export"}, ExitUsage, "export needs 1 argument(s): [ID], got 0"},
		{"request needs a purpose", []string{"disclosure", "request", "0198c0de-0000-7000-8000-000000000001"}, ExitUsage, `required flag(s) "purpose" not set`},
		{"consent needs a file", []string{"disclosure", "consent"}, ExitUsage, "consent needs 1 argument(s): [FILE], got 0"},
		{"disclosure verify needs the directory", []string{"disclosure", "verify", junk}, ExitUsage, `required flag(s) "directory" not set`},
		{"missing directory file", []string{"thread", "verify", junk, "--directory", noDir}, ExitError, "pocctl: directory: open " + noDir},
		{"consent to a missing file", []string{"disclosure", "consent", filepath.Join(dir, "none.json")}, ExitError, "none.json: no such file"},
		{"consent to a file that is no bundle", []string{"disclosure", "consent", junk}, ExitError, "junk.json: disclosure bundle: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := run(t, "", tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tc.code, tc.want)
			}
		})
	}
	// The thread command still shows a thread by id, and now lists its
	// subcommands.
	code, out, _ := run(t, "", "thread", "--help")
	if code != ExitOK || !strings.Contains(out, "export") || !strings.Contains(out, "verify") {
		t.Errorf("thread --help: exit %d\n%s", code, out)
	}
}
