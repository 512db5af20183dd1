package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"

	"github.com/pocnet/pocnet/internal/identity"
)

// CA is a state's root certificate authority.
type CA struct {
	// State is the ISO 3166-1 alpha-3 code of the state owning the CA.
	State string
	Cert  *x509.Certificate
	Key   crypto.Signer
	// CertPEM is the certificate as a PEM "CERTIFICATE" block, as listed in
	// the directory.
	CertPEM []byte
	// KeyPEM is the private key as a PKCS#8 PEM "PRIVATE KEY" block.
	KeyPEM []byte
}

// Issued is a leaf certificate with its key, for a node or an operator.
type Issued struct {
	ID      identity.ID
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
	// TLS is the certificate and key ready for a tls.Config; its chain is
	// the leaf alone, since peers hold the state's root from the directory.
	TLS tls.Certificate
}

// NewCA creates the self-signed root CA of state in federation, valid from
// notBefore to notAfter. The key is ECDSA P-256.
//
// The CA may sign one level of intermediate CA (MaxPathLen 1), and its name
// constraints permit URI SANs in the federation's trust domain only, so that
// even a misused CA cannot mint identities of another federation.
func NewCA(federation, state string, notBefore, notAfter time.Time) (*CA, error) {
	if err := identity.ValidateFederation(federation); err != nil {
		return nil, fmt.Errorf("certs: federation: %v", err)
	}
	if err := identity.ValidateState(state); err != nil {
		return nil, fmt.Errorf("certs: state: %v", err)
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("certs: CA of %s: notAfter %s is not after notBefore %s", state, notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: CA key of %s: %w", state, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         state + " pocnet root CA",
			Organization:       []string{state},
			OrganizationalUnit: []string{federation},
		},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
		PermittedURIDomains:   []string{federation},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate of %s: %w", state, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate of %s: %w", state, err)
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return nil, err
	}
	return &CA{
		State:   state,
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  keyPEM,
	}, nil
}

// Issue signs a leaf certificate for id, valid from notBefore to notAfter,
// with a new ECDSA P-256 key. The certificate's only URI SAN is id.URL().
//
// A node certificate may serve and connect (ServerAuth and ClientAuth) and
// also names 127.0.0.1 and localhost so that ordinary tools can reach a
// development node. An operator certificate may only connect (ClientAuth):
// an operator never serves.
//
// Issue signs any valid identity, including one naming another state. That
// is deliberate: such a certificate must be refused by every verifier, since
// trust is anchored in the CA of the state an identity names, and tests need
// it to prove that.
func (ca *CA) Issue(id identity.ID, notBefore, notAfter time.Time) (*Issued, error) {
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("certs: issue: %w", err)
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("certs: issue %s: notAfter %s is not after notBefore %s", id, notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: key of %s: %w", id, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   commonName(id),
			Organization: []string{id.State},
		},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URL()},
	}
	switch id.Kind {
	case identity.KindNode:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	case identity.KindOperator:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: certificate of %s: %w", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: certificate of %s: %w", id, err)
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return nil, err
	}
	return &Issued{
		ID:      id,
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  keyPEM,
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
	}, nil
}

func commonName(id identity.ID) string {
	if id.Kind == identity.KindOperator {
		return id.State + " operator " + id.Role + "/" + id.Name
	}
	return id.State + " node"
}

// newSerial returns a random positive 128-bit serial number, as RFC 5280
// and the CA/Browser baseline expect (unpredictable, at most 20 octets).
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("certs: serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func keyToPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
