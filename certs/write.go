package certs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/pocnet/pocnet/internal/datakey"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/governance"
)

// DirectoryFile is the name of the directory file at the top of a written
// federation: the genesis's directory in readable form, for tools that
// verify offline (pocctl thread verify --directory). Its presence marks a
// complete federation: Write writes it last and refuses to write into a
// folder that already has one.
const DirectoryFile = "directory.json"

// GenesisFile is the name of the genesis file (governance.LoadGenesis reads
// it): version 1 of the directory chain, signed by every founding state. It
// is the trust anchor every node's configuration names.
const GenesisFile = "genesis.json"

// DataKeyFile is the name of a node's data key file, in its node folder
// beside pocnode.yaml and outside its data folder.
const DataKeyFile = "data.key"

// File modes. Private keys are readable by their owner only; the folders are
// closed too, since the directory is visible to participants only.
const (
	dirMode    fs.FileMode = 0o700
	keyMode    fs.FileMode = 0o600
	publicMode fs.FileMode = 0o644
)

// ErrExists is returned (wrapped) by Write when the target already holds a
// federation.
var ErrExists = errors.New("a federation already exists there")

// Write writes the federation under dir:
//
//	dir/genesis.json, directory.json
//	dir/<STATE>/ca.pem, ca-key.pem
//	dir/<STATE>/node/node.pem, node-key.pem, signing-key.pem,
//	                 encryption-key.pem, data.key, pocnode.yaml
//	dir/<STATE>/operators/<role>-<name>/cert.pem, key.pem, pocctl.yaml
//
// genesis.json is the signed genesis made by Genesis from the Directory as
// it is when Write is called; directory.json is the same directory in
// readable form. Paths inside the YAML files are relative to the file's own
// folder, so the tree can be moved as a whole. Each node listens on, and
// each operator connects to, the first endpoint the directory lists for its
// state; each node's configuration names ../../genesis.json.
//
// Write refuses a dir that already holds a directory.json or a
// genesis.json, so that a federation in use is never overwritten with new
// keys.
func (f *Federation) Write(dir string) error {
	top := filepath.Join(dir, DirectoryFile)
	for _, p := range []string{top, filepath.Join(dir, GenesisFile)} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("certs: %s: %w (remove the folder first)", p, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("certs: %w", err)
		}
	}
	// The directory may have been edited since Generate (tests fill in the
	// endpoints), so it is validated again before anything is written.
	if _, err := directory.New(f.Directory); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	dirJSON, err := directory.Marshal(f.Directory)
	if err != nil {
		return fmt.Errorf("certs: encode directory: %w", err)
	}
	genesis, err := f.Genesis()
	if err != nil {
		return err
	}
	genesisJSON, err := governance.MarshalSigned(genesis)
	if err != nil {
		return fmt.Errorf("certs: encode genesis: %w", err)
	}
	if err := mkdir(dir); err != nil {
		return err
	}
	for _, st := range f.States {
		endpoint, err := f.endpointOf(st.Code)
		if err != nil {
			return err
		}
		if err := writeState(filepath.Join(dir, st.Code), st, endpoint, "../../"+GenesisFile); err != nil {
			return err
		}
	}
	// Last, so that an interrupted Write leaves no directory.json and can
	// simply be run again.
	if err := writeFile(filepath.Join(dir, GenesisFile), genesisJSON, publicMode); err != nil {
		return err
	}
	return writeFile(top, dirJSON, publicMode)
}

// file is one file Write creates.
type file struct {
	path string
	data []byte
	mode fs.FileMode
}

