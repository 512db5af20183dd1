package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is the fixed "now" of every test: nothing depends on the wall clock.
var t0 = time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

const fed = "pocnet.example"

// testCA is a CA made directly with crypto/x509, so that these tests can
// make certificates no well-behaved tool would (two URI SANs, expired, the
// wrong state).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial atomic.Int64

func nextSerial() *big.Int { return big.NewInt(serial.Add(1)) }

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func create(t *testing.T, tmpl, parent *x509.Certificate, pub any, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	k := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             t0.Add(-24 * time.Hour),
		NotAfter:              t0.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return &testCA{cert: create(t, tmpl, tmpl, k.Public(), k), key: k}
}

// intermediate returns a CA signed by ca.
func (ca *testCA) intermediate(t *testing.T, name string) *testCA {
	t.Helper()
	k := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             t0.Add(-24 * time.Hour),
		NotAfter:              t0.Add(300 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return &testCA{cert: create(t, tmpl, ca.cert, k.Public(), ca.key), key: k}
}

type leafOpt func(*x509.Certificate)

func validity(nb, na time.Time) leafOpt {
	return func(c *x509.Certificate) { c.NotBefore, c.NotAfter = nb, na }
}

func usages(u ...x509.ExtKeyUsage) leafOpt { return func(c *x509.Certificate) { c.ExtKeyUsage = u } }

// leaf issues a certificate carrying uris as its URI SANs, with both
// ServerAuth and ClientAuth unless opts say otherwise.
func (ca *testCA) leaf(t *testing.T, uris []string, opts ...leafOpt) tls.Certificate {
	t.Helper()
	k := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: "leaf"},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	for _, o := range opts {
		o(tmpl)
	}
	c := create(t, tmpl, ca.cert, k.Public(), ca.key)
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
}

// chain appends the given intermediates to a leaf's presented chain.
func chain(leaf tls.Certificate, inter ...*testCA) tls.Certificate {
	for _, i := range inter {
		leaf.Certificate = append(leaf.Certificate, i.cert.Raw)
	}
	return leaf
}

func parsed(t *testing.T, c tls.Certificate) []*x509.Certificate {
	t.Helper()
	out := make([]*x509.Certificate, len(c.Certificate))
	for i, raw := range c.Certificate {
		p, err := x509.ParseCertificate(raw)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = p
	}
	return out
}

func nodeURI(state string) string { return "spiffe://" + fed + "/state/" + state + "/node" }

func operatorURI(state, role, name string) string {
	return "spiffe://" + fed + "/state/" + state + "/operator/" + role + "/" + name
}
