package envelope

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// FuzzOpen feeds arbitrary bytes, as a peer could send them, to the
// envelope decoder and verifier: it must never panic, and must never accept
// anything but the honest envelope.
func FuzzOpen(f *testing.F) {
	fx := newFixture(f)
	env, err := Build(fx.signer["XAA"], header("XAA", "XBB"), payload())
	if err != nil {
		f.Fatal(err)
	}
	honest, _ := proto.Marshal(env)
	f.Add(honest)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(honest[:len(honest)/2])
	bundle := fx.dir.Bundle()
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		var e pocnetv1.Envelope
		if proto.Unmarshal(data, &e) != nil {
			return
		}
		o, err := Open(&e, bundle, now)
		if err != nil {
			return
		}
		if string(e.GetHeader()) != string(env.GetHeader()) || string(e.GetPayload()) != string(env.GetPayload()) {
			t.Fatalf("accepted an envelope that was never signed: %v", o.Header)
		}
		if _, err := VerifyReceipt(&pocnetv1.Receipt{Body: e.GetHeader(), Signature: e.GetSignature()}, bundle, now, "XAA", "XBB", o.Header.GetId(), o.Digest); err == nil {
			t.Fatal("an envelope signature verified as a receipt")
		}
	})
}
