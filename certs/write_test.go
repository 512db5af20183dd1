package certs_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/datakey"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
)

func TestWriteRoundTrip(t *testing.T) {
	f := generate(t, certs.Options{Count: 2, BasePort: 7401})
	dir := filepath.Join(t.TempDir(), "fed")
	if err := f.Write(dir); err != nil {
		t.Fatalf("Write: %v", err)
	}

	want := map[string]fs.FileMode{
		"directory.json": 0o644,
		"genesis.json":   0o644,
	}
	for _, s := range f.States {
		want[s.Code] = fs.ModeDir | 0o700
		want[s.Code+"/ca.pem"] = 0o644
		want[s.Code+"/ca-key.pem"] = 0o600
		want[s.Code+"/node"] = fs.ModeDir | 0o700
		want[s.Code+"/node/node.pem"] = 0o644
		want[s.Code+"/node/node-key.pem"] = 0o600
		want[s.Code+"/node/signing-key.pem"] = 0o600
		want[s.Code+"/node/encryption-key.pem"] = 0o600
		want[s.Code+"/node/data.key"] = 0o600
		want[s.Code+"/node/pocnode.yaml"] = 0o644
		want[s.Code+"/operators"] = fs.ModeDir | 0o700
		for _, op := range s.Operators {
			od := s.Code + "/operators/" + op.ID.Role + "-" + op.ID.Name
			want[od] = fs.ModeDir | 0o700
			want[od+"/cert.pem"] = 0o644
			want[od+"/key.pem"] = 0o600
			want[od+"/pocctl.yaml"] = 0o644
		}
	}
	got := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, m := range want {
		if got[p] != m {
			t.Errorf("%s: mode %v, want %v", p, got[p], m)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("unexpected file %s (a leftover temporary file?)", p)
		}
	}

	d, err := directory.Load(filepath.Join(dir, "directory.json"))
	if err != nil {
		t.Fatalf("directory.Load: %v", err)
	}
	if !proto.Equal(d.Proto(), f.Directory) {
		t.Error("directory read back differs from the generated one")
	}
	// The genesis holds the same directory and verifies: every state signed.
	genesis, err := governance.LoadGenesis(filepath.Join(dir, "genesis.json"))
	if err != nil {
		t.Fatalf("LoadGenesis: %v", err)
	}
	chain, err := governance.NewChain(genesis, t0)
	if err != nil {
		t.Fatalf("NewChain(genesis.json): %v", err)
	}
	if v := chain.Latest(); !proto.Equal(v.Directory().Proto(), f.Directory) || !slices.Equal(v.Signers(), []string{"XAA", "XBB"}) {
		t.Errorf("genesis.json: directory equal %v, signers %v", proto.Equal(v.Directory().Proto(), f.Directory), v.Signers())
	}

	for _, s := range f.States {
		pairs := []struct {
			cert, key string
			id        identity.ID
		}{{filepath.Join(dir, s.Code, "node", "node.pem"), filepath.Join(dir, s.Code, "node", "node-key.pem"), s.Node.ID}}
		for _, op := range s.Operators {
			od := filepath.Join(dir, s.Code, "operators", certs.OperatorDir(op))
			pairs = append(pairs, struct {
				cert, key string
				id        identity.ID
			}{filepath.Join(od, "cert.pem"), filepath.Join(od, "key.pem"), op.ID})
		}
		for _, p := range pairs {
			kp, err := tls.LoadX509KeyPair(p.cert, p.key)
			if err != nil {
				t.Fatalf("LoadX509KeyPair(%s): %v", p.cert, err)
			}
			if id, err := identity.FromCertificate(kp.Leaf); err != nil || id != p.id {
				t.Errorf("%s: identity %v, %v; want %v", p.cert, id, err, p.id)
			}
			keyPEM, _ := os.ReadFile(p.key)
			if !strings.HasPrefix(string(keyPEM), "-----BEGIN PRIVATE KEY-----\n") {
				t.Errorf("%s is not a PKCS#8 PRIVATE KEY block", p.key)
			}
		}
		sk, err := envelope.LoadSigningKey(filepath.Join(dir, s.Code, "node", "signing-key.pem"))
		if err != nil || !sk.Equal(s.SigningKey) {
			t.Errorf("%s signing key does not load back: %v", s.Code, err)
		}
		ek, id, err := envelope.LoadEncryptionKey(filepath.Join(dir, s.Code, "node", "encryption-key.pem"))
		if err != nil || string(ek.PublicKey().Bytes()) != string(s.EncryptionKey.PublicKey().Bytes()) || id != directory.EncryptionKeyID(ek.PublicKey().Bytes()) {
			t.Errorf("%s encryption key does not load back: %v", s.Code, err)
		}
		caPEM, _ := os.ReadFile(filepath.Join(dir, s.Code, "ca.pem"))
		if string(caPEM) != string(s.CA.CertPEM) {
			t.Errorf("%s/ca.pem differs from the CA", s.Code)
		}
	}

	nodeYAML, _ := os.ReadFile(filepath.Join(dir, "XBB", "node", "pocnode.yaml"))
	wantNode := `state: XBB
listen: 127.0.0.1:7402
data_dir: data
data_key_file: data.key
genesis: ../../genesis.json
tls:
  cert: node.pem
  key: node-key.pem
keys:
  signing: signing-key.pem
  encryption:
    - encryption-key.pem
log:
  level: info
  format: console
reflection: false
`
	if string(nodeYAML) != wantNode {
		t.Errorf("pocnode.yaml =\n%s\nwant\n%s", nodeYAML, wantNode)
	}
	if _, err := datakey.Load(filepath.Join(dir, "XBB", "node", certs.DataKeyFile)); err != nil {
		t.Errorf("data key file: %v", err)
	}
	ctlDir := filepath.Join(dir, "XBB", "operators", "technical-duty-officer")
	ctlYAML, _ := os.ReadFile(filepath.Join(ctlDir, "pocctl.yaml"))
	wantCtl := "address: 127.0.0.1:7402\ncert: cert.pem\nkey: key.pem\nca: ../../ca.pem\n"
	if string(ctlYAML) != wantCtl {
		t.Errorf("pocctl.yaml =\n%s\nwant\n%s", ctlYAML, wantCtl)
	}
	// The relative paths resolve from each file's own folder.
	for _, rel := range []struct{ from, path, want string }{
		{filepath.Join(dir, "XBB", "node"), "../../genesis.json", filepath.Join(dir, "genesis.json")},
		{ctlDir, "../../ca.pem", filepath.Join(dir, "XBB", "ca.pem")},
	} {
		if got := filepath.Join(rel.from, rel.path); got != rel.want {
			t.Errorf("%s from %s is %s, want %s", rel.path, rel.from, got, rel.want)
		}
	}
}

