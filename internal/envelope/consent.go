package envelope

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// consentDomain separates disclosure consents from every other signature a
// state's key makes: an envelope or receipt signature can never pass as a
// consent to disclose, nor the reverse.
const consentDomain = "pocnet/v1 disclosure consent\x00"

// SignConsent signs state's consent to disclose the transcript whose
// SHA-256 is transcriptDigest, for purpose, at time at. The signature binds
// the exact transcript bytes: a consent to one transcript is no consent to
// any other, however similar.
func SignConsent(s *Signer, transcriptDigest []byte, state string, at time.Time, purpose string) *pocnetv1.Consent {
	ts := timestamppb.New(at)
	k := s.cur.Load()
	sig := ed25519.Sign(k.key, consentInput(transcriptDigest, state, ts, purpose))
	return &pocnetv1.Consent{State: state, KeyId: k.id, SignedAt: ts, Purpose: purpose, Signature: sig}
}

// VerifyConsent checks that c was signed over transcriptDigest by a signing
// key that the state c names publishes and may use at c.signed_at. Like
// Verify it needs no private key: anyone holding the directory can check a
// consent offline.
func VerifyConsent(c *pocnetv1.Consent, keys Keys, transcriptDigest []byte) error {
	if c == nil {
		return fmt.Errorf("%w: no consent", ErrMalformed)
	}
	if len(transcriptDigest) != sha256.Size {
		return fmt.Errorf("%w: transcript digest of %d bytes, want %d", ErrMalformed, len(transcriptDigest), sha256.Size)
	}
	if err := c.GetSignedAt().CheckValid(); err != nil {
		return fmt.Errorf("%w: consent signed_at: %v", ErrMalformed, err)
	}
	if len(c.GetSignature()) != ed25519.SignatureSize {
		return fmt.Errorf("%w: consent signature of %d bytes, an Ed25519 signature has %d", ErrBadSignature, len(c.GetSignature()), ed25519.SignatureSize)
	}
	// The key must be one the consenting state publishes: a valid signature
	// by another state's key says nothing about what this state agreed to.
	pub, err := keys.SigningKeyValid(c.GetState(), c.GetKeyId(), c.GetSignedAt().AsTime())
	if err != nil {
		return fmt.Errorf("%w: consent: %v", ErrBadSignature, err)
	}
	if !ed25519.Verify(pub, consentInput(transcriptDigest, c.GetState(), c.GetSignedAt(), c.GetPurpose()), c.GetSignature()) {
		return fmt.Errorf("%w: consent signature does not verify with key %s", ErrBadSignature, c.GetKeyId())
	}
	return nil
}

// consentInput is what a consent signs: the domain, then the transcript
// digest, state, signed_at and purpose, each length-prefixed.
func consentInput(transcriptDigest []byte, state string, at *timestamppb.Timestamp, purpose string) []byte {
	var t [12]byte
	binary.BigEndian.PutUint64(t[:8], uint64(at.GetSeconds()))
	binary.BigEndian.PutUint32(t[8:], uint32(at.GetNanos()))
	return signingInput(consentDomain, transcriptDigest, []byte(state), t[:], []byte(purpose))
}
