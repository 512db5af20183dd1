package main

import (
	"bytes"
	"crypto/sha256"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/governance"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	nodeconfig "github.com/pocnet/pocnet/server/config"
)

// snapshot returns the hash of every file under dir, by path.
func snapshot(t *testing.T, dir string) map[string][sha256.Size]byte {
	t.Helper()
	out := map[string][sha256.Size]byte{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeFed writes a three-state federation with pocfed and returns its
// folder.
func writeFed(t *testing.T, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "_fed")
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"--out", out, "--states", "3"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("pocfed: exit %d: %s", code, stderr.String())
	}
	return out
}

// admit returns the child of the genesis in fed that adds entry with
// change, signed by signers with the keys pocfed wrote for them.
func admit(t *testing.T, fed string, c *governance.Chain, entry *pocnetv1.Member, change *pocnetv1.Change, signers ...string) *pocnetv1.SignedVersion {
	t.Helper()
	g := c.Latest()
	h := g.Hash()
	d := proto.Clone(g.Directory().Proto()).(*pocnetv1.Directory)
	d.Members = append(d.Members, entry)
	b, err := governance.Marshal(&pocnetv1.DirectoryVersion{
		Version: 2, ParentHash: h[:], IssuedAt: timestamppb.New(g.IssuedAt().Add(time.Second)), Directory: d, Rule: g.Rule(), Change: change,
	})
	if err != nil {
		t.Fatal(err)
	}
	sv := &pocnetv1.SignedVersion{Version: b}
	for _, s := range signers {
		k, err := envelope.LoadSigningKey(filepath.Join(fed, s, "node", "signing-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		sig, err := governance.Sign(s, k, b)
		if err != nil {
			t.Fatal(err)
		}
		sv.Signatures = append(sv.Signatures, sig)
	}
	return sv
}

// TestMember: pocfed member writes a joining state's material into its own
// folder, touching no existing file, and its entry is admissible: the
// members' admission of member.json verifies.
func TestMember(t *testing.T) {
	fed := writeFed(t, "--base-port", "7401")
	before := snapshot(t, fed)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"member", "--dir", fed, "--state", "XDD", "--name", "Republic of XDD"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := filepath.Join(fed, "XDD")
	for _, want := range []string{
		"XDD joins federation pocnet.example as a state member: material written to " + out,
		"entry      " + filepath.Join(out, "member.json") + "  (the members propose it as an admission",
		"genesis    " + filepath.Join(out, "genesis.json") + "  (copy of " + filepath.Join(fed, "genesis.json") + ")",
		"XDD  node spiffe://pocnet.example/state/XDD/node at 127.0.0.1:74",
		"operator spiffe://pocnet.example/state/XDD/operator/diplomatic/desk",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	after := snapshot(t, fed)
	for p, h := range before {
		if after[p] != h {
			t.Errorf("%s changed", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok && !strings.HasPrefix(p, out+string(filepath.Separator)) {
			t.Errorf("%s written outside the participant's folder", p)
		}
	}

	entry, err := certs.LoadMember(filepath.Join(out, "member.json"))
	if err != nil {
		t.Fatal(err)
	}
	if entry.GetState() != "XDD" || entry.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_STATE || entry.GetName() != "Republic of XDD" ||
		len(entry.GetPointsOfContact()) != 3 || len(entry.GetSigningKeys()) != 1 || len(entry.GetEncryptionKeys()) != 1 {
		t.Fatalf("member.json = %v", entry)
	}
	cfg, err := nodeconfig.Load(filepath.Join(out, "node", "pocnode.yaml"))
	if err != nil {
		t.Fatalf("the participant's node configuration: %v", err)
	}
	// A port after the members', on their host: the next one unless a
	// process of this machine holds it.
	ep := entry.GetEndpoints()[0]
	if host, port, _ := net.SplitHostPort(ep); host != "127.0.0.1" || port < "7404" || port > "7503" || len(port) != 4 {
		t.Errorf("endpoint %s, want 127.0.0.1:7404 or a port soon after", ep)
	}
	if cfg.State != "XDD" || cfg.Listen != ep || cfg.Genesis != filepath.Join(out, "genesis.json") {
		t.Errorf("config: state %s, listen %s, genesis %s", cfg.State, cfg.Listen, cfg.Genesis)
	}
	original := verifyGenesis(t, fed)
	if copied := verifyGenesis(t, out); copied.Latest().Hash() != original.Latest().Hash() {
		t.Error("the copied genesis is not the federation's")
	}

	// Under the default supermajority of 70%, three of three sign.
	if _, err := original.Add(admit(t, fed, original, entry, &pocnetv1.Change{Change: &pocnetv1.Change_Admission{Admission: &pocnetv1.Admission{State: "XDD"}}}, "XAA", "XBB"), time.Now()); err == nil {
		t.Fatal("an admission signed by two of three states verified under a 70% supermajority")
	}
	if _, err := original.Add(admit(t, fed, original, entry, &pocnetv1.Change{Change: &pocnetv1.Change_Admission{Admission: &pocnetv1.Admission{State: "XDD"}}}, "XAA", "XBB", "XCC"), time.Now()); err != nil {
		t.Fatalf("admission of member.json: %v", err)
	}
}

func TestMemberObserver(t *testing.T) {
	fed := writeFed(t, "--rule", "threshold:1", "--silence-period", "1h")
	out := filepath.Join(t.TempDir(), "elsewhere")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"member", "--dir", fed, "--state", "XOO", "--observer", "--listen", "localhost:7600", "--out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "XOO joins federation pocnet.example as an observer") || !strings.Contains(stdout.String(), "at localhost:7600") {
		t.Errorf("output:\n%s", stdout.String())
	}
	entry, err := certs.LoadMember(filepath.Join(out, "member.json"))
	if err != nil || entry.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_OBSERVER || entry.GetName() != "Testland XOO" {
		t.Fatalf("member.json = %v, %v", entry, err)
	}
	c := verifyGenesis(t, out)
	deadline := c.Latest().IssuedAt().Add(time.Second + time.Hour)
	change := &pocnetv1.Change{Change: &pocnetv1.Change_ObserverAdmission{ObserverAdmission: &pocnetv1.ObserverAdmission{State: "XOO", SilenceDeadline: timestamppb.New(deadline)}}}
	if _, err := c.Add(admit(t, fed, c, entry, change, "XBB"), deadline); err != nil {
		t.Fatalf("observer admission of member.json: %v", err)
	}
}

func TestMemberRefusals(t *testing.T) {
	fed := writeFed(t)
	notFed := t.TempDir()
	before := snapshot(t, fed)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--state", "XDD"}, 2, "--dir: is required"},
		{[]string{"--dir", fed}, 2, "--state: is required"},
		{[]string{"--dir", fed, "--state", "xdd"}, 2, `--state: "xdd" is not`},
		{[]string{"--dir", fed, "--state", "XDD", "--listen", "7404"}, 2, `--listen: "7404" is not host:port`},
		{[]string{"--dir", fed, "--state", "XDD", "--listen", "127.0.0.1:0"}, 2, `--listen: port "0" is not between 1 and 65535`},
		{[]string{"--dir", fed, "--state", "XDD", "--listen", "a b:7404"}, 2, "--listen:"},
		{[]string{"--dir", fed, "--state", "XDD", "--validity", "0s"}, 2, "--validity: 0s"},
		{[]string{"--dir", fed, "--state", "XDD", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--dir", notFed, "--state", "XDD"}, 1, "--dir: " + notFed + " holds no genesis.json"},
		{[]string{"--dir", fed, "--state", "XBB"}, 1, "--state: XBB is already a member of the federation pocnet.example"},
		{[]string{"--dir", fed, "--state", "XDD", "--out", filepath.Join(fed, "XAA")}, 1, "certs: " + filepath.Join(fed, "XAA") + " is not empty"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"member"}, tt.args...), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), "pocfed member: "+tt.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
	if after := snapshot(t, fed); !maps.Equal(before, after) {
		t.Error("a refused pocfed member changed the federation's files")
	}
	if _, err := os.Stat(filepath.Join(fed, "XDD")); !os.IsNotExist(err) {
		t.Error("a refused pocfed member left a folder")
	}
}

func TestMemberHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"member", "-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "-observer") || !strings.Contains(stderr.String(), "member.json") {
		t.Fatalf("exit %d, usage:\n%s", code, stderr.String())
	}
}
