package directory_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/directory"
)

// FuzzParse feeds arbitrary bytes to the directory decoder, which reads
// files that come from outside the node. Whatever it accepts must survive a
// Marshal/Parse round trip unchanged; whatever it refuses must be refused
// with ErrInvalid, never a panic.
func FuzzParse(f *testing.F) {
	valid, err := directory.Marshal(federation(f).Directory)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"federationId": "pocnet.example"}`))
	f.Add([]byte(`{"federationId": "pocnet.example", "members": [{"state": "XAA"}]}`))
	f.Add([]byte(`{"federationId": "pocnet.example", "unknown": 1}`))
	f.Add([]byte(`[`))
	f.Add(bytes.Replace(valid, []byte(`"KIND_OTHER"`), []byte(`42`), 1))
	f.Add(bytes.Replace(valid, []byte(`"technical"`), []byte(`"admin"`), 1))
	f.Add(bytes.Replace(valid, []byte(`BEGIN CERTIFICATE`), []byte(`BEGIN PRIVATE KEY`), 1))
	f.Add(valid[:len(valid)/2])

	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := directory.Parse(data)
		if err != nil {
			if !errors.Is(err, directory.ErrInvalid) {
				t.Fatalf("Parse error %v does not wrap ErrInvalid", err)
			}
			if d != nil {
				t.Fatal("Parse returned a directory and an error")
			}
			return
		}
		again, err := directory.Marshal(d.Proto())
		if err != nil {
			t.Fatalf("Marshal of an accepted directory: %v", err)
		}
		d2, err := directory.Parse(again)
		if err != nil {
			t.Fatalf("an accepted directory does not parse after Marshal: %v", err)
		}
		if !proto.Equal(d.Proto(), d2.Proto()) || !slices.Equal(d.States(), d2.States()) {
			t.Fatal("round trip changed the directory")
		}
		for _, s := range d.States() {
			if !d.Bundle().Has(s) || len(d.Endpoints(s)) == 0 {
				t.Fatalf("accepted member %s has no CA or no endpoint", s)
			}
			if strings.Contains(s, "/") {
				t.Fatalf("accepted state code %q", s)
			}
		}
	})
}
