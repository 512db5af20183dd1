package envelope

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Limits on what a node accepts from a peer, checked before any parsing.
const (
	MaxHeaderSize  = 16 << 10
	MaxPayloadSize = 3 << 20
	maxChainLen    = 8
)

// ErrMalformed is returned (wrapped) for an envelope whose bytes do not
// decode or lack a required part.
var ErrMalformed = errors.New("malformed envelope")

// Build serializes header and payload, signs them and returns the envelope.
// Deterministic marshaling is not needed for verification (the signature
// covers the bytes as produced here) but keeps retries byte-identical.
func Build(s *Signer, h *pocnetv1.EnvelopeHeader, p *pocnetv1.Payload) (*pocnetv1.Envelope, error) {
	mo := proto.MarshalOptions{Deterministic: true}
	hb, err := mo.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("envelope: header: %w", err)
	}
	pb, err := mo.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("envelope: payload: %w", err)
	}
	if len(hb) > MaxHeaderSize || len(pb) > MaxPayloadSize {
		return nil, fmt.Errorf("envelope: header %d bytes, payload %d bytes: over the limits (%d, %d)", len(hb), len(pb), MaxHeaderSize, MaxPayloadSize)
	}
	sig, err := s.sign(envelopeDomain, hb, pb)
	if err != nil {
		return nil, err
	}
	return &pocnetv1.Envelope{Header: hb, Payload: pb, Signature: sig}, nil
}

// Digest is the SHA-256 of an envelope's signed bytes. Two envelopes with the
// same id and a different digest are a conflict, never a retry.
func Digest(env *pocnetv1.Envelope) []byte {
	sum := sha256.Sum256(signingInput(envelopeDomain, env.GetHeader(), env.GetPayload()))
	return sum[:]
}

// Opened is a verified envelope.
type Opened struct {
	Header  *pocnetv1.EnvelopeHeader
	Payload *pocnetv1.Payload
	// Signer is the verified identity of the signing node.
	Signer identity.ID
	Digest []byte
}

// DecodeHeader parses an envelope's header without verifying anything. It
// is used to route and to report; trust nothing in it before Open succeeds.
func DecodeHeader(env *pocnetv1.Envelope) (*pocnetv1.EnvelopeHeader, error) {
	if len(env.GetHeader()) == 0 {
		return nil, fmt.Errorf("%w: empty header", ErrMalformed)
	}
	if len(env.GetHeader()) > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header of %d bytes exceeds %d", ErrMalformed, len(env.GetHeader()), MaxHeaderSize)
	}
	var h pocnetv1.EnvelopeHeader
	if err := proto.Unmarshal(env.GetHeader(), &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	return &h, nil
}

// Open decodes env and verifies that it was signed by the node of the state
// its header names as sender, with a certificate that chains to that state's
// CA in bundle at time now. Nothing in the envelope is trusted before this.
func Open(env *pocnetv1.Envelope, bundle *identity.Bundle, now time.Time) (*Opened, error) {
	h, err := DecodeHeader(env)
	if err != nil {
		return nil, err
	}
	if len(env.GetPayload()) > MaxPayloadSize {
		return nil, fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrMalformed, len(env.GetPayload()), MaxPayloadSize)
	}
	leaf, signer, err := verifyChain(env.GetSignature(), bundle, now)
	if err != nil {
		return nil, err
	}
	// The signer must be the sending state's own node: a valid signature by
	// any other participant proves nothing about what that state sent.
	if want := identity.Node(bundle.Federation(), h.GetFromState()); signer != want {
		return nil, fmt.Errorf("%w: signed by %s, but the header says it comes from %s", ErrBadSignature, signer, want)
	}
	if err := verifySig(leaf, env.GetSignature().GetValue(), envelopeDomain, env.GetHeader(), env.GetPayload()); err != nil {
		return nil, err
	}
	if h.GetPayloadEncoding() != pocnetv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO {
		return nil, fmt.Errorf("%w: payload encoding %v is not supported by this node", ErrMalformed, h.GetPayloadEncoding())
	}
	var p pocnetv1.Payload
	if err := proto.Unmarshal(env.GetPayload(), &p); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	return &Opened{Header: h, Payload: &p, Signer: signer, Digest: Digest(env)}, nil
}

func verifyChain(sig *pocnetv1.Signature, bundle *identity.Bundle, now time.Time) (*x509.Certificate, identity.ID, error) {
	if sig == nil {
		return nil, identity.ID{}, fmt.Errorf("%w: no signature", ErrBadSignature)
	}
	if sig.GetAlgorithm() != pocnetv1.SignatureAlgorithm_SIGNATURE_ALGORITHM_X509 {
		return nil, identity.ID{}, fmt.Errorf("%w: algorithm %v is not supported by this node", ErrBadSignature, sig.GetAlgorithm())
	}
	chain := sig.GetCertificateChain()
	if len(chain) == 0 || len(chain) > maxChainLen {
		return nil, identity.ID{}, fmt.Errorf("%w: certificate chain of %d certificates (want 1 to %d)", ErrBadSignature, len(chain), maxChainLen)
	}
	// Signatures are checked against the CA of the state the signer claims,
	// exactly as in the TLS handshake.
	id, leaf, err := bundle.Verify(chain, x509.ExtKeyUsageAny, now)
	if err != nil {
		return nil, identity.ID{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if sig.GetKeyId() != KeyID(leaf) {
		return nil, identity.ID{}, fmt.Errorf("%w: key id %q does not match the signer certificate", ErrBadSignature, sig.GetKeyId())
	}
	return leaf, id, nil
}
