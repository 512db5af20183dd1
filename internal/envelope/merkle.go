package envelope

import (
	"crypto/sha256"
	"errors"
	"math/bits"
)

// Receipts and envelopes signed together use the Merkle tree of RFC 9162
// (Certificate Transparency 2.0), section 2.1, with SHA-256: leaves and
// interior nodes are hashed with distinct prefixes, so that no leaf can
// pass for an interior node.

func leafHash(leaf []byte) []byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(leaf)
	return h.Sum(nil)
}

func nodeHash(left, right []byte) []byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(left)
	h.Write(right)
	return h.Sum(nil)
}

// treeRoot returns the root of the tree over leaf hashes and, for every
// leaf, its inclusion path.
func treeRoot(hashes [][]byte) (root []byte, paths [][][]byte) {
	paths = make([][][]byte, len(hashes))
	return subtree(hashes, 0, paths), paths
}

// subtree computes the root of hashes[0:n] (leaf indices offset..offset+n)
// and appends to each leaf's path the sibling hashes on its way up.
func subtree(hashes [][]byte, offset int, paths [][][]byte) []byte {
	n := len(hashes)
	if n == 1 {
		return hashes[0]
	}
	// k is the largest power of two smaller than n (RFC 9162, 2.1.1).
	k := 1 << (bits.Len(uint(n-1)) - 1)
	left := subtree(hashes[:k], offset, paths)
	right := subtree(hashes[k:], offset+k, paths)
	for i := range k {
		paths[offset+i] = append(paths[offset+i], right)
	}
	for i := k; i < n; i++ {
		paths[offset+i] = append(paths[offset+i], left)
	}
	return nodeHash(left, right)
}

var errInclusion = errors.New("inclusion proof does not lead to the signed tree root")

// verifyInclusion checks that leaf is at index in the tree of size with the
// given root (RFC 9162, 2.1.3.2).
func verifyInclusion(leaf []byte, index, size uint64, path [][]byte, root []byte) error {
	r, err := rootFromPath(leafHash(leaf), index, size, path)
	if err != nil || string(r) != string(root) {
		return errInclusion
	}
	return nil
}

// rootFromPath returns the root of the tree of size in which the leaf
// hashed to leaf sits at index, following its inclusion path (RFC 9162,
// 2.1.3.2); an error if the path does not fit the index and size.
func rootFromPath(leaf []byte, index, size uint64, path [][]byte) ([]byte, error) {
	if index >= size {
		return nil, errInclusion
	}
	fn, sn := index, size-1
	r := leaf
	for _, p := range path {
		if len(p) != sha256.Size || sn == 0 {
			return nil, errInclusion
		}
		if fn&1 == 1 || fn == sn {
			r = nodeHash(p, r)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 {
					fn >>= 1
					sn >>= 1
				}
			}
		} else {
			r = nodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return nil, errInclusion
	}
	return r, nil
}
