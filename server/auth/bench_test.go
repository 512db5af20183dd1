package auth

import (
	"crypto/x509"
	"testing"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// BenchmarkDecide measures the per-call check of a connection: from the
// connection's cached outcome while the directory stays (the common call),
// and with a new directory at every call (a full verification each time).
func BenchmarkDecide(b *testing.B) {
	f, err := certs.Generate(certs.Options{States: []string{"XAA", "XBB"}})
	if err != nil {
		b.Fatal(err)
	}
	d, err := directory.New(f.Directory)
	if err != nil {
		b.Fatal(err)
	}
	src := directory.NewSource(d)
	a := &Authorizer{Self: identity.Node(f.ID, "XAA"), Directory: src}
	chain := []*x509.Certificate{f.State("XBB").Node.Cert}
	method := pocnetv1.RelayService_Ping_FullMethodName
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := a.decide(chain, method, src.Directory()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := a.decide(chain, method, src.Directory()); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("new-directory-each-call", func(b *testing.B) {
		dirs := make([]*directory.Directory, 2)
		for i := range dirs {
			if dirs[i], err = directory.New(f.Directory); err != nil {
				b.Fatal(err)
			}
		}
		i := 0
		for b.Loop() {
			i++
			if _, err := a.decide(chain, method, dirs[i%2]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
