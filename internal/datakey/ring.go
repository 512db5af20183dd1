package datakey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Size is the length of a data key in bytes (AES-256).
const Size = 32

// IDLen is the length of a key ID in bytes.
const IDLen = 4

// Overhead is how many bytes Seal adds to a plaintext: version, key ID,
// nonce and tag.
const Overhead = 1 + IDLen + 12 + 16 // 33

const (
	// versionGCM marks a value sealed with AES-256-GCM and a random 96-bit
	// nonce. A new algorithm gets a new version byte, so that values sealed
	// before and after a change of algorithm can be told apart.
	versionGCM byte = 0x01
	headerLen       = 1 + IDLen
)

// Errors of Open, for errors.Is.
var (
	// ErrUnknownKey: the value was sealed under a key the ring does not hold.
	ErrUnknownKey = errors.New("not in the key ring")
	// ErrAuthentication: the value does not authenticate under the key its
	// header names: it was changed, or moved from where it was sealed.
	ErrAuthentication = errors.New("does not authenticate")
	// ErrMalformed: the bytes are not a sealed value at all.
	ErrMalformed = errors.New("not a sealed value")
)

// ID identifies a key; see the package documentation for how it is derived.
type ID [IDLen]byte

// String returns the ID as eight hexadecimal digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID reads an ID written as eight hexadecimal digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDLen {
		return id, fmt.Errorf("datakey: key id %q is not %d hexadecimal digits", s, 2*IDLen)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("datakey: key id %q is not %d hexadecimal digits", s, 2*IDLen)
	}
	return id, nil
}

// idOf derives a key's ID from its bytes. The label keeps this hash apart
// from any other use of SHA-256 over the same key.
func idOf(secret *[Size]byte) ID {
	h := sha256.New()
	h.Write([]byte("pocnet data key id\x00"))
	h.Write(secret[:])
	var id ID
	copy(id[:], h.Sum(nil))
	return id
}

// Key is one data key. Its bytes never leave this package except through
// a key file (Write, Add); formatting a Key prints its ID only.
type Key struct {
	id     ID
	secret [Size]byte
}

// Generate returns a new random key.
func Generate() (Key, error) {
	var k Key
	if _, err := rand.Read(k.secret[:]); err != nil {
		return Key{}, fmt.Errorf("datakey: generate: %w", err)
	}
	k.id = idOf(&k.secret)
	return k, nil
}

// ID returns the key's ID.
func (k Key) ID() ID { return k.id }

// String returns "datakey.Key(<id>)": never the key bytes.
func (k Key) String() string { return "datakey.Key(" + k.id.String() + ")" }

// Format prints String whatever the verb, so that no fmt verb (%x, %d, %#v)
// can print the key bytes.
func (k Key) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// Ring is an immutable set of keys, the last one current. It is safe for
// concurrent use.
type Ring struct {
	keys  []Key // in file order; the last is current
	aeads map[ID]cipher.AEAD
}

