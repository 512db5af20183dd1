package envelope

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/pocnet/pocnet/internal/directory"
)

// hpkePEMType is the PEM block type of an encryption private key file: the
// RFC 9180 SerializePrivateKey form of an ML-KEM-768+X25519 key.
const hpkePEMType = "HPKE MLKEM768-X25519 PRIVATE KEY"

// LoadSigningKey reads an Ed25519 private key from a PEM "PRIVATE KEY"
// (PKCS #8) file, as written by WriteSigningKey or by
// `openssl genpkey -algorithm ed25519`.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, not an Ed25519 private key", path, k)
	}
	return ek, nil
}

// LoadEncryptionKey reads an HPKE private key file written by
// WriteEncryptionKey and returns it with its directory key id.
func LoadEncryptionKey(path string) (hpke.PrivateKey, string, error) {
	b, err := readPEM(path, hpkePEMType)
	if err != nil {
		return nil, "", err
	}
	k, err := directory.KEM().NewPrivateKey(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return k, directory.EncryptionKeyID(k.PublicKey().Bytes()), nil
}

func readPEM(path, typ string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != typ {
		return nil, fmt.Errorf("%s: no PEM block %q", path, typ)
	}
	return b.Bytes, nil
}

// GenerateSigningKey makes a new Ed25519 signing key.
func GenerateSigningKey() (ed25519.PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	return k, err
}

// GenerateEncryptionKey makes a new ML-KEM-768+X25519 HPKE key.
func GenerateEncryptionKey() (hpke.PrivateKey, error) {
	return directory.KEM().GenerateKey()
}

// MarshalSigningKey encodes k as a PEM PKCS #8 "PRIVATE KEY" block, the
// form LoadSigningKey reads.
func MarshalSigningKey(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalEncryptionKey encodes k as the PEM block LoadEncryptionKey reads.
func MarshalEncryptionKey(k hpke.PrivateKey) ([]byte, error) {
	b, err := k.Bytes()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: hpkePEMType, Bytes: b}), nil
}