func TestWriteRefusesExistingFederation(t *testing.T) {
	dir := t.TempDir()
	if err := generate(t, certs.Options{Count: 1}).Write(dir); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "XAA", "ca-key.pem"))
	err := generate(t, certs.Options{Count: 1}).Write(dir)
	if !errors.Is(err, certs.ErrExists) || !strings.Contains(err.Error(), filepath.Join(dir, "directory.json")) {
		t.Fatalf("second Write = %v, want ErrExists naming directory.json", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "XAA", "ca-key.pem"))
	if string(before) != string(after) {
		t.Error("refused Write replaced a key")
	}
}

func TestWriteErrorNamesPath(t *testing.T) {
	f := generate(t, certs.Options{Count: 1})
	tmp := t.TempDir()
	// A file where the state's folder must go.
	blocked := filepath.Join(tmp, "fed")
	if err := os.MkdirAll(blocked, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(blocked, "XAA"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := f.Write(blocked)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(blocked, "XAA")) {
		t.Fatalf("Write = %v, want an error naming %s", err, filepath.Join(blocked, "XAA"))
	}
	if _, err := os.Stat(filepath.Join(blocked, "directory.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a failed Write left a directory.json")
	}

	// An invalid directory is refused before anything is written.
	f.Directory.Members[0].Endpoints = []string{"no-port"}
	empty := filepath.Join(tmp, "empty")
	err = f.Write(empty)
	if !errors.Is(err, directory.ErrInvalid) || !strings.Contains(err.Error(), "members[0].endpoints[0]") {
		t.Fatalf("Write with a bad endpoint = %v", err)
	}
	if _, err := os.Stat(empty); !errors.Is(err, fs.ErrNotExist) {
		t.Error("Write created the folder of an invalid federation")
	}
}

func TestWriteUsesEditedEndpoints(t *testing.T) {
	// Tests listen on 127.0.0.1:0 and fill the endpoints in afterwards.
	f := generate(t, certs.Options{Count: 1})
	f.Directory.Members[0].Endpoints = []string{"[::1]:40001"}
	dir := t.TempDir()
	if err := f.Write(dir); err != nil {
		t.Fatal(err)
	}
	nodeYAML, _ := os.ReadFile(filepath.Join(dir, "XAA", "node", "pocnode.yaml"))
	if !strings.Contains(string(nodeYAML), "\nlisten: \"[::1]:40001\"\n") {
		t.Errorf("pocnode.yaml does not quote the IPv6 endpoint:\n%s", nodeYAML)
	}
}

func TestYAMLString(t *testing.T) {
	f := generate(t, certs.Options{States: []string{"YES", "OFF", "XAA"}})
	dir := t.TempDir()
	if err := f.Write(dir); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ state, want string }{
		// YAML 1.1 readers take these plain scalars for booleans.
		{"YES", `state: "YES"`},
		{"OFF", `state: "OFF"`},
		{"XAA", `state: XAA`},
	}
	for _, tt := range tests {
		b, _ := os.ReadFile(filepath.Join(dir, tt.state, "node", "pocnode.yaml"))
		if first, _, _ := strings.Cut(string(b), "\n"); first != tt.want {
			t.Errorf("%s: first line %q, want %q", tt.state, first, tt.want)
		}
	}
}