// writeState writes one state's keys, certificates and configuration files
// under sdir; its node listens on endpoint and reads the genesis at genesis,
// a path relative to the node's folder.
func writeState(sdir string, st *State, endpoint, genesis string) error {
	ndir := filepath.Join(sdir, "node")
	for _, d := range []string{sdir, ndir, filepath.Join(sdir, "operators")} {
		if err := mkdir(d); err != nil {
			return err
		}
	}
	sk, err := envelope.MarshalSigningKey(st.SigningKey)
	if err != nil {
		return err
	}
	ek, err := envelope.MarshalEncryptionKey(st.EncryptionKey)
	if err != nil {
		return err
	}
	// The node's data key is made here rather than in Generate: it belongs
	// to the node's disk, not to the federation's PKI or directory.
	dataKey, err := datakey.Generate()
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	dataKeys, err := datakey.NewRing(dataKey)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	files := []file{
		{filepath.Join(ndir, "signing-key.pem"), sk, keyMode},
		{filepath.Join(ndir, "encryption-key.pem"), ek, keyMode},
		{filepath.Join(sdir, "ca.pem"), st.CA.CertPEM, publicMode},
		{filepath.Join(sdir, "ca-key.pem"), st.CA.KeyPEM, keyMode},
		{filepath.Join(ndir, "node.pem"), st.Node.CertPEM, publicMode},
		{filepath.Join(ndir, "node-key.pem"), st.Node.KeyPEM, keyMode},
		{filepath.Join(ndir, DataKeyFile), datakey.Marshal(dataKeys), keyMode},
		{filepath.Join(ndir, "pocnode.yaml"), nodeConfig(st.Code, endpoint, genesis), publicMode},
	}
	for _, op := range st.Operators {
		odir := filepath.Join(sdir, "operators", OperatorDir(op))
		if err := mkdir(odir); err != nil {
			return err
		}
		files = append(files,
			file{filepath.Join(odir, "cert.pem"), op.CertPEM, publicMode},
			file{filepath.Join(odir, "key.pem"), op.KeyPEM, keyMode},
			file{filepath.Join(odir, "pocctl.yaml"), ctlConfig(endpoint), publicMode},
		)
	}
	for _, fl := range files {
		if err := writeFile(fl.path, fl.data, fl.mode); err != nil {
			return err
		}
	}
	return nil
}

// OperatorDir is the folder name of an operator under
// <STATE>/operators: "<role>-<name>".
func OperatorDir(op *Issued) string { return op.ID.Role + "-" + op.ID.Name }

func (f *Federation) endpointOf(code string) (string, error) {
	for _, m := range f.Directory.GetMembers() {
		if m.GetState() == code {
			if len(m.GetEndpoints()) == 0 {
				return "", fmt.Errorf("certs: directory lists no endpoint for %s", code)
			}
			return m.GetEndpoints()[0], nil
		}
	}
	return "", fmt.Errorf("certs: directory has no member %s", code)
}

func nodeConfig(state, listen, genesis string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "state: %s\n", yamlString(state))
	fmt.Fprintf(&b, "listen: %s\n", yamlString(listen))
	b.WriteString("data_dir: data\n")
	b.WriteString("data_key_file: " + DataKeyFile + "\n")
	// genesis is one of this package's own relative paths (../genesis.json,
	// ../../genesis.json), plain YAML as it stands.
	b.WriteString("genesis: " + genesis + "\n")
	b.WriteString("tls:\n  cert: node.pem\n  key: node-key.pem\n")
	b.WriteString("keys:\n  signing: signing-key.pem\n  encryption:\n    - encryption-key.pem\n")
	b.WriteString("log:\n  level: info\n  format: console\n")
	b.WriteString("reflection: false\n")
	return []byte(b.String())
}

func ctlConfig(address string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "address: %s\n", yamlString(address))
	b.WriteString("cert: cert.pem\nkey: key.pem\nca: ../../ca.pem\n")
	return []byte(b.String())
}

var (
	yamlSexagesimalRE = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$`)
	yamlPlainRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*(:[A-Za-z0-9_./-]+)*$`)
	// yamlReserved are plain scalars that YAML 1.1 readers take for booleans
	// or null; a state code such as "YES" or "OFF" must stay a string.
	yamlReserved = map[string]bool{
		"y": true, "n": true, "yes": true, "no": true, "on": true, "off": true,
		"true": true, "false": true, "null": true,
	}
)

// yamlString returns s as a YAML scalar that every reader takes for the
// string s: plain when that is unambiguous, otherwise double-quoted (a JSON
// string is a valid YAML double-quoted scalar). An IPv6 endpoint such as
// "[::1]:7401" would otherwise be read as a sequence.
func yamlString(s string) string {
	if yamlPlainRE.MatchString(s) && !yamlReserved[strings.ToLower(s)] {
		// Numbers, and digit groups that YAML 1.1 reads as base 60, are
		// quoted too.
		if _, err := strconv.ParseFloat(s, 64); err != nil && !yamlSexagesimalRE.MatchString(s) {
			return s
		}
	}
	q, _ := json.Marshal(s) // a string always encodes
	return string(q)
}

func mkdir(d string) error {
	if err := os.MkdirAll(d, dirMode); err != nil {
		return fmt.Errorf("certs: create folder %s: %w", d, err)
	}
	return nil
}

// writeFile writes data to path through a temporary file in the same folder
// and a rename, so that a reader never sees a half-written key or
// certificate. The temporary file is created with mode 0600, so a private key
// is never readable by others, even for a moment.
func writeFile(path string, data []byte, mode fs.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("certs: write %s: %w", path, err)
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
