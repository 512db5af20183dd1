package directory

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Key id prefixes name the algorithm, so that an id can never be read as a
// key of another kind.
const (
	SigningKeyPrefix    = "ed25519:"
	EncryptionKeyPrefix = "mlkem768x25519:"
)

// ErrUnknownKey is returned (wrapped) for a key id the directory does not
// list: a forged id, or a new key of a directory version this node does not
// hold yet.
var ErrUnknownKey = errors.New("unknown key")

// KEM is the HPKE KEM of every published encryption key: ML-KEM-768 with
// X25519, so that traffic recorded today stays confidential against a
// future quantum adversary while X25519 still protects it if ML-KEM falls.
func KEM() hpke.KEM { return hpke.MLKEM768X25519() }

// SigningKeyID is the key id of an Ed25519 public key.
func SigningKeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return SigningKeyPrefix + hex.EncodeToString(sum[:16])
}

// EncryptionKeyID is the key id of a serialized HPKE public key.
func EncryptionKeyID(pub []byte) string {
	sum := sha256.Sum256(pub)
	return EncryptionKeyPrefix + hex.EncodeToString(sum[:16])
}

// validateKeys checks a member's published keys: ids derived from the keys
// (an id cannot be chosen to collide with another), keys that parse, no id
// twice, a retirement time for every retired key, and at least one active
// key of each kind so that the member can sign and be sealed to.
func validateKeys(m *pocnetv1.Member) error {
	seen := map[string]bool{}
	active := 0
	for i, k := range m.GetSigningKeys() {
		f := fmt.Sprintf(".signing_keys[%d]", i)
		if len(k.GetPublicKey()) != ed25519.PublicKeySize {
			return fmt.Errorf("%s.public_key: %d bytes, an Ed25519 public key has %d", f, len(k.GetPublicKey()), ed25519.PublicKeySize)
		}
		if want := SigningKeyID(k.GetPublicKey()); k.GetKeyId() != want {
			return fmt.Errorf("%s.key_id: %q does not match the key (want %q)", f, k.GetKeyId(), want)
		}
		if err := validateStatus(k.GetStatus(), k.GetRetiredAt() != nil); err != nil {
			return fmt.Errorf("%s%v", f, err)
		}
		if seen[k.GetKeyId()] {
			return fmt.Errorf("%s.key_id: %s is listed twice", f, k.GetKeyId())
		}
		seen[k.GetKeyId()] = true
		if k.GetStatus() == pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
			active++
		}
	}
	if active == 0 {
		return fmt.Errorf(".signing_keys: at least one ACTIVE Ed25519 signing key is required")
	}
	active = 0
	for i, k := range m.GetEncryptionKeys() {
		f := fmt.Sprintf(".encryption_keys[%d]", i)
		if _, err := KEM().NewPublicKey(k.GetPublicKey()); err != nil {
			return fmt.Errorf("%s.public_key: not an ML-KEM-768+X25519 public key: %v", f, err)
		}
		if want := EncryptionKeyID(k.GetPublicKey()); k.GetKeyId() != want {
			return fmt.Errorf("%s.key_id: %q does not match the key (want %q)", f, k.GetKeyId(), want)
		}
		// An encryption key has no retirement time: retiring it only stops
		// new sealing, which is not a statement about the past.
		if err := validateStatus(k.GetStatus(), true); err != nil {
			return fmt.Errorf("%s%v", f, err)
		}
		if seen[k.GetKeyId()] {
			return fmt.Errorf("%s.key_id: %s is listed twice", f, k.GetKeyId())
		}
		seen[k.GetKeyId()] = true
		if k.GetStatus() == pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
			active++
		}
	}
	if active == 0 {
		return fmt.Errorf(".encryption_keys: at least one ACTIVE encryption key is required")
	}
	return nil
}

func validateStatus(s pocnetv1.KeyStatus, hasRetiredAt bool) error {
	switch s {
	case pocnetv1.KeyStatus_KEY_STATUS_ACTIVE, pocnetv1.KeyStatus_KEY_STATUS_REVOKED:
	case pocnetv1.KeyStatus_KEY_STATUS_RETIRED:
		if !hasRetiredAt {
			return fmt.Errorf(".retired_at: required for a RETIRED key")
		}
	default:
		return fmt.Errorf(".status: must be KEY_STATUS_ACTIVE, KEY_STATUS_RETIRED or KEY_STATUS_REVOKED")
	}
	return nil
}

// SigningKey returns the signing key state publishes under id.
func (d *Directory) SigningKey(state, id string) (*pocnetv1.SigningKey, bool) {
	for _, k := range d.members[state].GetSigningKeys() {
		if k.GetKeyId() == id {
			return k, true
		}
	}
	return nil, false
}

// SigningKeyValid says whether a signature by state's key id, made at the
// given time, is acceptable now: the key is listed, not revoked, and if
// retired, the signature was made before it was retired.
func (d *Directory) SigningKeyValid(state, id string, madeAt time.Time) (ed25519.PublicKey, error) {
	k, ok := d.SigningKey(state, id)
	if !ok {
		for other := range d.members {
			if _, theirs := d.SigningKey(other, id); theirs {
				return nil, fmt.Errorf("key id %q is not a signing key of %s in the directory but one of %s", id, state, other)
			}
		}
		return nil, fmt.Errorf("%w: key id %q is not a signing key of %s in the directory", ErrUnknownKey, id, state)
	}
	switch k.GetStatus() {
	case pocnetv1.KeyStatus_KEY_STATUS_ACTIVE:
	case pocnetv1.KeyStatus_KEY_STATUS_RETIRED:
		if at := k.GetRetiredAt().AsTime(); !madeAt.Before(at) {
			return nil, fmt.Errorf("signing key %s of %s was retired at %s, before this was made", id, state, at.UTC().Format(time.RFC3339))
		}
	default:
		return nil, fmt.Errorf("signing key %s of %s is revoked", id, state)
	}
	return ed25519.PublicKey(k.GetPublicKey()), nil
}

// SealingKey returns the encryption key to seal to for state: the last
// ACTIVE one listed.
func (d *Directory) SealingKey(state string) (*pocnetv1.EncryptionKey, bool) {
	keys := d.members[state].GetEncryptionKeys()
	for i := len(keys) - 1; i >= 0; i-- {
		if keys[i].GetStatus() == pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
			return keys[i], true
		}
	}
	return nil, false
}

// EncryptionKeys returns the encryption keys state publishes.
func (d *Directory) EncryptionKeys(state string) []*pocnetv1.EncryptionKey {
	return d.members[state].GetEncryptionKeys()
}
