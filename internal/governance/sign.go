package governance

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/directory"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Domain-separation prefixes. A signature approving a version can never pass
// as an objection to it, nor as an envelope or receipt signature, which use
// other prefixes.
const (
	versionDomain   = "pocnet/v1 directory version\x00"
	objectionDomain = "pocnet/v1 directory objection\x00"
)

// signingInput is domain || 4-byte big-endian length || version bytes.
func signingInput(domain string, version []byte) []byte {
	l := len(version)
	out := make([]byte, 0, len(domain)+4+l)
	out = append(out, domain...)
	out = append(out, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
	return append(out, version...)
}

// Hash returns the SHA-256 of a version's exact bytes: what its child names
// as parent_hash.
func Hash(version []byte) [sha256.Size]byte { return sha256.Sum256(version) }

// Marshal serializes a version deterministically. The bytes it returns are
// what is signed and hashed; they are never re-serialized afterwards.
func Marshal(v *pocnetv1.DirectoryVersion) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("governance: %w", err)
	}
	return b, nil
}

// Sign returns state's signature approving the version bytes, made with
// key, whose public half state publishes in the directory in force.
func Sign(state string, key ed25519.PrivateKey, version []byte) (*pocnetv1.VersionSignature, error) {
	return sign(versionDomain, state, key, version)
}

// Object returns state's signed objection to the observer admission in the
// version bytes.
func Object(state string, key ed25519.PrivateKey, version []byte) (*pocnetv1.VersionSignature, error) {
	return sign(objectionDomain, state, key, version)
}

func sign(domain, state string, key ed25519.PrivateKey, version []byte) (*pocnetv1.VersionSignature, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("governance: signing key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	return &pocnetv1.VersionSignature{
		State:     state,
		KeyId:     directory.SigningKeyID(key.Public().(ed25519.PublicKey)),
		Signature: ed25519.Sign(key, signingInput(domain, version)),
	}, nil
}
