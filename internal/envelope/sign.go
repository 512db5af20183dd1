package envelope

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pocnet/pocnet/internal/directory"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Domain-separation prefixes. Each signed structure has its own, so that a
// signature over an envelope can never pass as a receipt or the reverse.
const (
	envelopeDomain     = "pocnet/v1 envelope\x00"
	envelopeTreeDomain = "pocnet/v1 envelope tree\x00"
	receiptDomain      = "pocnet/v1 receipt\x00"
)

// ErrBadSignature is returned (wrapped) when a signature does not verify or
// was made by a key that may not sign what it signed.
var ErrBadSignature = errors.New("bad signature")

// Signer signs with a state's Ed25519 signing key, the private half of a
// key its state publishes in the directory. The key can be replaced while
// the node runs (a key rotation); each signature is made with one key and
// names it.
type Signer struct {
	cur atomic.Pointer[signingKey]
}

type signingKey struct {
	key ed25519.PrivateKey
	id  string
}

// NewSigner returns a Signer for key.
func NewSigner(key ed25519.PrivateKey) (*Signer, error) {
	s := &Signer{}
	if err := s.Set(key); err != nil {
		return nil, err
	}
	return s, nil
}

// Set makes key the signing key from now on.
func (s *Signer) Set(key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("envelope: signing key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	s.cur.Store(&signingKey{key: key, id: directory.SigningKeyID(key.Public().(ed25519.PublicKey))})
	return nil
}

// KeyID returns the directory key id of the signer's key.
func (s *Signer) KeyID() string { return s.cur.Load().id }

func (s *Signer) sign(domain string, parts ...[]byte) *pocnetv1.Signature {
	k := s.cur.Load()
	in := getInput(domain, parts...)
	defer putInput(in)
	return &pocnetv1.Signature{
		Algorithm: pocnetv1.SignatureAlgorithm_SIGNATURE_ALGORITHM_ED25519,
		KeyId:     k.id,
		Value:     ed25519.Sign(k.key, *in),
	}
}

// verifySig checks sig over domain||parts with pub.
func verifySig(pub ed25519.PublicKey, sig *pocnetv1.Signature, domain string, parts ...[]byte) error {
	in := getInput(domain, parts...)
	defer putInput(in)
	if !ed25519.Verify(pub, *in, sig.GetValue()) {
		return fmt.Errorf("%w: signature does not verify with key %s", ErrBadSignature, sig.GetKeyId())
	}
	return nil
}

// inputs holds buffers for signing inputs: every envelope is signed once
// and verified once, and its signing input is as large as the envelope.
var inputs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledInput bounds the buffers kept for reuse.
const maxPooledInput = 64 << 10

// getInput returns signingInput(domain, parts...) in a pooled buffer, to be
// returned with putInput once the signature is made or checked (Ed25519
// keeps no reference to the message).
func getInput(domain string, parts ...[]byte) *[]byte {
	b := inputs.Get().(*[]byte)
	*b = appendSigningInput((*b)[:0], domain, parts...)
	return b
}

func putInput(b *[]byte) {
	if cap(*b) <= maxPooledInput {
		inputs.Put(b)
	}
}

// checkSignatureForm rejects a missing signature or one of an algorithm
// this node does not verify, before any key is looked up.
func checkSignatureForm(sig *pocnetv1.Signature) error {
	if sig == nil {
		return fmt.Errorf("%w: no signature", ErrBadSignature)
	}
	if sig.GetAlgorithm() != pocnetv1.SignatureAlgorithm_SIGNATURE_ALGORITHM_ED25519 {
		return fmt.Errorf("%w: algorithm %v is not supported (want SIGNATURE_ALGORITHM_ED25519)", ErrBadSignature, sig.GetAlgorithm())
	}
	if len(sig.GetValue()) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature of %d bytes, an Ed25519 signature has %d", ErrBadSignature, len(sig.GetValue()), ed25519.SignatureSize)
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
	return appendSigningInput(make([]byte, 0, n), domain, parts...)
}

func appendSigningInput(out []byte, domain string, parts ...[]byte) []byte {
	out = append(out, domain...)
	for _, p := range parts {
		l := len(p)
		out = append(out, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
		out = append(out, p...)
	}
	return out
}

// SignRaw signs header and payload bytes as they are, alone and without a
// tree, without building or checking them. It exists for tests and tools
// that must produce envelopes a correct node would never build, to check
// that they are refused.
func SignRaw(s *Signer, header, payload []byte) *pocnetv1.Envelope {
	return &pocnetv1.Envelope{Header: header, Payload: payload, Signature: s.sign(envelopeDomain, header, payload)}
}
