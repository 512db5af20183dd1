package envelope_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/envelope"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// The per-message cost of sealing, part by part, with a 1 KiB body as in
// the relay benchmark. `make bench` runs these with the relay benchmarks.

func benchPayload() *pocnetv1.Payload {
	p := payload()
	p.GetCommunication().Body = strings.Repeat("x", 1024)
	return p
}

// BenchmarkBuild: seal (payload key export + AES-256-GCM) and sign, with the
// HPKE context already set up, as for every envelope but the first of a
// context.
func BenchmarkBuild(b *testing.B) {
	f := newFixture(b)
	key, _ := f.dir.SealingKey("XBB")
	p := benchPayload()
	for b.Loop() {
		if _, err := envelope.Build(f.signer["XAA"], f.sealer["XAA"], key, header(f.fed.ID, "XAA", "XBB"), p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen: verify and decrypt, with the context already decapsulated.
func BenchmarkOpen(b *testing.B) {
	f := newFixture(b)
	key, _ := f.dir.SealingKey("XBB")
	built, err := envelope.Build(f.signer["XAA"], f.sealer["XAA"], key, header(f.fed.ID, "XAA", "XBB"), benchPayload())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := envelope.Open(built.Envelope, f.dir, f.opener["XBB"]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkContext: what one HPKE context costs both sides (encapsulation
// at the sender, decapsulation at the recipient), paid once per context.
func BenchmarkContext(b *testing.B) {
	f := newFixture(b)
	key, _ := f.dir.SealingKey("XBB")
	now := time.Now()
	for b.Loop() {
		// A fresh sealer and opener force a new context on each side.
		sl := envelope.NewSealer(f.fed.ID, "XAA", func() time.Time { return now })
		built, err := envelope.Build(f.signer["XAA"], sl, key, header(f.fed.ID, "XAA", "XBB"), benchPayload())
		if err != nil {
			b.Fatal(err)
		}
		fresh := newOpener(f, "XBB")
		if _, err := envelope.Open(built.Envelope, f.dir, fresh); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReceipts128: sign and verify the receipts of a 128-envelope
// delivery, per envelope (b.N counts envelopes).
func BenchmarkReceipts128(b *testing.B) {
	f := newFixture(b)
	entries := make([]*pocnetv1.ReceiptEntry, 128)
	for i := range entries {
		entries[i] = &pocnetv1.ReceiptEntry{EnvelopeId: header(f.fed.ID, "XAA", "XBB").GetId(), EnvelopeDigest: make([]byte, 32), Outcome: pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED}
	}
	at := timestamppb.Now().AsTime()
	for i := 0; b.Loop(); i++ {
		if i%128 != 0 {
			continue
		}
		rs, err := envelope.SignReceipts(f.signer["XBB"], "XAA", "XBB", at, entries)
		if err != nil {
			b.Fatal(err)
		}
		v := envelope.NewReceiptVerifier(f.dir)
		for j, r := range rs {
			if _, err := v.Verify(r, "XAA", "XBB", entries[j].GetEnvelopeId(), entries[j].GetEnvelopeDigest()); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkTogether16: sign 16 envelopes together and open them through one
// Verifier, per envelope (b.N counts envelopes), sealing excluded: what a
// burst costs each side per envelope, against BenchmarkBuild and
// BenchmarkOpen for an envelope alone.
func BenchmarkTogether16(b *testing.B) {
	f := newFixture(b)
	key, _ := f.dir.SealingKey("XBB")
	envs := make([]*pocnetv1.Envelope, 16)
	for i := range envs {
		built, err := envelope.Seal(f.sealer["XAA"], key, header(f.fed.ID, "XAA", "XBB"), benchPayload())
		if err != nil {
			b.Fatal(err)
		}
		envs[i] = built.Envelope
	}
	for i := 0; b.Loop(); i++ {
		if i%16 != 0 {
			continue
		}
		if err := envelope.SignTogether(f.signer["XAA"], envs...); err != nil {
			b.Fatal(err)
		}
		v := envelope.NewVerifier(f.dir)
		for _, env := range envs {
			if _, err := v.Open(env, f.opener["XBB"]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
