// Package config reads a node's configuration file (YAML) into a typed
// struct with defaults, and validates it, naming the field at fault. Unknown
// fields are errors: a mistyped key must never be silently ignored.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pocnet/pocnet/internal/datakey"
	"github.com/pocnet/pocnet/internal/identity"
)

// Config is a node's configuration.
type Config struct {
	// State is this node's ISO 3166-1 alpha-3 code.
	State string `yaml:"state"`
	// Listen is the host:port to serve on.
	Listen string `yaml:"listen"`
	// DataDir is the Pebble directory.
	DataDir string `yaml:"data_dir"`
	// DataKeyFile is the file of the keys that seal the store's values
	// (internal/datakey), mode 0600, outside DataDir. When it is empty the
	// keys are read from the environment variable POCNET_DATA_KEY; setting
	// both is an error.
	DataKeyFile string `yaml:"data_key_file"`
	// Genesis is the federation's genesis file: version 1 of its directory
	// chain, signed by every founding state (protobuf JSON of a
	// SignedVersion, as pocfed writes genesis.json). It is the node's trust
	// anchor: the directory is whatever the chain verified from it holds.
	Genesis string `yaml:"genesis"`
	TLS     TLS    `yaml:"tls"`
	Keys    Keys   `yaml:"keys"`
	Log     Log    `yaml:"log"`
	// Reflection enables gRPC server reflection for the node's operators.
	Reflection bool  `yaml:"reflection"`
	Relay      Relay `yaml:"relay"`
	// Metrics configures the Prometheus endpoint; off by default.
	Metrics Metrics `yaml:"metrics"`
	// ShutdownTimeout bounds the graceful stop; default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// TLS names the node's certificate (with its chain) and key, PEM.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Keys names the private halves of the keys the node's state publishes in
// the directory, PEM.
type Keys struct {
	// Signing is the Ed25519 key the node signs envelopes and receipts with.
	Signing string `yaml:"signing"`
	// Encryption lists the HPKE keys that open payloads sealed to the state:
	// every key the state lists in the directory, including retired ones
	// that envelopes still queued at other nodes may be sealed to.
	Encryption []string `yaml:"encryption"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error; default info.
	Level string `yaml:"level"`
	// Format is json or console; default json.
	Format string `yaml:"format"`
}

// Relay tunes delivery to peers.
type Relay struct {
	// MaxBackoff caps the wait between attempts to reach a failing peer;
	// default 30s.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// DeliverTimeout bounds one delivery call; default 15s.
	DeliverTimeout time.Duration `yaml:"deliver_timeout"`
}

// Metrics configures the node's Prometheus endpoint (package
// server/metrics).
type Metrics struct {
	// Listen is the host:port of a plain HTTP listener serving /metrics;
	// empty, the default, serves none. The metrics hold no message content
	// but name peers and count traffic: bind it to the loopback or to a
	// monitoring network.
	Listen string `yaml:"listen"`
}

// Load reads, defaults and validates the file at path. Relative paths in it
// are resolved against the file's folder.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.resolve(filepath.Dir(path))
	// Again on the resolved paths: one may have been absolute, the other not.
	if err := c.validateDataKeyFile(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse reads, defaults and validates a configuration.
func Parse(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		var top map[string]any
		if yaml.Unmarshal(data, &top) == nil {
			if _, ok := top["directory"]; ok {
				// A configuration written before the directory became a
				// signed chain: say what replaced the key.
				return nil, errors.New("directory: is no longer read: the node starts from the federation's signed genesis; name its genesis.json in genesis: instead")
			}
		}
		return nil, err
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// SetDefaults fills unset optional fields.
func (c *Config) SetDefaults() {
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.Relay.MaxBackoff == 0 {
		c.Relay.MaxBackoff = 30 * time.Second
	}
	if c.Relay.DeliverTimeout == 0 {
		c.Relay.DeliverTimeout = 15 * time.Second
	}
}

// Validate names the first field that is wrong.
func (c *Config) Validate() error {
	if c.State == "" {
		return errors.New("state: is required")
	}
	if err := identity.ValidateState(c.State); err != nil {
		return fmt.Errorf("state: %v", err)
	}
	if c.Listen == "" {
		return errors.New("listen: is required (host:port)")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port", c.Listen)
	}
	if c.Genesis == "" {
		return errors.New("genesis: is required (the federation's signed genesis file, genesis.json)")
	}
	for field, v := range map[string]string{"data_dir": c.DataDir, "tls.cert": c.TLS.Cert, "tls.key": c.TLS.Key, "keys.signing": c.Keys.Signing} {
		if v == "" {
			return fmt.Errorf("%s: is required", field)
		}
	}
	if len(c.Keys.Encryption) == 0 {
		return errors.New("keys.encryption: at least one encryption key file is required")
	}
	for i, p := range c.Keys.Encryption {
		if p == "" {
			return fmt.Errorf("keys.encryption[%d]: is empty", i)
		}
	}
	if err := c.validateDataKeyFile(); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		return fmt.Errorf("log.format: %q is not json or console", c.Log.Format)
	}
	if c.Metrics.Listen != "" {
		if _, port, err := net.SplitHostPort(c.Metrics.Listen); err != nil || port == "" {
			return fmt.Errorf("metrics.listen: %q is not host:port", c.Metrics.Listen)
		}
		if c.Metrics.Listen == c.Listen {
			return fmt.Errorf("metrics.listen: %s is the node's own listen address; the metrics need a listener of their own", c.Metrics.Listen)
		}
	}
	if c.ShutdownTimeout < 0 {
		return errors.New("shutdown_timeout: must be positive")
	}
	if c.Relay.MaxBackoff < time.Second || c.Relay.MaxBackoff > 10*time.Minute {
		return fmt.Errorf("relay.max_backoff: %v is outside 1s to 10m (a returning peer must be retried promptly)", c.Relay.MaxBackoff)
	}
	if c.Relay.DeliverTimeout < 100*time.Millisecond || c.Relay.DeliverTimeout > 5*time.Minute {
		return fmt.Errorf("relay.deliver_timeout: %v is outside 100ms to 5m", c.Relay.DeliverTimeout)
	}
	return nil
}

// validateDataKeyFile checks that the data keys have exactly one source and
// that the key file is not inside the data directory: a key kept with the
// data it seals, or copied with it into a backup, protects nothing.
func (c *Config) validateDataKeyFile() error {
	_, env := os.LookupEnv(datakey.EnvVar)
	switch {
	case c.DataKeyFile == "" && !env:
		return fmt.Errorf("data_key_file: is required, unless the environment variable %s holds the data keys", datakey.EnvVar)
	case c.DataKeyFile == "":
		return nil
	case env:
		// Two sources could hold different keys: refuse to guess.
		return fmt.Errorf("data_key_file: is set, and so is the environment variable %s; use one of them", datakey.EnvVar)
	}
	if rel, err := filepath.Rel(filepath.Clean(c.DataDir), filepath.Clean(c.DataKeyFile)); err == nil && filepath.IsLocal(rel) {
		return fmt.Errorf("data_key_file: %s is inside data_dir %s; keep the key away from the data it seals", c.DataKeyFile, c.DataDir)
	}
	return nil
}

// DataKeys loads the key ring that seals the store's values, from
// DataKeyFile or else from the environment variable POCNET_DATA_KEY.
func (c *Config) DataKeys() (*datakey.Ring, error) {
	if c.DataKeyFile == "" {
		r, err := datakey.FromEnv(datakey.EnvVar)
		if err != nil {
			return nil, fmt.Errorf("data_key_file: is empty, so the data keys come from %s: %w", datakey.EnvVar, err)
		}
		return r, nil
	}
	r, err := datakey.Load(c.DataKeyFile)
	if err != nil {
		return nil, fmt.Errorf("data_key_file: %w", err)
	}
	return r, nil
}

func (c *Config) resolve(base string) {
	paths := []*string{&c.DataDir, &c.Genesis, &c.TLS.Cert, &c.TLS.Key, &c.DataKeyFile, &c.Keys.Signing}
	for i := range c.Keys.Encryption {
		paths = append(paths, &c.Keys.Encryption[i])
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}
