package datakey

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustRing(t testing.TB, keys ...Key) *Ring {
	t.Helper()
	r, err := NewRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustKey(t testing.TB) Key {
	t.Helper()
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	old := mustRing(t, k1)
	r := mustRing(t, k1, k2)
	if r.Current() != k2.ID() {
		t.Fatalf("current = %s, want the last key %s", r.Current(), k2.ID())
	}
	msg, aad := []byte("canary-body"), []byte("m\x01\x02")
	s := r.Seal(msg, aad)
	if len(s) != len(msg)+Overhead || bytes.Contains(s, msg) {
		t.Fatalf("sealed value: %d bytes, holds plaintext %v", len(s), bytes.Contains(s, msg))
	}
	if id, err := SealedBy(s); err != nil || id != k2.ID() {
		t.Fatalf("SealedBy = %s, %v; want %s", id, err, k2.ID())
	}
	if got, err := r.Open(s, aad); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Two seals of the same value differ (random nonce).
	if bytes.Equal(s, r.Seal(msg, aad)) {
		t.Fatal("two seals of one value are equal")
	}
	// Values sealed before the rotation still open.
	if got, err := r.Open(old.Seal(msg, aad), aad); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open of a value under the old key = %q, %v", got, err)
	}
	// Empty values round-trip too.
	if got, err := r.Open(r.Seal(nil, aad), aad); err != nil || len(got) != 0 {
		t.Fatalf("Open of an empty value = %q, %v", got, err)
	}
}

// TestAppendSeal: AppendSeal leaves what dst held and appends exactly
// what Seal returns, Overhead bytes more than the plaintext.
func TestAppendSeal(t *testing.T) {
	r := mustRing(t, mustKey(t))
	msg, aad := []byte("canary-body"), []byte("n\x01")
	prefix := []byte("held")
	buf := make([]byte, 0, len(prefix)+Overhead+len(msg))
	out := r.AppendSeal(append(buf, prefix...), msg, aad)
	if len(out) != len(prefix)+Overhead+len(msg) || &out[0] != &buf[:1][0] || !bytes.Equal(out[:len(prefix)], prefix) {
		t.Fatalf("AppendSeal: %d bytes, in place %v", len(out), &out[0] == &buf[:1][0])
	}
	if got, err := r.Open(out[len(prefix):], aad); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open of an appended seal = %q, %v", got, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	r := mustRing(t, k1)
	aad := []byte("m-key-1")
	s := r.Seal([]byte("secret"), aad)
	flip := func(i int) []byte {
		c := bytes.Clone(s)
		c[i] ^= 1
		return c
	}
	tests := []struct {
		name  string
		ring  *Ring
		value []byte
		aad   []byte
		is    error
		want  string
	}{
		{"unknown key", mustRing(t, k2), s, aad, ErrUnknownKey, "data key " + k1.ID().String() + " is not in the key ring"},
		{"moved to another key", r, s, []byte("m-key-2"), ErrAuthentication, "does not authenticate"},
		{"ciphertext changed", r, flip(len(s) - 1), aad, ErrAuthentication, "does not authenticate"},
		{"nonce changed", r, flip(headerLen), aad, ErrAuthentication, "does not authenticate"},
		{"version changed", r, flip(0), aad, ErrMalformed, "version byte"},
		{"truncated", r, s[:Overhead-1], aad, ErrMalformed, "not a sealed value"},
		{"empty", r, nil, aad, ErrMalformed, "not a sealed value"},
		{"plaintext", r, []byte("\x08\x01plain protobuf"), aad, ErrMalformed, "not a sealed value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.ring.Open(tt.value, tt.aad)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %v, want %v containing %q", err, tt.is, tt.want)
			}
		})
	}
}

func TestNoKeyBytesInFormatting(t *testing.T) {
	k := mustKey(t)
	r := mustRing(t, k)
	secret := base64.StdEncoding.EncodeToString(k.secret[:])
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d", "%q"} {
		for _, v := range []any{k, r, *r, []Key{k}} {
			out := fmt.Sprintf(verb, v)
			if !strings.Contains(out, k.ID().String()) || strings.Contains(out, fmt.Sprint(k.secret[0], " ", k.secret[1])) ||
				strings.Contains(out, fmt.Sprintf("%x", k.secret[:4])) || strings.Contains(out, secret) {
				t.Errorf("%s of %T = %s", verb, v, out)
			}
		}
	}
}