// TestConfigsDecode reads the written configuration files with the YAML
// library the node and the CLI use, including values a careless writer
// would turn into booleans or sequences.
func TestConfigsDecode(t *testing.T) {
	f := generate(t, certs.Options{States: []string{"YES", "OFF", "XAA"}})
	f.Directory.Members[1].Endpoints = []string{"[::1]:7402"}
	dir := t.TempDir()
	if err := f.Write(dir); err != nil {
		t.Fatal(err)
	}
	type node struct {
		State   string `yaml:"state"`
		Listen  string `yaml:"listen"`
		DataDir string `yaml:"data_dir"`
		Genesis string `yaml:"genesis"`
		TLS     struct {
			Cert string `yaml:"cert"`
			Key  string `yaml:"key"`
		} `yaml:"tls"`
		Keys struct {
			Signing    string   `yaml:"signing"`
			Encryption []string `yaml:"encryption"`
		} `yaml:"keys"`
		Log struct {
			Level  string `yaml:"level"`
			Format string `yaml:"format"`
		} `yaml:"log"`
		Reflection  bool   `yaml:"reflection"`
		DataKeyFile string `yaml:"data_key_file"`
	}
	type ctl struct {
		Address string `yaml:"address"`
		Cert    string `yaml:"cert"`
		Key     string `yaml:"key"`
		CA      string `yaml:"ca"`
	}
	decode := func(path string, v any) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	tests := []struct{ state, listen string }{
		{"YES", "127.0.0.1:0"},
		{"OFF", "[::1]:7402"},
		{"XAA", "127.0.0.1:0"},
	}
	for _, tt := range tests {
		var n node
		decode(filepath.Join(dir, tt.state, "node", "pocnode.yaml"), &n)
		if n.State != tt.state || n.Listen != tt.listen || n.DataDir != "data" || n.DataKeyFile != "data.key" || n.Genesis != "../../genesis.json" ||
			n.TLS.Cert != "node.pem" || n.TLS.Key != "node-key.pem" || n.Log.Level != "info" || n.Log.Format != "console" || n.Reflection {
			t.Errorf("%s pocnode.yaml = %+v", tt.state, n)
		}
		var c ctl
		decode(filepath.Join(dir, tt.state, "operators", "admin-duty", "pocctl.yaml"), &c)
		if c != (ctl{Address: tt.listen, Cert: "cert.pem", Key: "key.pem", CA: "../../ca.pem"}) {
			t.Errorf("%s pocctl.yaml = %+v", tt.state, c)
		}
	}
}
