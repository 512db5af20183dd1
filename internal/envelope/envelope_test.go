package envelope

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"

	"github.com/pocnet/pocnet/internal/directory"
)

type fixture struct {
	fed    *certs.Federation
	dir    *directory.Directory
	signer map[string]*Signer
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	fed, err := certs.Generate(certs.Options{Count: 3, BasePort: 7401})
	if err != nil {
		t.Fatal(err)
	}
	d, err := directory.New(fed.Directory)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{fed: fed, dir: d, signer: map[string]*Signer{}}
	for _, s := range fed.States {
		if f.signer[s.Code], err = NewSigner(&s.Node.TLS); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func header(from, to string) *pocnetv1.EnvelopeHeader {
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now()
	return &pocnetv1.EnvelopeHeader{
		Id: id, Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, FederationId: "pocnet.example",
		FromState: from, FromRole: "technical", ToState: to, ToRole: "technical",
		Kind: pocnetv1.Kind_KIND_NOTIFICATION, Urgency: pocnetv1.Urgency_URGENCY_ROUTINE,
		CreatedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(now.Add(time.Hour)), ThreadId: id,
		PayloadEncoding: pocnetv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO,
	}
}

func payload() *pocnetv1.Payload {
	return &pocnetv1.Payload{Body: &pocnetv1.Payload_Communication{Communication: &pocnetv1.Communication{
		Kind: pocnetv1.Kind_KIND_NOTIFICATION, Urgency: pocnetv1.Urgency_URGENCY_ROUTINE, Subject: "s", Language: "en"}}}
}

func TestOpenVerifies(t *testing.T) {
	f := newFixture(t)
	env, err := Build(f.signer["XAA"], header("XAA", "XBB"), payload())
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open(env, f.dir.Bundle(), time.Now())
	if err != nil {
		t.Fatalf("honest envelope refused: %v", err)
	}
	if o.Signer.State != "XAA" || o.Payload.GetCommunication().GetSubject() != "s" {
		t.Fatalf("opened %+v", o)
	}

	flip := func(b []byte, i int) []byte { c := append([]byte(nil), b...); c[i%len(c)] ^= 1; return c }
	cases := []struct {
		name string
		mut  func(e *pocnetv1.Envelope)
		want error
	}{
		{"header bit", func(e *pocnetv1.Envelope) { e.Header = flip(e.Header, len(e.Header)-1) }, nil},
		{"payload bit", func(e *pocnetv1.Envelope) { e.Payload = flip(e.Payload, 3) }, ErrBadSignature},
		{"signature bit", func(e *pocnetv1.Envelope) { e.Signature.Value = flip(e.Signature.Value, 10) }, ErrBadSignature},
		{"no signature", func(e *pocnetv1.Envelope) { e.Signature = nil }, ErrBadSignature},
		{"key id", func(e *pocnetv1.Envelope) { e.Signature.KeyId = "00" }, ErrBadSignature},
		{"empty header", func(e *pocnetv1.Envelope) { e.Header = nil }, ErrMalformed},
		{"signed by another state", func(e *pocnetv1.Envelope) {
			other, _ := Build(f.signer["XCC"], header("XAA", "XBB"), payload())
			e.Header, e.Payload, e.Signature = other.Header, other.Payload, other.Signature
		}, ErrBadSignature},
		{"chain from another state", func(e *pocnetv1.Envelope) {
			e.Signature.CertificateChain = [][]byte{f.fed.State("XCC").Node.TLS.Certificate[0]}
		}, ErrBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Build(f.signer["XAA"], header("XAA", "XBB"), payload())
			if err != nil {
				t.Fatal(err)
			}
			tc.mut(e)
			_, err = Open(e, f.dir.Bundle(), time.Now())
			if err == nil {
				t.Fatal("tampered envelope accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// Verifying after the signer's certificate expired fails.
	if _, err := Open(env, f.dir.Bundle(), time.Now().Add(100*24*time.Hour)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("expired signer: %v", err)
	}
}

func TestReceipt(t *testing.T) {
	f := newFixture(t)
	env, err := Build(f.signer["XAA"], header("XAA", "XBB"), payload())
	if err != nil {
		t.Fatal(err)
	}
	h, _ := DecodeHeader(env)
	body := &pocnetv1.ReceiptBody{EnvelopeId: h.GetId(), EnvelopeDigest: Digest(env), FromState: "XAA", RecipientState: "XBB",
		Outcome: pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED, ReceivedAt: timestamppb.Now()}
	r, err := SignReceipt(f.signer["XBB"], body)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := VerifyReceipt(r, f.dir.Bundle(), now, "XAA", "XBB", h.GetId(), Digest(env)); err != nil {
		t.Fatalf("honest receipt refused: %v", err)
	}
	bad := []struct {
		name         string
		r            *pocnetv1.Receipt
		from, to, id string
		digest       []byte
	}{
		{"wrong digest", r, "XAA", "XBB", h.GetId(), make([]byte, 32)},
		{"wrong id", r, "XAA", "XBB", uuid.NewString(), Digest(env)},
		{"claims another recipient", r, "XAA", "XCC", h.GetId(), Digest(env)},
		{"signed by the sender", must(SignReceipt(f.signer["XAA"], body)), "XAA", "XBB", h.GetId(), Digest(env)},
		{"envelope signature reused as receipt", &pocnetv1.Receipt{Body: env.Header, Signature: env.Signature}, "XAA", "XBB", h.GetId(), Digest(env)},
	}
	for _, tc := range bad {
		if _, err := VerifyReceipt(tc.r, f.dir.Bundle(), now, tc.from, tc.to, tc.id, tc.digest); err == nil {
			t.Errorf("%s: receipt accepted", tc.name)
		}
	}
}

func must(r *pocnetv1.Receipt, err error) *pocnetv1.Receipt {
	if err != nil {
		panic(err)
	}
	return r
}
