package envelope_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// sealed makes n envelopes from -> to without signing them.
func (f *fixture) sealed(t testing.TB, from, to string, n int) []*pocnetv1.Envelope {
	t.Helper()
	key, ok := f.dir.SealingKey(to)
	if !ok {
		t.Fatalf("no sealing key for %s", to)
	}
	envs := make([]*pocnetv1.Envelope, n)
	for i := range envs {
		b, err := envelope.Seal(f.sealer[from], key, header(f.fed.ID, from, to), payload())
		if err != nil {
			t.Fatal(err)
		}
		envs[i] = b.Envelope
	}
	return envs
}

// Envelopes signed together each verify alone, whatever the size of their
// tree, and share one signature.
func TestSignTogether(t *testing.T) {
	f := newFixture(t)
	for _, n := range []int{1, 2, 3, 5, 8, 13, envelope.MaxSignedTogether} {
		envs := f.sealed(t, "XAA", "XBB", n)
		if err := envelope.SignTogether(f.signer["XAA"], envs...); err != nil {
			t.Fatal(err)
		}
		for i, env := range envs {
			// Each on its own, as a transcript's reader would check it: a
			// fresh copy, through the wire form.
			b, err := proto.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			var alone pocnetv1.Envelope
			if err := proto.Unmarshal(b, &alone); err != nil {
				t.Fatal(err)
			}
			if _, err := envelope.Open(&alone, f.dir, f.opener["XBB"]); err != nil {
				t.Fatalf("envelope %d of %d refused: %v", i, n, err)
			}
			if got := alone.GetTree(); got.GetSize() != uint32(n) || got.GetIndex() != uint32(i) {
				t.Fatalf("envelope %d of %d: tree %v", i, n, got)
			}
			if !proto.Equal(env.GetSignature(), envs[0].GetSignature()) {
				t.Fatalf("envelope %d of %d has its own signature", i, n)
			}
		}
	}
	if err := envelope.SignTogether(f.signer["XAA"], f.sealed(t, "XAA", "XBB", envelope.MaxSignedTogether+1)...); err == nil {
		t.Fatal("signed more envelopes together than the limit")
	}
	if err := envelope.SignTogether(f.signer["XAA"]); err == nil {
		t.Fatal("signed no envelope")
	}
}

