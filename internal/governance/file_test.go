package governance_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/governance"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// writeFile writes data to a file in a fresh folder and returns its path.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func marshalSigned(t testing.TB, sv *pocnetv1.SignedVersion) []byte {
	t.Helper()
	b, err := governance.MarshalSigned(sv)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGenesisFileRoundTrip: the genesis written as JSON loads back with the
// exact signed bytes, and the chain built from it verifies.
func TestGenesisFileRoundTrip(t *testing.T) {
	w := newWorld(t)
	sv := w.genesis(supermajority(70), "XAA", "XBB", "XCC").Signed()
	data := marshalSigned(t, sv)
	// protojson varies the spaces after a colon on purpose; the layout is
	// what is checked, one field per line.
	if !json.Valid(data) || !bytes.HasPrefix(data, []byte("{\n  \"version\":")) || !bytes.HasSuffix(data, []byte("\n}\n")) {
		t.Errorf("MarshalSigned is not indented JSON:\n%s", data)
	}
	p := writeFile(t, "genesis.json", data)
	got, err := governance.LoadGenesis(p)
	if err != nil {
		t.Fatalf("LoadGenesis: %v", err)
	}
	if !proto.Equal(got, sv) || !bytes.Equal(got.GetVersion(), sv.GetVersion()) {
		t.Fatal("the genesis read back differs from the one written")
	}
	c, err := governance.NewChain(got, t0)
	if err != nil {
		t.Fatalf("NewChain: %v", err)
	}
	if l := c.Latest(); l.Number() != 1 || l.Hash() != governance.Hash(sv.GetVersion()) || len(l.Directory().States()) != 3 {
		t.Fatalf("chain from the file: version %d, %d members", l.Number(), len(l.Directory().States()))
	}

	// ParseSignedJSON reads any version, not only a genesis.
	child := w.sign(w.child(c.Latest(), entryUpdate("XBB"), rename("XBB", "B")), "XBB")
	back, err := governance.ParseSignedJSON(marshalSigned(t, child))
	if err != nil || !proto.Equal(back, child) {
		t.Fatalf("ParseSignedJSON(child) = %v", err)
	}
	if _, err := c.Add(back, t0.Add(2*3600e9)); err != nil {
		t.Fatalf("Add(child read back): %v", err)
	}
}

// TestLoadGenesisDoesNotVerify: signatures are NewChain's to check, so an
// unsigned genesis loads and is then refused by NewChain.
func TestLoadGenesisDoesNotVerify(t *testing.T) {
	w := newWorld(t)
	unsigned := &pocnetv1.SignedVersion{Version: w.genesisBytes(consensus(), w.states("XAA", "XBB")...)}
	sv, err := governance.LoadGenesis(writeFile(t, "genesis.json", marshalSigned(t, unsigned)))
	if err != nil {
		t.Fatalf("LoadGenesis(unsigned) = %v", err)
	}
	if _, err := governance.NewChain(sv, t0); !errors.Is(err, governance.ErrUnauthorized) {
		t.Fatalf("NewChain(unsigned) = %v, want ErrUnauthorized", err)
	}
}