func TestFileRoundTripAndAdd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.key")
	r1, err := Add(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, err %v; want 0600", info.Mode(), err)
	}
	sealed := r1.Seal([]byte("v"), nil)
	r2, err := Add(path)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(loaded.IDs()) != fmt.Sprint(r2.IDs()) || len(loaded.IDs()) != 2 || loaded.Current() == r1.Current() || !loaded.Has(r1.Current()) {
		t.Fatalf("loaded %v after two Adds, want %v with the second current", loaded, r2)
	}
	if got, err := loaded.Open(sealed, nil); err != nil || string(got) != "v" {
		t.Fatalf("value sealed before Add: %q, %v", got, err)
	}
	// Retiring the old key.
	if _, err := loaded.Without(loaded.Current()); err == nil {
		t.Fatal("removing the current key was accepted")
	}
	r3, err := loaded.Without(r1.Current())
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(path, r3); err != nil {
		t.Fatal(err)
	}
	if r, err := Load(path); err != nil || len(r.IDs()) != 1 || r.Current() != r2.Current() {
		t.Fatalf("after removing the old key: %v, %v", r, err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestLoadRefusesOpenPermissions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data.key")
	if _, err := Add(path); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o602, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if !errors.Is(err, ErrInsecureFile) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("%04o", mode)) {
			t.Errorf("Load of a %04o key file = %v, want ErrInsecureFile naming %s and the mode", mode, err, path)
		}
		if _, err := Add(path); !errors.Is(err, ErrInsecureFile) {
			t.Errorf("Add to a %04o key file = %v, want ErrInsecureFile", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err != nil {
			t.Errorf("Load of a %04o key file: %v", mode, err)
		}
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Load of a folder = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v", err)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	line := func(k Key) string {
		return k.ID().String() + " " + base64.StdEncoding.EncodeToString(k.secret[:])
	}
	good := "# comment\n\n" + line(k1) + "\n  " + line(k2) + "  \n"
	r, err := Parse([]byte(good), "f")
	if err != nil || r.Current() != k2.ID() || len(r.IDs()) != 2 {
		t.Fatalf("Parse(good) = %v, %v", r, err)
	}
	short := base64.StdEncoding.EncodeToString(k1.secret[:16])
	tests := []struct{ data, want string }{
		{"", "f holds no key"},
		{"# only a comment\n", "f holds no key"},
		{line(k1) + "\n" + k1.ID().String() + "\n", "f:2: want"},
		{line(k1) + " extra\n", "f:1: want"},
		{"xyz " + base64.StdEncoding.EncodeToString(k1.secret[:]) + "\n", "f:1: key id is not 8 hexadecimal digits"},
		{"\n\n" + k1.ID().String() + " " + short, "f:3: key " + k1.ID().String() + " is not 32 bytes"},
		{k1.ID().String() + " !!notbase64!!", "f:1: key " + k1.ID().String() + " is not 32 bytes"},
		{k2.ID().String() + " " + base64.StdEncoding.EncodeToString(k1.secret[:]), "f:1: key does not match its id " + k2.ID().String()},
		{line(k1) + "\n" + line(k1), "f:2: key " + k1.ID().String() + " is already at f:1"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.data), "f")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tt.data, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(k1.secret[:])) {
			t.Errorf("error quotes key bytes: %v", err)
		}
	}
}

func TestFromEnv(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	line := func(k Key) string {
		return k.ID().String() + " " + base64.StdEncoding.EncodeToString(k.secret[:])
	}
	const name = "POCNET_DATA_KEY_TEST"
	t.Setenv(name, line(k1)+";"+line(k2))
	r, err := FromEnv(name)
	if err != nil || r.Current() != k2.ID() || !r.Has(k1.ID()) {
		t.Fatalf("FromEnv = %v, %v", r, err)
	}
	// The key file format works as is, comments included.
	t.Setenv(name, string(Marshal(r)))
	if r2, err := FromEnv(name); err != nil || fmt.Sprint(r2.IDs()) != fmt.Sprint(r.IDs()) {
		t.Fatalf("FromEnv of a key file = %v, %v", r2, err)
	}
	t.Setenv(name, line(k1)+";"+k2.ID().String())
	if _, err := FromEnv(name); err == nil || !strings.Contains(err.Error(), "environment variable "+name+", entry 2") {
		t.Fatalf("FromEnv with a bad entry = %v", err)
	}
	t.Setenv(name, "")
	if _, err := FromEnv(name); err == nil || !strings.Contains(err.Error(), name+" is not set") {
		t.Fatalf("FromEnv of an empty variable = %v", err)
	}
}

func benchmarkSeal(b *testing.B, size int) {
	k, err := Generate()
	if err != nil {
		b.Fatal(err)
	}
	r := mustRing(b, k)
	v := bytes.Repeat([]byte{'x'}, size)
	aad := []byte("m0123456789abcdef")
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		r.Seal(v, aad)
	}
}

func benchmarkOpen(b *testing.B, size int) {
	k, err := Generate()
	if err != nil {
		b.Fatal(err)
	}
	r := mustRing(b, k)
	aad := []byte("m0123456789abcdef")
	s := r.Seal(bytes.Repeat([]byte{'x'}, size), aad)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Open(s, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal200(b *testing.B)  { benchmarkSeal(b, 200) }
func BenchmarkSeal1KiB(b *testing.B) { benchmarkSeal(b, 1024) }
func BenchmarkOpen200(b *testing.B)  { benchmarkOpen(b, 200) }
func BenchmarkOpen1KiB(b *testing.B) { benchmarkOpen(b, 1024) }
