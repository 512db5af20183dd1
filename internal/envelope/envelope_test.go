package envelope_test

import (
	"bytes"
	"crypto/hpke"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

type fixture struct {
	fed    *certs.Federation
	dir    *directory.Directory
	signer map[string]*envelope.Signer
	sealer map[string]*envelope.Sealer
	opener map[string]*envelope.Opener
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
	f := &fixture{fed: fed, dir: d, signer: map[string]*envelope.Signer{}, sealer: map[string]*envelope.Sealer{}, opener: map[string]*envelope.Opener{}}
	for _, s := range fed.States {
		if f.signer[s.Code], err = envelope.NewSigner(s.SigningKey); err != nil {
			t.Fatal(err)
		}
		f.sealer[s.Code] = envelope.NewSealer(fed.ID, s.Code, nil)
		f.opener[s.Code] = newOpener(f, s.Code)
	}
	return f
}

func newOpener(f *fixture, state string) *envelope.Opener {
	k := f.fed.State(state).EncryptionKey
	return envelope.NewOpener(f.fed.ID, state, map[string]hpke.PrivateKey{directory.EncryptionKeyID(k.PublicKey().Bytes()): k})
}

// build makes an honest envelope from -> to, sealed to to's published key.
func (f *fixture) build(t testing.TB, from, to string, mut ...func(*pocnetv1.EnvelopeHeader)) *envelope.Built {
	t.Helper()
	h := header(f.fed.ID, from, to)
	for _, m := range mut {
		m(h)
	}
	key, ok := f.dir.SealingKey(to)
	if !ok {
		t.Fatalf("no sealing key for %s", to)
	}
	b, err := envelope.Build(f.signer[from], f.sealer[from], key, h, payload())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func header(fed, from, to string) *pocnetv1.EnvelopeHeader {
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now()
	return &pocnetv1.EnvelopeHeader{
		Id: id, Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, FederationId: fed,
		FromState: from, FromRole: "technical", ToState: to, ToRole: "technical",
		Kind: pocnetv1.Kind_KIND_NOTIFICATION, Urgency: pocnetv1.Urgency_URGENCY_ROUTINE,
		CreatedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(now.Add(time.Hour)), ThreadId: id,
	}
}

const subject = "canary-subject-7f3a"

func payload() *pocnetv1.Payload {
	return &pocnetv1.Payload{Body: &pocnetv1.Payload_Communication{Communication: &pocnetv1.Communication{
		Kind: pocnetv1.Kind_KIND_NOTIFICATION, Urgency: pocnetv1.Urgency_URGENCY_ROUTINE, Subject: subject, Body: "canary-body-19c2", Language: "en"}}}
}

func flip(b []byte, i int) []byte { c := append([]byte(nil), b...); c[i%len(c)] ^= 1; return c }

func TestOpenVerifiesAndDecrypts(t *testing.T) {
	f := newFixture(t)
	b := f.build(t, "XAA", "XBB")
	o, err := envelope.Open(b.Envelope, f.dir, f.opener["XBB"])
	if err != nil {
		t.Fatalf("honest envelope refused: %v", err)
	}
	if o.Payload.GetCommunication().GetSubject() != subject || string(o.PayloadKey) != string(b.PayloadKey) || string(o.Digest) != string(b.Digest) {
		t.Fatalf("opened %v, key match %v", o.Payload, string(o.PayloadKey) == string(b.PayloadKey))
	}
	// The relay sees ciphertext only.
	if contains(b.Envelope.GetPayload(), subject) || contains(b.Envelope.GetHeader(), subject) {
		t.Fatal("the subject is readable in the envelope")
	}
	// The payload key opens exactly this envelope; anyone holding it can.
	p, err := envelope.Decode(b.Envelope, b.PayloadKey)
	if err != nil || p.GetCommunication().GetSubject() != subject {
		t.Fatalf("Decode with the payload key: %v %v", p, err)
	}
	other := f.build(t, "XAA", "XBB")
	if _, err := envelope.Decode(other.Envelope, b.PayloadKey); !errors.Is(err, envelope.ErrUndecryptable) {
		t.Fatalf("one envelope's key opened another: %v", err)
	}
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

// TestOpenRefuses covers every refusal of a tampered, misattributed or
// misaddressed envelope: each must fail with the error class a node maps to
// its refusal code.
func TestOpenRefuses(t *testing.T) {
	f := newFixture(t)
	retired := proto.Clone(f.fed.Directory).(*pocnetv1.Directory)
	sk := retired.GetMembers()[0].GetSigningKeys()[0] // XAA's only key
	sk.Status = pocnetv1.KeyStatus_KEY_STATUS_RETIRED
	sk.RetiredAt = timestamppb.New(time.Now().Add(-time.Minute))
	// A second active key keeps the entry valid.
	second, _ := envelope.GenerateSigningKey()
	retired.GetMembers()[0].SigningKeys = append(retired.GetMembers()[0].SigningKeys, certs.PublishSigningKey(second))
	retiredDir, err := directory.New(retired)
	if err != nil {
		t.Fatal(err)
	}
	revoked := proto.Clone(retired).(*pocnetv1.Directory)
	revoked.GetMembers()[0].GetSigningKeys()[0].Status = pocnetv1.KeyStatus_KEY_STATUS_REVOKED
	revokedDir, err := directory.New(revoked)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		env  func() *pocnetv1.Envelope
		dir  *directory.Directory
		by   string // opening state
		want error
	}{
		{"header bit", func() *pocnetv1.Envelope {
			e := f.build(t, "XAA", "XBB").Envelope
			e.Header = flip(e.Header, len(e.Header)-1)
			return e
		}, nil, "XBB", nil},
		{"payload bit", func() *pocnetv1.Envelope {
			e := f.build(t, "XAA", "XBB").Envelope
			e.Payload = flip(e.Payload, 20)
			return e
		}, nil, "XBB", envelope.ErrBadSignature},
		{"signature bit", func() *pocnetv1.Envelope {
			e := f.build(t, "XAA", "XBB").Envelope
			e.Signature.Value = flip(e.Signature.Value, 10)
			return e
		}, nil, "XBB", envelope.ErrBadSignature},
		{"no signature", func() *pocnetv1.Envelope {
			e := f.build(t, "XAA", "XBB").Envelope
			e.Signature = nil
			return e
		}, nil, "XBB", envelope.ErrBadSignature},
		{"unknown key id", func() *pocnetv1.Envelope {
			e := f.build(t, "XAA", "XBB").Envelope
			e.Signature.KeyId = "ed25519:00000000000000000000000000000000"
			return e
		}, nil, "XBB", envelope.ErrBadSignature},
		{"valid signature by another state's key", func() *pocnetv1.Envelope {
			// XCC signs an envelope claiming to come from XAA.
			h := header(f.fed.ID, "XAA", "XBB")
			key, _ := f.dir.SealingKey("XBB")
			b, err := envelope.Build(f.signer["XCC"], f.sealer["XCC"], key, h, payload())
			if err != nil {
				t.Fatal(err)
			}
			return b.Envelope
		}, nil, "XBB", envelope.ErrBadSignature},
		{"signed with a key retired before it was made", func() *pocnetv1.Envelope {
			return f.build(t, "XAA", "XBB").Envelope
		}, retiredDir, "XBB", envelope.ErrBadSignature},
		{"signed with a revoked key", func() *pocnetv1.Envelope {
			return f.build(t, "XAA", "XBB", func(h *pocnetv1.EnvelopeHeader) {
				h.CreatedAt = timestamppb.New(time.Now().Add(-time.Hour))
			}).Envelope
		}, revokedDir, "XBB", envelope.ErrBadSignature},
		{"sealed to another state", func() *pocnetv1.Envelope {
			return f.build(t, "XAA", "XCC").Envelope
		}, nil, "XBB", envelope.ErrUndecryptable},
		{"sealed to a key the recipient does not hold", func() *pocnetv1.Envelope {
			e := f.build(t, "XAA", "XBB").Envelope
			h, _ := envelope.DecodeHeader(e)
			h.RecipientKeyIds = []string{"mlkem768x25519:00000000000000000000000000000000"}
			hb, _ := proto.Marshal(h)
			return resign(f, "XAA", hb, e.GetPayload())
		}, nil, "XBB", envelope.ErrUndecryptable},
		{"header swapped under a valid signature", func() *pocnetv1.Envelope {
			// The sender re-signs a payload sealed under another header:
			// the AEAD binds the header, so the payload does not open.
			a, b := f.build(t, "XAA", "XBB").Envelope, f.build(t, "XAA", "XBB").Envelope
			return resign(f, "XAA", a.GetHeader(), b.GetPayload())
		}, nil, "XBB", envelope.ErrUndecryptable},
		{"empty header", func() *pocnetv1.Envelope {
			e := f.build(t, "XAA", "XBB").Envelope
			e.Header = nil
			return e
		}, nil, "XBB", envelope.ErrMalformed},
		{"clear payload", func() *pocnetv1.Envelope {
			e := f.build(t, "XAA", "XBB").Envelope
			h, _ := envelope.DecodeHeader(e)
			h.PayloadEncoding = pocnetv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO
			hb, _ := proto.Marshal(h)
			pb, _ := proto.Marshal(payload())
			return resign(f, "XAA", hb, pb)
		}, nil, "XBB", envelope.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.dir
			if d == nil {
				d = f.dir
			}
			_, err := envelope.Open(tc.env(), d, f.opener[tc.by])
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// An envelope made before its key was retired is still good: a backlog
	// signed before a rotation is delivered.
	old := f.build(t, "XAA", "XBB", func(h *pocnetv1.EnvelopeHeader) { h.CreatedAt = timestamppb.New(time.Now().Add(-time.Hour)) })
	if _, err := envelope.Open(old.Envelope, retiredDir, f.opener["XBB"]); err != nil {
		t.Fatalf("envelope made before the key was retired: %v", err)
	}
}

// resign signs header and payload bytes with from's real key, as a sender
// that misbuilds its own envelopes would.
func resign(f *fixture, from string, hb, pb []byte) *pocnetv1.Envelope {
	return envelope.SignRaw(f.signer[from], hb, pb)
}

func TestSealerReusesContexts(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	sl := envelope.NewSealer(f.fed.ID, "XAA", func() time.Time { return now })
	key, _ := f.dir.SealingKey("XBB")
	enc := func() []byte {
		b, err := envelope.Build(f.signer["XAA"], sl, key, header(f.fed.ID, "XAA", "XBB"), payload())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := envelope.Open(b.Envelope, f.dir, f.opener["XBB"]); err != nil {
			t.Fatal(err)
		}
		h, _ := envelope.DecodeHeader(b.Envelope)
		return h.GetSealingContext()
	}
	a, b := enc(), enc()
	if string(a) != string(b) {
		t.Fatal("two envelopes within a context's lifetime used two contexts")
	}
	now = now.Add(envelope.ContextLifetime)
	if c := enc(); string(c) == string(a) {
		t.Fatal("a context outlived ContextLifetime")
	}
}

func TestReceipts(t *testing.T) {
	f := newFixture(t)
	var built []*envelope.Built
	var entries []*pocnetv1.ReceiptEntry
	var ids []string
	for range 5 {
		b := f.build(t, "XAA", "XBB")
		h, _ := envelope.DecodeHeader(b.Envelope)
		built = append(built, b)
		ids = append(ids, h.GetId())
		entries = append(entries, &pocnetv1.ReceiptEntry{EnvelopeId: h.GetId(), EnvelopeDigest: b.Digest, Outcome: pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED})
	}
	rs, err := envelope.SignReceipts(f.signer["XBB"], "XAA", "XBB", time.Now(), entries)
	if err != nil {
		t.Fatal(err)
	}
	v := envelope.NewReceiptVerifier(f.dir)
	for i, r := range rs {
		got, err := v.Verify(r, "XAA", "XBB", ids[i], built[i].Digest)
		if err != nil {
			t.Fatalf("honest receipt %d refused: %v", i, err)
		}
		if got.Entry.GetEnvelopeId() != ids[i] {
			t.Fatalf("receipt %d attests %s", i, got.Entry.GetEnvelopeId())
		}
	}
	bySender, _ := envelope.SignReceipts(f.signer["XAA"], "XAA", "XBB", time.Now(), entries)
	swapped := proto.Clone(rs[0]).(*pocnetv1.Receipt)
	swapped.Entry = rs[1].Entry
	badPath := proto.Clone(rs[2]).(*pocnetv1.Receipt)
	badPath.InclusionPath[0] = flip(badPath.InclusionPath[0], 0)
	badBody := proto.Clone(rs[0]).(*pocnetv1.Receipt)
	badBody.Body = flip(badBody.Body, len(badBody.Body)-1)
	e0 := built[0].Envelope
	bad := []struct {
		name         string
		r            *pocnetv1.Receipt
		from, to, id string
		digest       []byte
	}{
		{"wrong digest", rs[0], "XAA", "XBB", ids[0], make([]byte, 32)},
		{"wrong id", rs[0], "XAA", "XBB", uuid.NewString(), built[0].Digest},
		{"another envelope's receipt", rs[1], "XAA", "XBB", ids[0], built[0].Digest},
		{"entry swapped in", swapped, "XAA", "XBB", ids[1], built[1].Digest},
		{"inclusion path altered", badPath, "XAA", "XBB", ids[2], built[2].Digest},
		{"body altered", badBody, "XAA", "XBB", ids[0], built[0].Digest},
		{"claims another recipient", rs[0], "XAA", "XCC", ids[0], built[0].Digest},
		{"signed by the sender", bySender[0], "XAA", "XBB", ids[0], built[0].Digest},
		{"envelope signature reused as receipt", &pocnetv1.Receipt{Body: e0.Header, Signature: e0.Signature, Entry: rs[0].Entry}, "XAA", "XBB", ids[0], built[0].Digest},
	}
	for _, tc := range bad {
		if _, err := envelope.VerifyReceipt(tc.r, f.dir, tc.from, tc.to, tc.id, tc.digest); err == nil {
			t.Errorf("%s: receipt accepted", tc.name)
		}
	}
}

// TestSealingContext checks the encapsulated key's way from sender to
// recipient: named by the signed header, carried beside it, needed only
// by an opener that has not set the context up yet, and refused when it is
// not the key the header names.
func TestSealingContext(t *testing.T) {
	f := newFixture(t)
	b := f.build(t, "XAA", "XBB")
	h, err := envelope.DecodeHeader(b.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	enc := b.Envelope.GetEncapsulatedKey()
	if len(enc) == 0 {
		t.Fatal("a sealed envelope carries no encapsulated key")
	}
	if got := h.GetSealingContext(); !bytes.Equal(got, envelope.ContextID(enc)) {
		t.Fatalf("header.sealing_context = %x, want ContextID(enc) = %x", got, envelope.ContextID(enc))
	}
	if bytes.Contains(b.Envelope.GetHeader(), enc) {
		t.Fatal("the header still holds the encapsulated key")
	}
	bare := func(e *pocnetv1.Envelope) *pocnetv1.Envelope {
		c := proto.Clone(e).(*pocnetv1.Envelope)
		c.EncapsulatedKey = nil
		return c
	}
	// Neither signed nor digested: an envelope verifies without it, and
	// its digest (what receipts attest) does not depend on it.
	if _, err := envelope.Verify(bare(b.Envelope), f.dir); err != nil {
		t.Fatalf("envelope without its encapsulated key does not verify: %v", err)
	}
	if !bytes.Equal(envelope.Digest(bare(b.Envelope)), b.Digest) {
		t.Fatal("the digest depends on the encapsulated key")
	}

	other := envelope.NewSealer(f.fed.ID, "XAA", nil)
	key, _ := f.dir.SealingKey("XBB")
	ob, err := envelope.Build(f.signer["XAA"], other, key, header(f.fed.ID, "XAA", "XBB"), payload())
	if err != nil {
		t.Fatal(err)
	}
	swapped := proto.Clone(b.Envelope).(*pocnetv1.Envelope)
	swapped.EncapsulatedKey = ob.Envelope.GetEncapsulatedKey()
	short := func() *pocnetv1.Envelope {
		h := proto.Clone(h).(*pocnetv1.EnvelopeHeader)
		h.SealingContext = h.SealingContext[:16]
		hb, _ := proto.Marshal(h)
		e := resign(f, "XAA", hb, b.Envelope.GetPayload())
		e.EncapsulatedKey = enc
		return e
	}()
	for _, tc := range []struct {
		name string
		env  *pocnetv1.Envelope
		want error
		says string
	}{
		{"no encapsulated key", bare(b.Envelope), envelope.ErrUndecryptable, "encapsulated_key is missing"},
		{"another context's key", swapped, envelope.ErrMalformed, "not the key header.sealing_context names"},
		{"sealing context cut short", short, envelope.ErrMalformed, "header.sealing_context has 16 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := envelope.Open(tc.env, f.dir, newOpener(f, "XBB"))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.want, tc.says)
			}
		})
	}

	// Once an opener has set the context up, the context's other envelopes
	// open without the key, and with the right one.
	o := newOpener(f, "XBB")
	if _, err := envelope.Open(b.Envelope, f.dir, o); err != nil {
		t.Fatal(err)
	}
	next := f.build(t, "XAA", "XBB")
	for _, e := range []*pocnetv1.Envelope{bare(next.Envelope), next.Envelope} {
		got, err := envelope.Open(e, f.dir, o)
		if err != nil {
			t.Fatalf("second envelope of a context set up: %v", err)
		}
		if !bytes.Equal(got.PayloadKey, next.PayloadKey) {
			t.Fatal("payload key differs from the sender's")
		}
	}
}