// An envelope whose tree, signature or bytes were altered is refused as a
// bad signature (or malformed), alone and through a Verifier that already
// accepted its siblings.
func TestSignedTogetherRefusesTampering(t *testing.T) {
	f := newFixture(t)
	envs := f.sealed(t, "XAA", "XBB", 5)
	if err := envelope.SignTogether(f.signer["XAA"], envs...); err != nil {
		t.Fatal(err)
	}
	other := f.sealed(t, "XAA", "XBB", 2)
	if err := envelope.SignTogether(f.signer["XAA"], other...); err != nil {
		t.Fatal(err)
	}
	byXCC := f.sealed(t, "XCC", "XBB", 1)
	if err := envelope.SignTogether(f.signer["XCC"], byXCC...); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mut  func(e *pocnetv1.Envelope)
		want error
	}{
		{"other index", func(e *pocnetv1.Envelope) { e.Tree.Index = 3 }, envelope.ErrBadSignature},
		{"index past the size", func(e *pocnetv1.Envelope) { e.Tree.Index = 5 }, envelope.ErrBadSignature},
		{"other size", func(e *pocnetv1.Envelope) { e.Tree.Size = 4 }, envelope.ErrBadSignature},
		{"size 0", func(e *pocnetv1.Envelope) { e.Tree.Size = 0 }, envelope.ErrMalformed},
		{"size over the limit", func(e *pocnetv1.Envelope) { e.Tree.Size = envelope.MaxSignedTogether + 1 }, envelope.ErrMalformed},
		{"path of a sibling", func(e *pocnetv1.Envelope) { e.Tree.Path = envs[3].GetTree().GetPath() }, envelope.ErrBadSignature},
		{"path cut short", func(e *pocnetv1.Envelope) { e.Tree.Path = e.Tree.Path[:len(e.Tree.Path)-1] }, envelope.ErrBadSignature},
		{"path too long", func(e *pocnetv1.Envelope) { e.Tree.Path = append(e.Tree.Path, e.Tree.Path[0]) }, envelope.ErrBadSignature},
		{"path hash altered", func(e *pocnetv1.Envelope) { e.Tree.Path[0] = flip(e.Tree.Path[0], 5) }, envelope.ErrBadSignature},
		{"path hash of 31 bytes", func(e *pocnetv1.Envelope) { e.Tree.Path[0] = e.Tree.Path[0][:31] }, envelope.ErrBadSignature},
		{"header altered", func(e *pocnetv1.Envelope) { e.Header = flip(e.Header, 40) }, nil},
		{"payload altered", func(e *pocnetv1.Envelope) { e.Payload = flip(e.Payload, 7) }, envelope.ErrBadSignature},
		{"signature of another tree", func(e *pocnetv1.Envelope) { e.Signature = other[0].GetSignature() }, envelope.ErrBadSignature},
		{"tree dropped: the signature is not over the envelope alone", func(e *pocnetv1.Envelope) { e.Tree = nil }, envelope.ErrBadSignature},
		{"signature and key of another state", func(e *pocnetv1.Envelope) {
			e.Signature, e.Tree = byXCC[0].GetSignature(), byXCC[0].GetTree()
		}, envelope.ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := envelope.NewVerifier(f.dir)
			for i, env := range envs {
				if _, err := v.Verify(env); err != nil {
					t.Fatalf("untouched envelope %d refused: %v", i, err)
				}
			}
			e := proto.Clone(envs[1]).(*pocnetv1.Envelope)
			tc.mut(e)
			for name, check := range map[string]func() error{
				"alone":          func() error { _, err := envelope.Verify(e, f.dir); return err },
				"after siblings": func() error { _, err := v.Verify(e); return err },
			} {
				err := check()
				if err == nil {
					t.Fatalf("%s: accepted", name)
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("%s: %v, want %v", name, err, tc.want)
				}
			}
		})
	}
}

// An envelope signed alone, without a tree, as nodes signed every envelope
// before trees and still sign a lone one, verifies; its signature does not
// pass for a tree's, nor a tree's for its.
func TestSignedAloneStillVerifies(t *testing.T) {
	f := newFixture(t)
	env := f.sealed(t, "XAA", "XBB", 1)[0]
	alone := envelope.SignRaw(f.signer["XAA"], env.GetHeader(), env.GetPayload())
	alone.EncapsulatedKey = env.GetEncapsulatedKey()
	if _, err := envelope.Open(alone, f.dir, f.opener["XBB"]); err != nil {
		t.Fatalf("envelope signed alone refused: %v", err)
	}
	withTree := proto.Clone(alone).(*pocnetv1.Envelope)
	withTree.Tree = &pocnetv1.SignatureTree{Size: 1}
	if _, err := envelope.Verify(withTree, f.dir); !errors.Is(err, envelope.ErrBadSignature) {
		t.Fatalf("a signature over the envelope passed as a tree's: %v", err)
	}
	// A Batcher with a single caller signs alone too.
	lone := f.sealed(t, "XAA", "XBB", 1)[0]
	envelope.NewBatcher(f.signer["XAA"]).Sign(lone, "XBB")
	if lone.GetTree() != nil {
		t.Fatalf("a lone envelope was signed in a tree of %d", lone.GetTree().GetSize())
	}
	if _, err := envelope.Verify(lone, f.dir); err != nil {
		t.Fatalf("lone envelope from a Batcher refused: %v", err)
	}
	if err := envelope.SignTogether(f.signer["XAA"], env); err != nil {
		t.Fatal(err)
	}
	env.Tree = nil
	if _, err := envelope.Verify(env, f.dir); !errors.Is(err, envelope.ErrBadSignature) {
		t.Fatalf("a tree's signature passed as one over the envelope: %v", err)
	}
}

