package envelope_test

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pocnet/pocnet/internal/envelope"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func TestConsent(t *testing.T) {
	fx := newFixture(t)
	digest := sha256.Sum256([]byte("a transcript"))
	at := time.Now()
	c := envelope.SignConsent(fx.signer["XBB"], digest[:], "XBB", at, "Court of Examplia")
	if err := envelope.VerifyConsent(c, fx.dir, digest[:]); err != nil {
		t.Fatalf("honest consent: %v", err)
	}
	other := sha256.Sum256([]byte("another transcript"))
	tests := []struct {
		name   string
		mutate func(c *pocnetv1.Consent)
		digest []byte
		want   string
	}{
		{"other transcript", nil, other[:], "does not verify"},
		{"short digest", nil, digest[:16], "transcript digest"},
		{"other purpose", func(c *pocnetv1.Consent) { c.Purpose = "anyone" }, digest[:], "does not verify"},
		{"other time", func(c *pocnetv1.Consent) { c.SignedAt.Seconds++ }, digest[:], "does not verify"},
		{"other state", func(c *pocnetv1.Consent) { c.State = "XAA" }, digest[:], "is not a signing key of XAA"},
		{"other state with its key id", func(c *pocnetv1.Consent) { c.State, c.KeyId = "XAA", fx.signer["XAA"].KeyID() }, digest[:], "does not verify"},
		{"no time", func(c *pocnetv1.Consent) { c.SignedAt = nil }, digest[:], "signed_at"},
		{"short signature", func(c *pocnetv1.Consent) { c.Signature = c.Signature[:10] }, digest[:], "signature of 10 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := envelope.SignConsent(fx.signer["XBB"], digest[:], "XBB", at, "Court of Examplia")
			if tc.mutate != nil {
				tc.mutate(d)
			}
			err := envelope.VerifyConsent(d, fx.dir, tc.digest)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	if err := envelope.VerifyConsent(nil, fx.dir, digest[:]); !errors.Is(err, envelope.ErrMalformed) {
		t.Errorf("nil consent: %v", err)
	}

	// An envelope signature never passes as a consent: the domains differ.
	b := fx.build(t, "XBB", "XAA")
	forged := envelope.SignConsent(fx.signer["XBB"], digest[:], "XBB", at, "x")
	forged.Signature = b.Envelope.GetSignature().GetValue()
	if err := envelope.VerifyConsent(forged, fx.dir, digest[:]); !errors.Is(err, envelope.ErrBadSignature) {
		t.Errorf("envelope signature as consent: %v", err)
	}
}
