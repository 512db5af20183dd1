package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pocnet/pocnet/internal/datakey"
)

const good = `state: XAA
listen: 127.0.0.1:7401
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
`

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Level != "info" || c.Log.Format != "json" || c.Relay.MaxBackoff != 30*time.Second || c.ShutdownTimeout != 10*time.Second || c.Reflection || c.Metrics.Listen != "" {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	cases := []struct{ edit, want string }{
		{strings.Replace(good, "state: XAA", "state: xaa", 1), "state:"},
		{strings.Replace(good, "state: XAA\n", "", 1), "state: is required"},
		{strings.Replace(good, "listen: 127.0.0.1:7401", "listen: localhost", 1), "listen:"},
		{strings.Replace(good, "data_dir: data\n", "", 1), "data_dir: is required"},
		{strings.Replace(good, "genesis: ../../genesis.json\n", "", 1), "genesis: is required"},
		{strings.Replace(good, "genesis: ../../genesis.json\n", "genesis: \"\"\n", 1), "genesis: is required"},
		{strings.Replace(good, "genesis: ../../genesis.json", "directory: ../../directory.json", 1), "directory: is no longer read"},
		{strings.Replace(good, "data_key_file: data.key\n", "", 1), "data_key_file: is required"},
		{strings.Replace(good, "data_key_file: data.key", "data_key_file: ./data/keys", 1), "data_key_file: ./data/keys is inside data_dir data"},
		{strings.Replace(good, "  key: node-key.pem\n", "", 1), "tls.key: is required"},
		{good + "log:\n  level: loud\n", "log.level:"},
		{good + "log:\n  format: xml\n", "log.format:"},
		{good + "relay:\n  max_backoff: 24h\n", "relay.max_backoff:"},
		{good + "relay:\n  deliver_timeout: 1ms\n", "relay.deliver_timeout:"},
		{good + "relay:\n  max_backof: 1s\n", "max_backof"},
		{good + "metrics:\n  listen: localhost\n", "metrics.listen: \"localhost\" is not host:port"},
		{good + "metrics:\n  listen: \"127.0.0.1:\"\n", "metrics.listen: \"127.0.0.1:\" is not host:port"},
		{good + "metrics:\n  listen: 127.0.0.1:7401\n", "metrics.listen: 127.0.0.1:7401 is the node's own listen address"},
		{good + "listne: x\n", "listne"},
		{good + "reflection: maybe\n", "line 13"},
		{strings.Replace(good, "  signing: signing-key.pem\n", "", 1), "keys.signing: is required"},
		{strings.Replace(good, "  encryption:\n    - encryption-key.pem\n", "", 1), "keys.encryption: at least one"},
		{strings.Replace(good, "    - encryption-key.pem\n", "    - \"\"\n", 1), "keys.encryption[0]: is empty"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.edit))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config\n%s\ngot error %v, want one containing %q", tc.edit, err, tc.want)
		}
	}
}

func TestLoadResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "XAA", "node", "pocnode.yaml")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "genesis.json"); c.Genesis != want {
		t.Fatalf("genesis = %s, want %s", c.Genesis, want)
	}
	if want := filepath.Join(dir, "XAA", "node", "data"); c.DataDir != want {
		t.Fatalf("data_dir = %s, want %s", c.DataDir, want)
	}
	if want := filepath.Join(dir, "XAA", "node", "encryption-key.pem"); c.Keys.Encryption[0] != want {
		t.Fatalf("keys.encryption[0] = %s, want %s", c.Keys.Encryption[0], want)
	}
	if want := filepath.Join(dir, "XAA", "node", "data.key"); c.DataKeyFile != want {
		t.Fatalf("data_key_file = %s, want %s", c.DataKeyFile, want)
	}
}

// TestDataKeySources: the data keys come from the file or from the
// environment, never from both, and never from inside the data directory.
func TestDataKeySources(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "data.key")
	ring, err := datakey.Add(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(strings.Replace(good, "data.key", keyFile, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.DataKeys(); err != nil || r.Current() != ring.Current() {
		t.Fatalf("DataKeys from the file = %v, %v", r, err)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DataKeys(); err == nil || !strings.HasPrefix(err.Error(), "data_key_file: ") || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("DataKeys from a 0644 file = %v", err)
	}

	t.Setenv(datakey.EnvVar, string(datakey.Marshal(ring)))
	if _, err := Parse([]byte(good)); err == nil || !strings.Contains(err.Error(), "data_key_file: is set, and so is the environment variable "+datakey.EnvVar) {
		t.Fatalf("both sources = %v", err)
	}
	c, err = Parse([]byte(strings.Replace(good, "data_key_file: data.key\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.DataKeys(); err != nil || r.Current() != ring.Current() {
		t.Fatalf("DataKeys from the environment = %v, %v", r, err)
	}
	t.Setenv(datakey.EnvVar, "deadbeef nonsense")
	if _, err := c.DataKeys(); err == nil || !strings.Contains(err.Error(), "environment variable "+datakey.EnvVar+", entry 1") {
		t.Fatalf("DataKeys from a bad environment variable = %v", err)
	}

	// An absolute key path inside a relative data_dir is caught once both
	// are resolved.
	p := filepath.Join(dir, "pocnode.yaml")
	cfg := strings.Replace(good, "data_key_file: data.key", "data_key_file: "+filepath.Join(dir, "data", "k"), 1)
	os.Unsetenv(datakey.EnvVar)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "is inside data_dir") {
		t.Fatalf("Load with the key file inside the data folder = %v", err)
	}
}
