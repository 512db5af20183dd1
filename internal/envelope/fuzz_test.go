package envelope_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/envelope"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// FuzzOpen feeds arbitrary bytes, as a peer could send them, to the
// envelope decoder, verifier and decrypter: it must never panic, and must
// never accept anything but the honest envelope.
func FuzzOpen(f *testing.F) {
	fx := newFixture(f)
	b := fx.build(f, "XAA", "XBB")
	env := b.Envelope
	honest, _ := proto.Marshal(env)
	f.Add(honest)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(honest[:len(honest)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		var e pocnetv1.Envelope
		if proto.Unmarshal(data, &e) != nil {
			return
		}
		o, err := envelope.Open(&e, fx.dir, fx.opener["XBB"])
		if err != nil {
			return
		}
		if string(e.GetHeader()) != string(env.GetHeader()) || string(e.GetPayload()) != string(env.GetPayload()) {
			t.Fatalf("accepted an envelope that was never signed: %v", o.Header)
		}
		if _, err := envelope.VerifyReceipt(&pocnetv1.Receipt{Body: e.GetHeader(), Signature: e.GetSignature(), Entry: e.GetPayload()}, fx.dir, "XAA", "XBB", o.Header.GetId(), o.Digest); err == nil {
			t.Fatal("an envelope signature verified as a receipt")
		}
	})
}

// FuzzVerifyReceipt feeds arbitrary receipts to the verifier: it must never
// panic and never accept a receipt the recipient did not sign for this
// envelope.
func FuzzVerifyReceipt(f *testing.F) {
	fx := newFixture(f)
	b := fx.build(f, "XAA", "XBB")
	h, _ := envelope.DecodeHeader(b.Envelope)
	entries := []*pocnetv1.ReceiptEntry{
		{EnvelopeId: h.GetId(), EnvelopeDigest: b.Digest, Outcome: pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED},
		{EnvelopeId: "other", EnvelopeDigest: make([]byte, 32), Outcome: pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED},
		{EnvelopeId: "third", EnvelopeDigest: make([]byte, 32), Outcome: pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_REJECTED},
	}
	rs, err := envelope.SignReceipts(fx.signer["XBB"], "XAA", "XBB", h.GetCreatedAt().AsTime(), entries)
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range rs {
		raw, _ := proto.Marshal(r)
		f.Add(raw)
	}
	honest, _ := proto.Marshal(rs[0])
	f.Add(honest[:len(honest)-3])
	f.Fuzz(func(t *testing.T, data []byte) {
		var r pocnetv1.Receipt
		if proto.Unmarshal(data, &r) != nil {
			return
		}
		got, err := envelope.VerifyReceipt(&r, fx.dir, "XAA", "XBB", h.GetId(), b.Digest)
		if err != nil {
			return
		}
		if string(r.GetEntry()) != string(rs[0].GetEntry()) || got.Entry.GetEnvelopeId() != h.GetId() {
			t.Fatalf("accepted a receipt entry that was never signed: %v", got.Entry)
		}
	})
}
