package transcript_test

import (
	"crypto/hpke"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/transcript"
	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// fixture is a federation of three states with their keys, and no nodes:
// envelopes and receipts are made as the nodes make them.
type fixture struct {
	fed    *certs.Federation
	dir    *directory.Directory
	signer map[string]*envelope.Signer
	sealer map[string]*envelope.Sealer
	opener map[string]*envelope.Opener
	now    time.Time
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	fed, err := certs.Generate(certs.Options{Count: 3, BasePort: 7501})
	if err != nil {
		t.Fatal(err)
	}
	d, err := directory.New(fed.Directory)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{fed: fed, dir: d, signer: map[string]*envelope.Signer{}, sealer: map[string]*envelope.Sealer{},
		opener: map[string]*envelope.Opener{}, now: time.Now().Add(-time.Hour).Truncate(time.Second)}
	for _, s := range fed.States {
		if f.signer[s.Code], err = envelope.NewSigner(s.SigningKey); err != nil {
			t.Fatal(err)
		}
		f.sealer[s.Code] = envelope.NewSealer(fed.ID, s.Code, nil)
		id := directory.EncryptionKeyID(s.EncryptionKey.PublicKey().Bytes())
		f.opener[s.Code] = envelope.NewOpener(fed.ID, s.Code, map[string]hpke.PrivateKey{id: s.EncryptionKey})
	}
	return f
}

// message is one envelope of a thread as both nodes keep it.
type message struct {
	built   *envelope.Built
	header  *pocnetv1.EnvelopeHeader
	receipt *pocnetv1.Receipt
}

func (m *message) record() *storev1.MessageRecord {
	return &storev1.MessageRecord{
		View:     &pocnetv1.Message{Id: m.header.GetId(), ThreadId: m.header.GetThreadId(), Receipt: m.receipt},
		Envelope: m.built.Envelope, EnvelopeDigest: m.built.Digest, PayloadKey: m.built.PayloadKey,
	}
}

// send builds an envelope from -> to answering parent (nil for a new
// communication), delivered with a receipt signed by the recipient.
func (f *fixture) send(t testing.TB, from, to string, typ pocnetv1.EnvelopeType, parent *message, p *pocnetv1.Payload) *message {
	t.Helper()
	f.now = f.now.Add(time.Minute)
	id := uuid.Must(uuid.NewV7()).String()
	h := &pocnetv1.EnvelopeHeader{
		Id: id, Type: typ, FederationId: f.fed.ID, FromState: from, FromRole: "technical", ToState: to, ToRole: "technical",
		Kind: pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, Urgency: pocnetv1.Urgency_URGENCY_URGENT,
		CreatedAt: timestamppb.New(f.now), ExpiresAt: timestamppb.New(f.now.Add(24 * time.Hour)), ThreadId: id,
	}
	if parent != nil {
		h.InReplyTo, h.ThreadId = parent.header.GetId(), parent.header.GetThreadId()
		h.FromRole, h.ToRole = parent.header.GetToRole(), parent.header.GetFromRole()
	}
	key, _ := f.dir.SealingKey(to)
	b, err := envelope.Build(f.signer[from], f.sealer[from], key, h, p)
	if err != nil {
		t.Fatal(err)
	}
	h, err = envelope.DecodeHeader(b.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := envelope.SignReceipts(f.signer[to], from, to, f.now.Add(time.Second), []*pocnetv1.ReceiptEntry{
		{EnvelopeId: id, EnvelopeDigest: b.Digest, Outcome: pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &message{built: b, header: h, receipt: rs[0]}
}

func comm(subject string, code pocnetv1.HandlingCode) *pocnetv1.Payload {
	return &pocnetv1.Payload{Body: &pocnetv1.Payload_Communication{Communication: &pocnetv1.Communication{
		Kind: pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, Urgency: pocnetv1.Urgency_URGENCY_URGENT,
		Subject: subject, Body: "Seen on three operators.", Language: "en", HandlingCode: code,
	}}}
}

func ack(note string) *pocnetv1.Payload {
	return &pocnetv1.Payload{Body: &pocnetv1.Payload_Acknowledgement{Acknowledgement: &pocnetv1.Acknowledgement{Note: note}}}
}

// thread makes a thread between XAA and XBB: XAA's communication, XBB's
// acknowledgement and response, and XAA's acknowledgement of the response.
func (f *fixture) thread(t testing.TB) []*message {
	t.Helper()
	c := f.send(t, "XAA", "XBB", pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, nil,
		comm("Ransomware C2 at 203.0.113.7", pocnetv1.HandlingCode_HANDLING_CODE_NO_JUDICIAL_USE_WITHOUT_CONSENT))
	a := f.send(t, "XBB", "XAA", pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT, c, ack("looking into it"))
	r := f.send(t, "XBB", "XAA", pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE, c,
		comm("Re: Ransomware C2 at 203.0.113.7", pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION))
	a2 := f.send(t, "XAA", "XBB", pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT, r, ack("thanks"))
	return []*message{c, a, r, a2}
}

func records(msgs []*message) []*storev1.MessageRecord {
	out := make([]*storev1.MessageRecord, len(msgs))
	for i, m := range msgs {
		out[i] = m.record()
	}
	return out
}

// honest returns an honest transcript of f.thread, exported by XAA.
func (f *fixture) honest(t testing.TB) (*pocnetv1.Transcript, []*message) {
	t.Helper()
	msgs := f.thread(t)
	tr, err := transcript.Build(records(msgs), "XAA", f.now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return tr, msgs
}

// bundle returns tr as a disclosure bundle with the consents of states.
func (f *fixture) bundle(t testing.TB, tr *pocnetv1.Transcript, purpose string, states ...string) *pocnetv1.DisclosureBundle {
	t.Helper()
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	b := &pocnetv1.DisclosureBundle{Transcript: raw}
	for _, s := range states {
		b.Consents = append(b.Consents, envelope.SignConsent(f.signer[s], transcript.Digest(raw), s, tr.GetExportedAt().AsTime().Add(time.Minute), purpose))
	}
	return b
}
