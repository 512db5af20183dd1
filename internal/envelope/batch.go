package envelope

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Signing envelopes together. An Ed25519 signature costs a sending node
// about 39 µs here and its recipient about 55 µs to check, more than any
// other step of a delivery. When many envelopes to one state are built at
// once (a crisis burst), the node signs the root of the Merkle tree of
// their signing inputs once, and each envelope carries its leaf's inclusion
// proof (pocnetv1.SignatureTree). Each envelope is still verified alone, by
// anyone holding the directory, over its exact bytes; the recipient checks
// each distinct signature once (Verifier). A tree only ever holds envelopes
// to one state, which receives them all: what an envelope reveals of the
// others in its tree is their number, as for receipts.

const (
	// MaxSignedTogether bounds the envelopes one signature covers: what a
	// Batcher signs at once, and what Verify accepts.
	MaxSignedTogether = 256
)

// envelopeLeaf returns the leaf hash of env's signing input, hashed as it
// streams rather than built.
func envelopeLeaf(env *pocnetv1.Envelope) []byte {
	d := sha256.New()
	d.Write([]byte{0})
	d.Write([]byte(envelopeDomain))
	for _, p := range [][]byte{env.GetHeader(), env.GetPayload()} {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(p)))
		d.Write(l[:])
		d.Write(p)
	}
	return d.Sum(nil)
}

// treeInput returns what the signature of a tree covers, after its domain:
// the root and the size.
func treeInput(root []byte, size uint32) [][]byte {
	return [][]byte{root, binary.BigEndian.AppendUint32(nil, size)}
}

// SignTogether signs envs, all built by this node for the same recipient
// state, with one signature over the tree of their signing inputs, and
// sets each one's signature and tree. It signs at most MaxSignedTogether
// envelopes; the caller splits larger sets.
func SignTogether(s *Signer, envs ...*pocnetv1.Envelope) error {
	if len(envs) == 0 || len(envs) > MaxSignedTogether {
		return fmt.Errorf("envelope: %d envelopes to sign together, want 1 to %d", len(envs), MaxSignedTogether)
	}
	signTree(s, envs)
	return nil
}

// signTree is SignTogether for 1 to MaxSignedTogether envelopes.
func signTree(s *Signer, envs []*pocnetv1.Envelope) {
	hashes := make([][]byte, len(envs))
	for i, env := range envs {
		hashes[i] = envelopeLeaf(env)
	}
	root, paths := treeRoot(hashes)
	size := uint32(len(envs))
	sig := s.sign(envelopeTreeDomain, treeInput(root, size)...)
	for i, env := range envs {
		env.Signature = sig
		env.Tree = &pocnetv1.SignatureTree{Size: size, Index: uint32(i), Path: paths[i]}
	}
}

// Batcher signs the envelopes of concurrent callers together: a caller that
// finds no signing under way signs at once, alone or with whoever queued
// meanwhile; callers that arrive while a signature is being made queue, and
// the next of them signs for all of them, one tree per recipient state. A
// lone caller never waits for company.
type Batcher struct {
	s *Signer

	mu    sync.Mutex
	queue []*toSign
	busy  bool // a caller is signing, or has been handed the turn

	signatures atomic.Uint64
}

type toSign struct {
	env *pocnetv1.Envelope
	to  string
	// turn is sent true once env is signed, or false when its caller is to
	// sign the queue.
	turn chan bool
}

// NewBatcher returns a Batcher signing with s.
func NewBatcher(s *Signer) *Batcher {
	return &Batcher{s: s}
}

// Signatures returns how many signatures the Batcher has made.
func (b *Batcher) Signatures() uint64 { return b.signatures.Load() }

// Sign signs env, built by this node and sealed to state to, possibly
// together with envelopes other callers are signing.
func (b *Batcher) Sign(env *pocnetv1.Envelope, to string) {
	me := &toSign{env: env, to: to, turn: make(chan bool, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, me)
	lead := !b.busy
	b.busy = true
	b.mu.Unlock()
	if !lead && <-me.turn {
		return
	}
	// This caller signs what is queued, its own envelope included. Under
	// load other callers are runnable and about to queue: letting them run
	// first makes the batch larger; alone, this costs nothing.
	runtime.Gosched()
	b.mu.Lock()
	n := min(len(b.queue), MaxSignedTogether)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	b.mu.Unlock()
	b.signBatch(batch)
	for _, t := range batch {
		if t != me {
			t.turn <- true
		}
	}
	b.mu.Lock()
	if len(b.queue) > 0 {
		// The first caller who queued meanwhile signs next.
		next := b.queue[0]
		b.mu.Unlock()
		next.turn <- false
		return
	}
	b.busy = false
	b.mu.Unlock()
}

// signBatch signs batch, one tree per recipient state, in queue order.
func (b *Batcher) signBatch(batch []*toSign) {
	done := make([]bool, len(batch))
	envs := make([]*pocnetv1.Envelope, 0, len(batch))
	for i, t := range batch {
		if done[i] {
			continue
		}
		envs = envs[:0]
		for j := i; j < len(batch); j++ {
			if !done[j] && batch[j].to == t.to {
				envs = append(envs, batch[j].env)
				done[j] = true
			}
		}
		// At most MaxSignedTogether, from a batch no longer than that.
		signTree(b.s, envs)
		b.signatures.Add(1)
	}
}
