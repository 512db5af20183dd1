package identity

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrUntrusted is returned (wrapped) when a certificate chain does not verify
// against the CA of the state its identity names, or the identity is not
// acceptable where it was presented.
var ErrUntrusted = errors.New("untrusted peer")

// Bundle holds each member state's CA certificates and the certificates it
// revoked, as listed in the directory. It is immutable once built; a new
// directory gives a new Bundle.
type Bundle struct {
	federation string
	pools      map[string]*x509.CertPool
	// revoked holds, per state, the certificates that state withdrew, by
	// the SHA-256 of their DER. Only the state an identity names is
	// consulted: no state can withdraw another state's certificate.
	revoked map[string]map[[sha256.Size]byte]Revocation

	// verified caches chains that verified, so that a peer's node
	// certificate, seen on every envelope and receipt it signs, is parsed
	// and verified once per bundle rather than once per message. An entry
	// holds only while now is inside every certificate's validity; a new
	// directory builds a new Bundle and so starts with an empty cache.
	mu       sync.Mutex
	verified map[verifyKey]verifiedChain
}

type verifyKey struct {
	chain [sha256.Size]byte
	usage x509.ExtKeyUsage
}

type verifiedChain struct {
	id                  ID
	leaf                *x509.Certificate
	notBefore, notAfter time.Time
}

// maxVerified bounds the cache; only chains that verified against a
// member's CA get in, so it grows with the federation, not with traffic.
const maxVerified = 4096

func chainKey(raw [][]byte, usage x509.ExtKeyUsage) verifyKey {
	h := sha256.New()
	var n [4]byte
	for _, c := range raw {
		binary.BigEndian.PutUint32(n[:], uint32(len(c)))
		h.Write(n[:])
		h.Write(c)
	}
	k := verifyKey{usage: usage}
	h.Sum(k.chain[:0])
	return k
}

func (b *Bundle) cached(k verifyKey, now time.Time) (ID, *x509.Certificate, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.verified[k]
	if !ok || now.Before(v.notBefore) || now.After(v.notAfter) {
		return ID{}, nil, false
	}
	return v.id, v.leaf, true
}

func (b *Bundle) remember(k verifyKey, v verifiedChain) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.verified == nil {
		b.verified = make(map[verifyKey]verifiedChain)
	}
	if len(b.verified) >= maxVerified {
		clear(b.verified)
	}
	b.verified[k] = v
}

// Revocation is a certificate a state withdrew, named by the SHA-256 of its
// DER encoding.
type Revocation struct {
	SHA256 [sha256.Size]byte
	At     time.Time
	Reason string
}

// BundleOption adds to what a Bundle holds beyond each state's CAs.
type BundleOption func(*Bundle)

// WithRevoked makes the bundle refuse every chain naming state that
// contains one of rs (leaf or intermediate, presented or found while
// verifying).
func WithRevoked(state string, rs ...Revocation) BundleOption {
	return func(b *Bundle) {
		if len(rs) == 0 {
			return
		}
		if b.revoked == nil {
			b.revoked = make(map[string]map[[sha256.Size]byte]Revocation)
		}
		m := b.revoked[state]
		if m == nil {
			m = make(map[[sha256.Size]byte]Revocation, len(rs))
			b.revoked[state] = m
		}
		for _, r := range rs {
			m[r.SHA256] = r
		}
	}
}

// RevokedError says that a chain was refused because a certificate in it
// was withdrawn by the state its identity names. It wraps ErrUntrusted.
type RevokedError struct {
	// ID is the identity the chain claimed.
	ID ID
	// Subject is the subject of the revoked certificate (the leaf or an
	// intermediate).
	Subject string
	// Revocation is the directory's entry: the fingerprint, when and why.
	Revocation
}

// Error names the certificate, the state that revoked it, when and why.
func (e *RevokedError) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = "no reason given"
	}
	return fmt.Sprintf("%v: %s: certificate %q (sha256:%s) was revoked by %s at %s: %s",
		ErrUntrusted, e.ID, e.Subject, hex.EncodeToString(e.SHA256[:]), e.ID.State, e.At.UTC().Format(time.RFC3339), reason)
}

// Unwrap returns ErrUntrusted.
func (e *RevokedError) Unwrap() error { return ErrUntrusted }

// NewBundle builds a bundle for federation from each state's CA certificates.
func NewBundle(federation string, cas map[string][]*x509.Certificate, opts ...BundleOption) *Bundle {
	b := &Bundle{federation: federation, pools: make(map[string]*x509.CertPool, len(cas))}
	for state, certs := range cas {
		p := x509.NewCertPool()
		for _, c := range certs {
			p.AddCert(c)
		}
		b.pools[state] = p
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// revokedIn returns the first certificate of certs that state revoked.
func (b *Bundle) revokedIn(id ID, certs []*x509.Certificate) error {
	m := b.revoked[id.State]
	if len(m) == 0 {
		return nil
	}
	for _, c := range certs {
		if r, ok := m[sha256.Sum256(c.Raw)]; ok {
			return &RevokedError{ID: id, Subject: c.Subject.String(), Revocation: r}
		}
	}
	return nil
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
// A chain in which that state revoked any certificate (leaf, intermediate or
// the CA it verified to) is refused with a *RevokedError.
func (b *Bundle) Verify(rawCerts [][]byte, usage x509.ExtKeyUsage, now time.Time) (ID, *x509.Certificate, error) {
	if len(rawCerts) == 0 {
		return ID{}, nil, fmt.Errorf("%w: no certificate presented", ErrUntrusted)
	}
	if id, leaf, ok := b.cached(chainKey(rawCerts, usage), now); ok {
		return id, leaf, nil
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
	raw := make([][]byte, len(certs))
	for i, c := range certs {
		raw[i] = c.Raw
	}
	key := chainKey(raw, usage)
	if id, leaf, ok := b.cached(key, now); ok {
		return id, leaf, nil
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
	// A presented certificate its state withdrew is refused whatever else
	// the chain holds, before any signature is checked: the fingerprint
	// names exactly the certificate the state revoked.
	if err := b.revokedIn(id, certs); err != nil {
		return ID{}, nil, err
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return ID{}, nil, fmt.Errorf("%w: %s: chain does not verify against the CA of %s: %v", ErrUntrusted, id, id.State, err)
	}
	// Verification may have built chains through certificates the peer did
	// not present (a CA listed in the directory that its state has since
	// revoked without removing it). A chain holds only if none of its
	// certificates is revoked.
	var good []*x509.Certificate
	for _, ch := range chains {
		if err = b.revokedIn(id, ch); err == nil {
			good = ch
			break
		}
	}
	if good == nil {
		return ID{}, nil, err
	}
	v := verifiedChain{id: id, leaf: leaf, notBefore: leaf.NotBefore, notAfter: leaf.NotAfter}
	for _, c := range good {
		if c.NotBefore.After(v.notBefore) {
			v.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(v.notAfter) {
			v.notAfter = c.NotAfter
		}
	}
	b.remember(key, v)
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
