package envelope

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestKeyTypes signs envelopes and receipts with every key type a state's
// own CA may issue node certificates for, and checks that a key too weak to
// trust is refused when the signer is built.
func TestKeyTypes(t *testing.T) {
	now := time.Now()
	ca, err := certs.NewCA("pocnet.example", "XAA", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	bundle := identity.NewBundle("pocnet.example", map[string][]*x509.Certificate{"XAA": {ca.Cert}})
	leaf := func(t *testing.T, key crypto.Signer) *tls.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(now.UnixNano()), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, URIs: []*url.URL{identity.Node("pocnet.example", "XAA").URL()},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	ec := func(c elliptic.Curve) crypto.Signer { k, _ := ecdsa.GenerateKey(c, rand.Reader); return k }
	rsaKey := func(bits int) crypto.Signer { k, _ := rsa.GenerateKey(rand.Reader, bits); return k }
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for name, key := range map[string]crypto.Signer{
		"ECDSA P-256": ec(elliptic.P256()), "ECDSA P-384": ec(elliptic.P384()), "ECDSA P-521": ec(elliptic.P521()),
		"RSA 2048": rsaKey(2048), "Ed25519": edKey,
	} {
		t.Run(name, func(t *testing.T) {
			s, err := NewSigner(leaf(t, key))
			if err != nil {
				t.Fatal(err)
			}
			env, err := Build(s, header("XAA", "XBB"), payload())
			if err != nil {
				t.Fatal(err)
			}
			o, err := Open(env, bundle, now)
			if err != nil {
				t.Fatalf("envelope signed with %s refused: %v", name, err)
			}
			r, err := SignReceipt(s, &pocnetv1.ReceiptBody{EnvelopeId: o.Header.GetId(), EnvelopeDigest: o.Digest, FromState: "XBB", RecipientState: "XAA",
				Outcome: pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyReceipt(r, bundle, now, "XBB", "XAA", o.Header.GetId(), o.Digest); err != nil {
				t.Fatalf("receipt signed with %s refused: %v", name, err)
			}
			env.Signature.Value[len(env.Signature.Value)-1] ^= 1
			if _, err := Open(env, bundle, now); err == nil {
				t.Fatalf("%s: a flipped signature bit was accepted", name)
			}
		})
	}
	if _, err := NewSigner(leaf(t, rsaKey(1024))); err == nil {
		t.Fatal("a 1024-bit RSA key was accepted for signing")
	}
}
