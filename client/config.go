package client

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config says how to reach the operator's own node.
type Config struct {
	// Address is host:port of the state's own node.
	Address string
	// CertFile and KeyFile are the operator certificate (which may be
	// followed by its intermediates) and its private key, PEM.
	CertFile, KeyFile string
	// CAFile holds the state's own CA certificate(s), PEM. The node must
	// verify against them; no other root is ever trusted.
	CAFile string

	// Certificate, when set, is used instead of CertFile and KeyFile.
	Certificate *tls.Certificate
	// CAs, when set, are used instead of CAFile.
	CAs []*x509.Certificate
}

// fileConfig is the YAML form of Config.
type fileConfig struct {
	Address string `yaml:"address"`
	Cert    string `yaml:"cert"`
	Key     string `yaml:"key"`
	CA      string `yaml:"ca"`
}

var configFields = "address, cert, key, ca"

// unknownFieldRE matches yaml.v3's message for a field not in fileConfig.
var unknownFieldRE = regexp.MustCompile(`^line (\d+): field (.+) not found in type `)

// LoadConfig reads a YAML configuration file with the fields address, cert,
// key and ca. Relative paths are resolved against the folder of the file, so
// a configuration and its certificates can be moved together. Unknown fields
// are errors, and every missing or invalid field is named in the error.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// A misspelt field must not silently leave a setting empty.
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("config %s: %s", path, yamlProblem(err))
	}
	dir := filepath.Dir(path)
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	cfg := Config{
		Address:  strings.TrimSpace(fc.Address),
		CertFile: resolve(fc.Cert),
		KeyFile:  resolve(fc.Key),
		CAFile:   resolve(fc.CA),
	}
	var problems []string
	if fc.Address == "" {
		problems = append(problems, "address is missing (host:port of your state's node)")
	} else if err := checkAddress(cfg.Address); err != nil {
		problems = append(problems, "address: "+err.Error())
	}
	for _, f := range []struct{ name, value, what string }{
		{"cert", fc.Cert, "PEM file of your operator certificate"},
		{"key", fc.Key, "PEM file of its private key"},
		{"ca", fc.CA, "PEM file of your state's CA certificate(s)"},
	} {
		if f.value == "" {
			problems = append(problems, fmt.Sprintf("%s is missing (%s)", f.name, f.what))
		}
	}
	if len(problems) > 0 {
		return Config{}, fmt.Errorf("config %s: %s", path, strings.Join(problems, "; "))
	}
	return cfg, nil
}

// yamlProblem turns yaml.v3's errors into messages naming the field.
func yamlProblem(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := unknownFieldRE.FindStringSubmatch(e); m != nil {
			msgs = append(msgs, fmt.Sprintf("line %s: unknown field %q (known fields: %s)", m[1], m[2], configFields))
			continue
		}
		msgs = append(msgs, e)
	}
	return strings.Join(msgs, "; ")
}

func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// Validate checks that c names an address, an operator certificate and key
// (files or Certificate) and the state's CA (file or CAs). It does not read
// the files; Dial does, and names the file that fails.
func (c Config) Validate() error {
	var problems []string
	if c.Address == "" {
		problems = append(problems, "address is missing (host:port of your state's node)")
	} else if err := checkAddress(c.Address); err != nil {
		problems = append(problems, "address: "+err.Error())
	}
	if c.Certificate == nil {
		if c.CertFile == "" {
			problems = append(problems, "cert is missing (operator certificate file, or Config.Certificate)")
		}
		if c.KeyFile == "" {
			problems = append(problems, "key is missing (operator private key file, or Config.Certificate)")
		}
	} else if len(c.Certificate.Certificate) == 0 || c.Certificate.PrivateKey == nil {
		problems = append(problems, "Config.Certificate has no certificate or no private key")
	}
	if len(c.CAs) == 0 && c.CAFile == "" {
		problems = append(problems, "ca is missing (your state's CA certificate file, or Config.CAs)")
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid client configuration: %s", strings.Join(problems, "; "))
	}
	return nil
}

// keyPair returns the operator certificate, from Certificate or the files.
func (c Config) keyPair() (tls.Certificate, *x509.Certificate, error) {
	var cert tls.Certificate
	if c.Certificate != nil {
		cert = *c.Certificate
	} else {
		var err error
		cert, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("operator certificate (cert %s, key %s): %w", c.CertFile, c.KeyFile, err)
		}
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		leaf, err = x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("operator certificate: %w", err)
		}
		cert.Leaf = leaf
	}
	return cert, leaf, nil
}

// caCerts returns the state's CA certificates, from CAs or CAFile.
func (c Config) caCerts() ([]*x509.Certificate, error) {
	if len(c.CAs) > 0 {
		return c.CAs, nil
	}
	data, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	var cas []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		ca, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca %s: %w", c.CAFile, err)
		}
		cas = append(cas, ca)
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("ca %s: no PEM CERTIFICATE block found", c.CAFile)
	}
	return cas, nil
}
