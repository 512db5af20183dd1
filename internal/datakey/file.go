package datakey

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// EnvVar is the conventional name of the environment variable that holds a
// node's data keys when no key file is configured.
const EnvVar = "POCNET_DATA_KEY"

// FileMode is the mode Write gives a key file.
const FileMode fs.FileMode = 0o600

// maxFileSize bounds what Load reads: a key line is under 60 bytes, so this
// is room for thousands of keys and comments, and a wrong path (a log, a
// device) is refused instead of read into memory.
const maxFileSize = 1 << 20

// ErrInsecureFile is returned (wrapped) by Load for a key file that group
// or others may access.
var ErrInsecureFile = errors.New("group or others may access it")

// Load reads the key ring in the file at path (see the package
// documentation for the format).
//
// The file is refused, before any of it is read, unless it is a regular
// file that only its owner may access: a data key that other accounts can
// read protects nothing, and one they can write lets them choose the key new
// values are sealed with.
func Load(path string) (*Ring, error) {
	// Stat before opening, so that a FIFO or device is refused instead of
	// blocking or being read.
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("datakey: %w", err)
	}
	if err := checkFile(path, info); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("datakey: %w", err)
	}
	defer f.Close()
	// Check again on the open file: the path may have been replaced between
	// the Stat and the Open, and what is read must be what was checked.
	if info, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("datakey: %w", err)
	}
	if err := checkFile(path, info); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("datakey: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("datakey: %s is larger than %d bytes; it is not a key file", path, maxFileSize)
	}
	return parse(data, path, false)
}

func checkFile(path string, info fs.FileInfo) error {
	if !info.Mode().IsRegular() {
		return fmt.Errorf("datakey: %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("datakey: key file %s has mode %04o: %w; allow its owner only (chmod 600 %s)", path, perm, ErrInsecureFile, path)
	}
	return nil
}

// FromEnv reads a key ring from the environment variable name (by
// convention EnvVar), in the key file format; ';' also separates entries.
func FromEnv(name string) (*Ring, error) {
	v, ok := os.LookupEnv(name)
	if !ok || strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("datakey: environment variable %s is not set", name)
	}
	return parse([]byte(v), "environment variable "+name, true)
}

// Parse reads a key ring in the key file format from data. source names
// where data came from in errors (a path, "environment variable ...").
func Parse(data []byte, source string) (*Ring, error) {
	return parse(data, source, false)
}

func parse(data []byte, source string, semicolons bool) (*Ring, error) {
	// Each entry with where it is, for errors: a line of a file, or the n-th
	// entry of an environment variable, whose lines ';' may also split.
	type entry struct{ text, where string }
	var entries []entry
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !semicolons {
			entries = append(entries, entry{line, fmt.Sprintf("%s:%d", source, i+1)})
			continue
		}
		for _, part := range strings.Split(line, ";") {
			if part = strings.TrimSpace(part); part != "" {
				entries = append(entries, entry{part, fmt.Sprintf("%s, entry %d", source, len(entries)+1)})
			}
		}
	}
	var keys []Key
	seen := map[ID]string{}
	for _, e := range entries {
		fields := strings.Fields(e.text)
		if len(fields) != 2 {
			// The entry is not quoted back: it may hold key bytes.
			return nil, fmt.Errorf("datakey: %s: want \"<id> <base64 key>\", found %d fields", e.where, len(fields))
		}
		id, err := ParseID(fields[0])
		if err != nil {
			return nil, fmt.Errorf("datakey: %s: key id is not %d hexadecimal digits", e.where, 2*IDLen)
		}
		raw, err := base64.StdEncoding.DecodeString(fields[1])
		if err != nil || len(raw) != Size {
			return nil, fmt.Errorf("datakey: %s: key %s is not %d bytes in standard base64", e.where, id, Size)
		}
		var k Key
		copy(k.secret[:], raw)
		clear(raw)
		k.id = idOf(&k.secret)
		if k.id != id {
			return nil, fmt.Errorf("datakey: %s: key does not match its id %s (mistyped, or pasted beside the wrong id)", e.where, id)
		}
		if first, dup := seen[id]; dup {
			return nil, fmt.Errorf("datakey: %s: key %s is already at %s", e.where, id, first)
		}
		seen[id] = e.where
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("datakey: %s holds no key", source)
	}
	return NewRing(keys...)
}

// Marshal returns r in the key file format, the current key last.
func Marshal(r *Ring) []byte {
	var b bytes.Buffer
	b.WriteString("# pocnet data keys: \"<id> <base64 key>\", one per line. The LAST key is current:\n")
	b.WriteString("# it seals new values, the others only open older ones. Delete a key only when\n")
	b.WriteString("# the node reports that no value is sealed under it. Keep this file mode 0600\n")
	b.WriteString("# and away from the data directory and its backups.\n")
	for _, k := range r.keys {
		fmt.Fprintf(&b, "%s %s\n", k.id, base64.StdEncoding.EncodeToString(k.secret[:]))
	}
	return b.Bytes()
}

// Write writes r to the key file at path with mode 0600, replacing it
// atomically: a temporary file in the same folder, synced, renamed over
// path, and the folder synced. A reader sees the old ring or the new one,
// never a part of either, and once Write returns the new key survives a
// crash: losing a key that has sealed values would lose those values.
func Write(path string, r *Ring) (err error) {
	dir := filepath.Dir(path)
	// CreateTemp makes the file with mode 0600, so the key is never readable
	// by others, not even for a moment.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("datakey: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("datakey: write %s: %w", path, err)
		}
	}()
	if _, err = tmp.Write(Marshal(r)); err != nil {
		return err
	}
	if err = tmp.Chmod(FileMode); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Add generates a key and writes it to the key file at path as the new
// current key, after the keys already there (creating the file if it does
// not exist). It returns the new ring; the node uses it once it reloads.
func Add(path string) (*Ring, error) {
	k, err := Generate()
	if err != nil {
		return nil, err
	}
	r, err := Load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r, err = NewRing(k)
	case err == nil:
		r, err = r.With(k)
	}
	if err != nil {
		return nil, err
	}
	if err := Write(path, r); err != nil {
		return nil, err
	}
	return r, nil
}
