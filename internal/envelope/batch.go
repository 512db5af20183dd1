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
// others in its tree is their number, as for receipts. An envelope signed
// alone carries no tree and verifies on nodes that predate trees; one
// signed in a tree needs a recipient of this version or later.

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
	hashes := make([][]byte, len(envs))
	for i, env := range envs {
		hashes[i] = envelopeLeaf(env)
	}
	signTree(s, envs, hashes)
	return nil
}

// signTree is SignTogether for 1 to MaxSignedTogether envelopes whose leaf
// hashes are known.
func signTree(s *Signer, envs []*pocnetv1.Envelope, hashes [][]byte) {
	root, paths := treeRoot(hashes)
	size := uint32(len(envs))
	sig := s.sign(envelopeTreeDomain, treeInput(root, size)...)
	for i, env := range envs {
		env.Signature = sig
		env.Tree = &pocnetv1.SignatureTree{Size: size, Index: uint32(i), Path: paths[i]}
	}
}

// signAlone signs env by itself, without a tree, as every node has always
// been able to verify.
func signAlone(s *Signer, env *pocnetv1.Envelope) {
	env.Signature = s.sign(envelopeDomain, env.GetHeader(), env.GetPayload())
	env.Tree = nil
}

// Batcher signs the envelopes of concurrent callers together, one lane per
// recipient state: a caller that finds no signing under way in its lane
// signs at once, alone or with whoever queued meanwhile; callers that arrive
// while a signature is being made queue, and the next of them signs for all
// of them. A lone caller never waits for company, and its envelope is signed
// alone, without a tree. Lanes of different states sign in parallel, and
// each caller that has to wait hashes its own envelope before it queues.
type Batcher struct {
	s *Signer

	mu    sync.Mutex
	lanes map[string]*lane // by recipient state; at most one per member

	signatures atomic.Uint64
}

// lane is the queue of one recipient state.
type lane struct {
	mu    sync.Mutex
	queue []*toSign
	busy  bool // a caller is signing, or has been handed the turn
}

type toSign struct {
	env  *pocnetv1.Envelope
	leaf []byte
	// turn is sent true once env is signed, or false when its caller is to
	// sign the queue.
	turn chan bool
}

// NewBatcher returns a Batcher signing with s.
func NewBatcher(s *Signer) *Batcher {
	return &Batcher{s: s, lanes: map[string]*lane{}}
}

// Signatures returns how many signatures the Batcher has made.
func (b *Batcher) Signatures() uint64 { return b.signatures.Load() }

func (b *Batcher) lane(to string) *lane {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.lanes[to]
	if l == nil {
		l = &lane{}
		b.lanes[to] = l
	}
	return l
}

// Sign signs env, built by this node and sealed to state to, possibly
// together with envelopes to the same state that other callers are signing.
func (b *Batcher) Sign(env *pocnetv1.Envelope, to string) {
	me := &toSign{env: env, turn: make(chan bool, 1)}
	l := b.lane(to)
	l.mu.Lock()
	if l.busy {
		// It will wait, and most likely be signed in a tree: it hashes its
		// leaf now rather than leave it to the caller who signs. A lone
		// envelope, signed alone, needs no leaf.
		l.mu.Unlock()
		me.leaf = envelopeLeaf(env)
		l.mu.Lock()
	}
	l.queue = append(l.queue, me)
	lead := !l.busy
	l.busy = true
	l.mu.Unlock()
	if !lead && <-me.turn {
		return
	}
	// This caller signs what is queued, its own envelope included. Under
	// load other callers are runnable and about to queue: letting them run
	// first makes the batch larger; alone, this costs nothing.
	runtime.Gosched()
	l.mu.Lock()
	n := min(len(l.queue), MaxSignedTogether)
	batch := append([]*toSign(nil), l.queue[:n]...)
	// Signed envelopes must not stay reachable from the queue's array.
	clear(l.queue[:n])
	if l.queue = l.queue[n:]; len(l.queue) == 0 {
		l.queue = nil
	}
	l.mu.Unlock()
	b.signBatch(batch)
	for _, t := range batch {
		if t != me {
			t.turn <- true
		}
	}
	l.mu.Lock()
	if len(l.queue) > 0 {
		// The first caller who queued meanwhile signs next.
		next := l.queue[0]
		l.mu.Unlock()
		next.turn <- false
		return
	}
	l.busy = false
	l.mu.Unlock()
}

// signBatch signs the envelopes of one lane: alone, or as one tree.
func (b *Batcher) signBatch(batch []*toSign) {
	b.signatures.Add(1)
	if len(batch) == 1 {
		signAlone(b.s, batch[0].env)
		return
	}
	envs := make([]*pocnetv1.Envelope, len(batch))
	hashes := make([][]byte, len(batch))
	for i, t := range batch {
		if t.leaf == nil {
			t.leaf = envelopeLeaf(t.env) // the signing caller's own
		}
		envs[i], hashes[i] = t.env, t.leaf
	}
	signTree(b.s, envs, hashes)
}