// Concurrent callers of a Batcher get every envelope signed, to its own
// state's tree, with fewer signatures than envelopes when they overlap.
func TestBatcher(t *testing.T) {
	f := newFixture(t)
	b := envelope.NewBatcher(f.signer["XAA"])
	const senders, each = 16, 40
	type item struct {
		env *pocnetv1.Envelope
		to  string
	}
	items := make([][]item, senders)
	for i := range items {
		to := "XBB"
		if i%4 == 0 {
			to = "XCC"
		}
		for _, env := range f.sealed(t, "XAA", to, each) {
			items[i] = append(items[i], item{env, to})
		}
	}
	var wg sync.WaitGroup
	for i := range items {
		wg.Go(func() {
			for _, it := range items[i] {
				b.Sign(it.env, it.to)
			}
		})
	}
	wg.Wait()
	v := map[string]*envelope.Verifier{"XBB": envelope.NewVerifier(f.dir), "XCC": envelope.NewVerifier(f.dir)}
	roots := map[string]string{} // signature value -> recipient
	for i := range items {
		for _, it := range items[i] {
			if _, err := v[it.to].Open(it.env, f.opener[it.to]); err != nil {
				t.Fatalf("sender %d: envelope to %s refused: %v", i, it.to, err)
			}
			sig := string(it.env.GetSignature().GetValue())
			if to, ok := roots[sig]; ok && to != it.to {
				t.Fatalf("one tree holds envelopes to %s and %s", to, it.to)
			}
			roots[sig] = it.to
		}
	}
	// Sixteen callers signing at once overlap all the time: about 90 to
	// 120 signatures were seen here for the 640 envelopes, on 1, 2 or 4
	// cores.
	if got := b.Signatures(); got != uint64(len(roots)) || got > senders*each/2 {
		t.Fatalf("%d signatures counted, %d distinct, for %d envelopes: they were hardly signed together", got, len(roots), senders*each)
	}
	t.Logf("%d envelopes, %d signatures", senders*each, len(roots))
}

// retiredKeys is a directory in which every signing key was retired at at.
type retiredKeys struct {
	*directory.Directory
	at time.Time
}

func (r retiredKeys) SigningKeyValid(state, id string, madeAt time.Time) (ed25519.PublicKey, error) {
	if !madeAt.Before(r.at) {
		return nil, fmt.Errorf("signing key %s of %s was retired at %s", id, state, r.at)
	}
	return r.Directory.SigningKeyValid(state, id, madeAt)
}

// Whether the signing key could sign an envelope when it was made is
// checked for every envelope of a tree, even once the tree's signature is
// known to be good.
func TestSignedTogetherKeyValidityPerEnvelope(t *testing.T) {
	f := newFixture(t)
	key, _ := f.dir.SealingKey("XBB")
	now := time.Now()
	var envs []*pocnetv1.Envelope
	for _, made := range []time.Time{now.Add(-time.Hour), now} {
		h := header(f.fed.ID, "XAA", "XBB")
		h.CreatedAt = timestamppb.New(made)
		b, err := envelope.Seal(f.sealer["XAA"], key, h, payload())
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, b.Envelope)
	}
	if err := envelope.SignTogether(f.signer["XAA"], envs...); err != nil {
		t.Fatal(err)
	}
	v := envelope.NewVerifier(retiredKeys{f.dir, now.Add(-30 * time.Minute)})
	if _, err := v.Verify(envs[0]); err != nil {
		t.Fatalf("envelope made before the key was retired refused: %v", err)
	}
	if _, err := v.Verify(envs[1]); !errors.Is(err, envelope.ErrBadSignature) {
		t.Fatalf("envelope made after the key was retired, in a tree already verified: %v", err)
	}
}
