package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ErrUntrusted is returned (wrapped) when a certificate chain does not verify
// against the CA of the state its identity names, or the identity is not
// acceptable where it was presented.
var ErrUntrusted = errors.New("untrusted peer")

// Bundle holds each member state's CA certificates, as listed in the
// directory. It is immutable once built; a new directory gives a new Bundle.
type Bundle struct {
	federation string
	pools      map[string]*x509.CertPool
}

// NewBundle builds a bundle for federation from each state's CA certificates.
func NewBundle(federation string, cas map[string][]*x509.Certificate) *Bundle {
	b := &Bundle{federation: federation, pools: make(map[string]*x509.CertPool, len(cas))}
	for state, certs := range cas {
		p := x509.NewCertPool()
		for _, c := range certs {
			p.AddCert(c)
		}
		b.pools[state] = p
	}
	return b
}

// Federation returns the federation id every identity must carry.
func (b *Bundle) Federation() string { return b.federation }

// Has reports whether state is a member with at least one CA.
func (b *Bundle) Has(state string) bool {
	_, ok := b.pools[state]
	return ok
}

// Verify parses a presented chain (leaf first), reads the leaf's identity and
// verifies the chain against the CA of the state that identity names, for the
// given key usage at time now. It returns the identity and the verified leaf.
func (b *Bundle) Verify(rawCerts [][]byte, usage x509.ExtKeyUsage, now time.Time) (ID, *x509.Certificate, error) {
	if len(rawCerts) == 0 {
		return ID{}, nil, fmt.Errorf("%w: no certificate presented", ErrUntrusted)
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return ID{}, nil, fmt.Errorf("%w: certificate %d: %v", ErrUntrusted, i, err)
		}
		certs[i] = c
	}
	return b.VerifyChain(certs, usage, now)
}

// VerifyChain is Verify for parsed certificates.
func (b *Bundle) VerifyChain(certs []*x509.Certificate, usage x509.ExtKeyUsage, now time.Time) (ID, *x509.Certificate, error) {
	if len(certs) == 0 {
		return ID{}, nil, fmt.Errorf("%w: no certificate presented", ErrUntrusted)
	}
	leaf := certs[0]
	id, err := FromCertificate(leaf)
	if err != nil {
		return ID{}, nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	if id.Federation != b.federation {
		return ID{}, nil, fmt.Errorf("%w: %s belongs to federation %q, not %q", ErrUntrusted, id, id.Federation, b.federation)
	}
	// The trust anchor is chosen by the identity the leaf claims, so that a
	// valid chain from state X's CA can never carry an identity of state Y.
	pool, ok := b.pools[id.State]
	if !ok {
		return ID{}, nil, fmt.Errorf("%w: %s: state %s is not a member of the directory", ErrUntrusted, id, id.State)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return ID{}, nil, fmt.Errorf("%w: %s: chain does not verify against the CA of %s: %v", ErrUntrusted, id, id.State, err)
	}
	return id, leaf, nil
}

// Source gives the bundle in force. It lets a node swap bundles when the
// directory changes without rebuilding its TLS configurations.
type Source interface {
	Bundle() *Bundle
}

// Static is a Source that never changes.
type Static struct{ B *Bundle }

// Bundle returns s.B.
func (s Static) Bundle() *Bundle { return s.B }
