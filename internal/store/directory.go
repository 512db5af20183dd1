package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// The signed directory (package governance, kept by internal/dirsync):
//
//	'g' version                → SignedVersion bytes, exactly as verified; written
//	                             once per version, in chain order, never rewritten
//	'p' hash                   → SignedVersion bytes of a pending proposal, with
//	                             the signatures and objections collected so far;
//	                             deleted when it is adopted or superseded
//	'k' key id                 → a private key the node made when it rotated its
//	                             state's keys (PKCS#8 for signing keys, the HPKE
//	                             private key bytes for encryption keys), sealed
//	                             at rest like every value; never deleted by the
//	                             node, since records sealed to an old key stay
//	                             readable only with it
const (
	nsVersion  = 'g'
	nsProposal = 'p'
	nsKey      = 'k'
	hashLen    = 32
	maxKeyID   = 128
)

func versionKey(n uint64) []byte {
	k := make([]byte, 1+seqLen)
	k[0] = nsVersion
	binary.BigEndian.PutUint64(k[1:], n)
	return k
}

// PutDirectoryVersion stores version n of the directory chain.
func (t *Tx) PutDirectoryVersion(n uint64, signed []byte) error {
	if n == 0 || len(signed) == 0 {
		return fmt.Errorf("store: directory version %d: empty", n)
	}
	t.set(versionKey(n), signed)
	return nil
}

// DirectoryVersion returns stored version n, if any.
func (t *Tx) DirectoryVersion(n uint64) ([]byte, bool, error) {
	return t.get(versionKey(n))
}

// PutProposal stores a pending proposal under its hash.
func (t *Tx) PutProposal(hash, signed []byte) error {
	if len(hash) != hashLen || len(signed) == 0 {
		return fmt.Errorf("store: proposal: hash of %d bytes or empty value", len(hash))
	}
	t.set(append([]byte{nsProposal}, hash...), signed)
	return nil
}

// DeleteProposal removes a proposal.
func (t *Tx) DeleteProposal(hash []byte) {
	t.del(append([]byte{nsProposal}, hash...))
}

// PutPrivateKey stores a private key the node made, under its id.
func (t *Tx) PutPrivateKey(id string, key []byte) error {
	if id == "" || len(id) > maxKeyID || len(key) == 0 {
		return fmt.Errorf("store: private key %q: empty or id too long", id)
	}
	t.set(append([]byte{nsKey}, id...), key)
	return nil
}

// DirectoryVersions returns the stored chain after version after, in
// order. A gap is corruption and an error.
func (d *DB) DirectoryVersions(after uint64) ([][]byte, error) {
	var out [][]byte
	next := after + 1
	err := d.scan(versionKey(after+1), []byte{nsVersion + 1}, func(k, v []byte) error {
		if len(k) != 1+seqLen {
			return fmt.Errorf("%w: directory version key of %d bytes", ErrStorage, len(k))
		}
		if n := binary.BigEndian.Uint64(k[1:]); n != next {
			return fmt.Errorf("%w: directory version %d follows %d", ErrStorage, n, next-1)
		}
		next++
		out = append(out, v)
		return nil
	})
	return out, err
}

// Proposals returns the stored proposals.
func (d *DB) Proposals() ([][]byte, error) {
	var out [][]byte
	err := d.scan([]byte{nsProposal}, []byte{nsProposal + 1}, func(_, v []byte) error {
		out = append(out, v)
		return nil
	})
	return out, err
}

// PrivateKeys returns the private keys the node made, by id.
func (d *DB) PrivateKeys() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := d.scan([]byte{nsKey}, []byte{nsKey + 1}, func(k, v []byte) error {
		out[string(k[1:])] = v
		return nil
	})
	return out, err
}

// scan calls fn with each key and opened value in [lo, hi), in order. fn
// may keep both.
func (d *DB) scan(lo, hi []byte, fn func(k, v []byte) error) error {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := append([]byte(nil), it.Key()...)
		v, err := d.open(k, it.Value())
		if err != nil {
			return err
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil && !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	return nil
}