func TestLoadGenesisRefusals(t *testing.T) {
	w := newWorld(t)
	g := w.genesis(consensus(), "XAA", "XBB")
	good := marshalSigned(t, g.Signed())
	second := marshalSigned(t, w.sign(w.child(g, entryUpdate("XBB"), rename("XBB", "B")), "XBB"))
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	// A version carrying a field this build does not know.
	unknownInside := protowire.AppendTag(g.Signed().GetVersion(), 99, protowire.VarintType)
	unknownInside = protowire.AppendVarint(unknownInside, 1)

	tests := []struct {
		name string
		data []byte
		want string
		is   error
	}{
		{"later version", second, "holds version 2, not version 1", governance.ErrInvalid},
		{"empty", nil, "the file is empty", governance.ErrInvalid},
		{"not JSON", []byte("version: 1\n"), "invalid value", governance.ErrInvalid},
		{"directory not a signed version", []byte(`{"federationId": "pocnet.example", "members": []}`), `unknown field "federationId"`, governance.ErrInvalid},
		{"misspelt field", bytes.Replace(good, []byte(`"signatures"`), []byte(`"signaturez"`), 1), `unknown field "signaturez"`, governance.ErrInvalid},
		{"unknown field in a signature", bytes.Replace(good, []byte(`"keyId"`), []byte(`"keyIdent"`), 1), `unknown field "keyIdent"`, governance.ErrInvalid},
		{"no version", []byte(`{"signatures": []}`), "version: required", governance.ErrInvalid},
		{"version not base64", []byte(`{"version": "not base64!"}`), "version", governance.ErrInvalid},
		{"version not a DirectoryVersion", []byte(`{"version": "` + b64([]byte{0xff, 0xff}) + `"}`), "version:", governance.ErrInvalid},
		{"unknown field in the version", []byte(`{"version": "` + b64(unknownInside) + `"}`), "unknown fields", governance.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "genesis.json", tt.data)
			_, err := governance.LoadGenesis(p)
			if err == nil {
				t.Fatal("LoadGenesis accepted it")
			}
			if !strings.HasPrefix(err.Error(), "genesis "+p+": ") || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, tt.is) {
				t.Fatalf("LoadGenesis = %q, want an error naming %s and containing %q (%v)", err, p, tt.want, tt.is)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "genesis.json")
		_, err := governance.LoadGenesis(p)
		if !errors.Is(err, fs.ErrNotExist) || err.Error() != "genesis "+p+": open: no such file or directory" {
			t.Fatalf("LoadGenesis(missing) = %v", err)
		}
	})
	t.Run("a folder", func(t *testing.T) {
		p := t.TempDir()
		if _, err := governance.LoadGenesis(p); err == nil || !strings.HasPrefix(err.Error(), "genesis "+p+": ") {
			t.Fatalf("LoadGenesis(folder) = %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "genesis.json")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		// Sparse: the size is what matters, and LoadGenesis stops reading
		// one byte past the bound.
		if err := f.Truncate(governance.MaxJSONSize + 1); err != nil {
			t.Fatal(err)
		}
		f.Close()
		_, err = governance.LoadGenesis(p)
		if !errors.Is(err, governance.ErrInvalid) || !strings.Contains(err.Error(), "genesis "+p+": ") || !strings.Contains(err.Error(), "more than") {
			t.Fatalf("LoadGenesis(too large) = %v", err)
		}
	})
}

func TestParseSignedJSONBounds(t *testing.T) {
	if _, err := governance.ParseSignedJSON(make([]byte, governance.MaxJSONSize+1)); !errors.Is(err, governance.ErrInvalid) || !strings.Contains(err.Error(), "bytes of JSON, more than") {
		t.Fatalf("ParseSignedJSON(too large) = %v", err)
	}
	// Within the JSON bound, but more than MaxSize once decoded.
	big := &pocnetv1.SignedVersion{Version: make([]byte, governance.MaxSize+1)}
	if _, err := governance.ParseSignedJSON(marshalSigned(t, big)); !errors.Is(err, governance.ErrInvalid) || !strings.Contains(err.Error(), "decoded, more than") {
		t.Fatalf("ParseSignedJSON(version too large) = %v", err)
	}
}

func FuzzParseSignedJSON(f *testing.F) {
	w := newWorld(f)
	g := w.genesis(consensus(), "XAA", "XBB")
	f.Add(marshalSigned(f, g.Signed()))
	f.Add([]byte(`{"version": "CAE=", "signatures": [{"state": "XAA", "keyId": "k", "signature": ""}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sv, err := governance.ParseSignedJSON(data)
		if err != nil {
			if !errors.Is(err, governance.ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		// What decodes re-encodes to something that decodes to the same.
		again, err := governance.ParseSignedJSON(marshalSigned(t, sv))
		if err != nil || !proto.Equal(again, sv) {
			t.Fatalf("round trip: %v", err)
		}
		// A genesis built from it never panics, whatever it holds.
		_, _ = governance.NewChain(sv, t0)
	})
}