// NewRing returns a ring of keys; the last one is current. It fails on an
// empty list and on two keys with the same ID.
func NewRing(keys ...Key) (*Ring, error) {
	if len(keys) == 0 {
		return nil, errors.New("datakey: a key ring needs at least one key")
	}
	r := &Ring{keys: append([]Key(nil), keys...), aeads: make(map[ID]cipher.AEAD, len(keys))}
	for _, k := range keys {
		if _, dup := r.aeads[k.id]; dup {
			return nil, fmt.Errorf("datakey: key %s is in the ring twice", k.id)
		}
		if k.id != idOf(&k.secret) {
			return nil, fmt.Errorf("datakey: key %s does not match its id", k.id)
		}
		block, err := aes.NewCipher(k.secret[:])
		if err != nil {
			return nil, fmt.Errorf("datakey: key %s: %w", k.id, err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("datakey: key %s: %w", k.id, err)
		}
		r.aeads[k.id] = aead
	}
	return r, nil
}

// With returns a new ring holding r's keys and k, which becomes current.
func (r *Ring) With(k Key) (*Ring, error) {
	return NewRing(append(r.Keys(), k)...)
}

// Without returns a new ring without the key id. Removing the current key
// is refused: a ring always has one to seal with, chosen by the operator.
func (r *Ring) Without(id ID) (*Ring, error) {
	if id == r.Current() {
		return nil, fmt.Errorf("datakey: key %s is current and cannot be removed; add a new key first", id)
	}
	if !r.Has(id) {
		return nil, fmt.Errorf("datakey: data key %s is %w", id, ErrUnknownKey)
	}
	keys := make([]Key, 0, len(r.keys)-1)
	for _, k := range r.keys {
		if k.id != id {
			keys = append(keys, k)
		}
	}
	return NewRing(keys...)
}

// Keys returns the ring's keys, the current one last.
func (r *Ring) Keys() []Key { return append([]Key(nil), r.keys...) }

// IDs returns the IDs of the ring's keys, the current one last.
func (r *Ring) IDs() []ID {
	ids := make([]ID, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.id
	}
	return ids
}

// Current returns the ID of the key Seal uses.
func (r *Ring) Current() ID { return r.keys[len(r.keys)-1].id }

// Has reports whether the ring holds the key id.
func (r *Ring) Has(id ID) bool {
	_, ok := r.aeads[id]
	return ok
}

// String lists the ring's key IDs, the current one last; never key bytes.
func (r Ring) String() string {
	var b strings.Builder
	b.WriteString("datakey.Ring(")
	for i, k := range r.keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k.id.String())
	}
	b.WriteString(" current)")
	return b.String()
}

// Format prints String whatever the verb: fmt does not call the methods of
// unexported fields, so without it %+v of a Ring would print key bytes.
func (r Ring) Format(f fmt.State, _ rune) { io.WriteString(f, r.String()) }

// Seal encrypts and authenticates plaintext under the current key, binding
// aad (which is authenticated but not stored). See the package
// documentation for the layout of the result.
func (r *Ring) Seal(plaintext, aad []byte) []byte {
	return r.AppendSeal(make([]byte, 0, Overhead+len(plaintext)), plaintext, aad)
}

// AppendSeal is Seal appending the sealed value, Overhead+len(plaintext)
// bytes, to dst: a caller that has room for it (a database batch, say)
// saves a copy. dst and plaintext must not overlap.
func (r *Ring) AppendSeal(dst, plaintext, aad []byte) []byte {
	k := r.keys[len(r.keys)-1]
	aead := r.aeads[k.id]
	start := len(dst)
	dst = append(dst, versionGCM)
	dst = append(dst, k.id[:]...)
	return aead.Seal(dst, nil, plaintext, additionalData(dst[start:start+headerLen], aad))
}

// Open checks and decrypts a value made by Seal with the same aad, under
// whichever key of the ring sealed it.
func (r *Ring) Open(sealed, aad []byte) ([]byte, error) {
	id, err := SealedBy(sealed)
	if err != nil {
		return nil, err
	}
	aead, ok := r.aeads[id]
	if !ok {
		return nil, fmt.Errorf("datakey: data key %s is %w", id, ErrUnknownKey)
	}
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("datakey: %d bytes: %w", len(sealed), ErrMalformed)
	}
	out, err := aead.Open(nil, nil, sealed[headerLen:], additionalData(sealed[:headerLen], aad))
	if err != nil {
		return nil, fmt.Errorf("datakey: value sealed under key %s %w (changed, or moved from where it was written)", id, ErrAuthentication)
	}
	return out, nil
}

// SealedBy returns the ID of the key a sealed value names in its header,
// without decrypting it: enough to count values per key or find those to
// reseal. It does not prove the value authentic; Open does.
func SealedBy(sealed []byte) (ID, error) {
	var id ID
	if len(sealed) < headerLen {
		return id, fmt.Errorf("datakey: %d bytes: %w", len(sealed), ErrMalformed)
	}
	if sealed[0] != versionGCM {
		return id, fmt.Errorf("datakey: version byte %#02x: %w", sealed[0], ErrMalformed)
	}
	copy(id[:], sealed[1:headerLen])
	return id, nil
}

// additionalData authenticates the header with the caller's aad, so that
// neither the version nor the key ID can be changed without Open noticing.
func additionalData(header, aad []byte) []byte {
	ad := make([]byte, 0, len(header)+len(aad))
	return append(append(ad, header...), aad...)
}
