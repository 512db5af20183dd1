package envelope

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Domain-separation prefixes. Each signed structure has its own, so that a
// signature over an envelope can never pass as a receipt or the reverse.
const (
	envelopeDomain = "pocnet/v1 envelope\x00"
	receiptDomain  = "pocnet/v1 receipt\x00"
)

// ErrBadSignature is returned (wrapped) when a signature does not verify or
// was made by a key that may not sign what it signed.
var ErrBadSignature = errors.New("bad signature")

// Signer signs with a node's certificate key. The certificate chain travels
// with every signature so that any holder of the directory can verify it.
type Signer struct {
	key   crypto.Signer
	chain [][]byte
	keyID string
}

// NewSigner returns a Signer for a node's TLS certificate.
func NewSigner(cert *tls.Certificate) (*Signer, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("envelope: certificate has no chain")
	}
	key, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("envelope: private key of type %T cannot sign", cert.PrivateKey)
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("envelope: %w", err)
		}
	}
	if _, _, err := hashFor(leaf.PublicKey); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	return &Signer{key: key, chain: cert.Certificate, keyID: KeyID(leaf)}, nil
}

// KeyID is the lowercase hex SHA-256 of a certificate's public key info.
func KeyID(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// hashFor picks the digest a key type signs with; nil hash means the key
// signs the message itself (Ed25519).
func hashFor(pub crypto.PublicKey) (crypto.Hash, func() hash.Hash, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return crypto.SHA256, sha256.New, nil
		case elliptic.P384():
			return crypto.SHA384, sha512.New384, nil
		case elliptic.P521():
			return crypto.SHA512, sha512.New, nil
		}
		return 0, nil, fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return 0, nil, fmt.Errorf("RSA key of %d bits is too small (minimum 2048)", k.N.BitLen())
		}
		return crypto.SHA256, sha256.New, nil
	case ed25519.PublicKey:
		return 0, nil, nil
	default:
		return 0, nil, fmt.Errorf("unsupported public key type %T", pub)
	}
}

func (s *Signer) sign(domain string, parts ...[]byte) (*pocnetv1.Signature, error) {
	msg := signingInput(domain, parts...)
	h, newHash, err := hashFor(s.key.Public())
	if err != nil {
		return nil, err
	}
	var sig []byte
	switch {
	case newHash == nil:
		sig, err = s.key.Sign(rand.Reader, msg, crypto.Hash(0))
	default:
		d := newHash()
		d.Write(msg)
		var opts crypto.SignerOpts = h
		if _, isRSA := s.key.Public().(*rsa.PublicKey); isRSA {
			opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
		}
		sig, err = s.key.Sign(rand.Reader, d.Sum(nil), opts)
	}
	if err != nil {
		return nil, fmt.Errorf("envelope: signing: %w", err)
	}
	return &pocnetv1.Signature{
		Algorithm:        pocnetv1.SignatureAlgorithm_SIGNATURE_ALGORITHM_X509,
		KeyId:            s.keyID,
		Value:            sig,
		CertificateChain: s.chain,
	}, nil
}

// verifySig checks sig over domain||parts with the public key of leaf.
func verifySig(leaf *x509.Certificate, sig []byte, domain string, parts ...[]byte) error {
	msg := signingInput(domain, parts...)
	h, newHash, err := hashFor(leaf.PublicKey)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	var digest []byte
	if newHash != nil {
		d := newHash()
		d.Write(msg)
		digest = d.Sum(nil)
	}
	ok := false
	switch k := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest, sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}) == nil
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, sig)
	}
	if !ok {
		return fmt.Errorf("%w: signature does not verify with the key of %q", ErrBadSignature, leaf.Subject.String())
	}
	return nil
}

// signingInput is domain || for each part: 4-byte big-endian length || part.
// Lengths make the split between parts unambiguous.
func signingInput(domain string, parts ...[]byte) []byte {
	n := len(domain)
	for _, p := range parts {
		n += 4 + len(p)
	}
	out := make([]byte, 0, n)
	out = append(out, domain...)
	for _, p := range parts {
		l := len(p)
		out = append(out, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
		out = append(out, p...)
	}
	return out
}
