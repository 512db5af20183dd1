package envelope

import (
	"crypto/sha256"
	"fmt"
	"testing"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestMerkleInclusion checks every leaf of trees of every size up to 40
// against its root, and that a proof fails for another leaf, another index,
// and a truncated or extended path. (The tree size is bound by the
// signature over the receipt body, not by the proof.)
func TestMerkleInclusion(t *testing.T) {
	for n := 1; n <= 40; n++ {
		leaves := make([][]byte, n)
		hashes := make([][]byte, n)
		for i := range n {
			leaves[i] = fmt.Appendf(nil, "leaf %d of %d", i, n)
			hashes[i] = leafHash(leaves[i])
		}
		root, paths := treeRoot(hashes)
		for i := range n {
			if err := verifyInclusion(leaves[i], uint64(i), uint64(n), paths[i], root); err != nil {
				t.Fatalf("n=%d leaf %d: %v", n, i, err)
			}
			if err := verifyInclusion([]byte("other"), uint64(i), uint64(n), paths[i], root); err == nil {
				t.Fatalf("n=%d leaf %d: another leaf verified", n, i)
			}
			if n > 1 {
				if err := verifyInclusion(leaves[i], uint64((i+1)%n), uint64(n), paths[i], root); err == nil {
					t.Fatalf("n=%d leaf %d: verified at another index", n, i)
				}
				if err := verifyInclusion(leaves[i], uint64(i), uint64(n), paths[i][:len(paths[i])-1], root); err == nil {
					t.Fatalf("n=%d leaf %d: truncated path verified", n, i)
				}
			}
			if err := verifyInclusion(leaves[i], uint64(i), uint64(n), append(paths[i], root), root); err == nil {
				t.Fatalf("n=%d leaf %d: extended path verified", n, i)
			}
		}
	}
}

// TestMerkleKnownRoot pins the root of a small tree to the RFC 9162
// construction, computed by hand from leaf and node hashes.
func TestMerkleKnownRoot(t *testing.T) {
	l := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	h := [][]byte{leafHash(l[0]), leafHash(l[1]), leafHash(l[2])}
	root, _ := treeRoot(h)
	// Computed here from the RFC 9162 definition, not with the helpers
	// under test: leaves are prefixed 0x00, interior nodes 0x01.
	sha := func(parts ...[]byte) []byte {
		d := sha256.New()
		for _, p := range parts {
			d.Write(p)
		}
		return d.Sum(nil)
	}
	la, lb, lc := sha([]byte{0}, []byte("a")), sha([]byte{0}, []byte("b")), sha([]byte{0}, []byte("c"))
	want := sha([]byte{1}, sha([]byte{1}, la, lb), lc)
	// RFC 6962/9162's hash of the empty leaf, a published constant.
	if got := fmt.Sprintf("%x", leafHash(nil)); got != "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d" {
		t.Fatalf("leaf hash of the empty leaf = %s", got)
	}
	if string(root) != string(want) {
		t.Fatalf("root %x, want %x", root, want)
	}
}

// TestDigestIsHashOfSigningInput pins Digest to the SHA-256 of exactly the
// bytes that are signed.
func TestDigestIsHashOfSigningInput(t *testing.T) {
	env := &pocnetv1.Envelope{Header: []byte("header bytes"), Payload: []byte("payload bytes")}
	want := sha256.Sum256(signingInput(envelopeDomain, env.GetHeader(), env.GetPayload()))
	if got := Digest(env); string(got) != string(want[:]) {
		t.Fatalf("Digest = %x, want %x", got, want)
	}
}
