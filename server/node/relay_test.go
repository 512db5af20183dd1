package node_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// wantReceipt checks that res carries a receipt of recipient's node for env
// with the given outcome, and returns its entry.
func wantReceipt(t *testing.T, f *testfed.Federation, res *pocnetv1.DeliveryResult, env *pocnetv1.Envelope, from, recipient string, outcome pocnetv1.DeliveryOutcome) *pocnetv1.ReceiptEntry {
	t.Helper()
	h, err := envelope.DecodeHeader(env)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.GetRefusal(); r != nil {
		t.Fatalf("envelope %s refused: %v: %s", h.GetId(), r.GetCode(), r.GetMessage())
	}
	got, err := envelope.VerifyReceipt(res.GetReceipt(), dirOf(t, f), from, recipient, h.GetId(), envelope.Digest(env))
	if err != nil {
		t.Fatalf("receipt for %s does not verify: %v", h.GetId(), err)
	}
	if got.Entry.GetOutcome() != outcome {
		t.Fatalf("receipt outcome %v (%s), want %v", got.Entry.GetOutcome(), got.Entry.GetReason(), outcome)
	}
	return got.Entry
}

func TestDeliverTwiceSameReceipt(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	relay := f.Relay("XAA", "XBB")
	adminB := f.Contact("XBB", "admin")
	c := rfi("Delivered twice")
	env := build(t, signer(t, f, "XAA"), commHeader(f, "XAA", "XBB", c, time.Now()), commPayload(c))

	first := deliverOne(t, relay, env)
	wantReceipt(t, f, first, env, "XAA", "XBB", pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED)
	second := deliverOne(t, relay, proto.Clone(env).(*pocnetv1.Envelope))
	wantReceipt(t, f, second, env, "XAA", "XBB", pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED)
	b1, _ := proto.MarshalOptions{Deterministic: true}.Marshal(first.GetReceipt())
	b2, _ := proto.MarshalOptions{Deterministic: true}.Marshal(second.GetReceipt())
	if !bytes.Equal(b1, b2) {
		t.Fatal("second delivery got a different receipt; it must get the first one again")
	}
	// Both copies in one call are stored once as well.
	both, err := relay.Deliver(ctx(t), &pocnetv1.DeliverRequest{Envelopes: []*pocnetv1.Envelope{env, env}})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range both.GetResults() {
		if !proto.Equal(res.GetReceipt(), first.GetReceipt()) {
			t.Fatalf("batched redelivery got %v", res)
		}
	}

	in := inbox(t, adminB)
	if len(in) != 1 || in[0].GetId() != first.GetEnvelopeId() {
		t.Fatalf("XBB inbox has %d messages, want exactly %s", len(in), first.GetEnvelopeId())
	}
	if n := received(events(t, adminB)); len(n) != 1 || n[first.GetEnvelopeId()] != 1 {
		t.Fatalf("MESSAGE_RECEIVED events = %v, want one", n)
	}
}

func TestDeliverSameIDDifferentContent(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	relay := f.Relay("XAA", "XBB")
	adminB := f.Contact("XBB", "admin")
	s := signer(t, f, "XAA")
	c := rfi("Original")
	h := commHeader(f, "XAA", "XBB", c, time.Now())
	orig := build(t, s, h, commPayload(c))
	wantReceipt(t, f, deliverOne(t, relay, orig), orig, "XAA", "XBB", pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED)
	before := take(t, adminB)

	c2 := rfi("Replaced")
	res := deliverOne(t, relay, build(t, s, h, commPayload(c2)))
	if res.GetRefusal().GetCode() != pocnetv1.RefusalCode_REFUSAL_CODE_CONFLICT || !strings.Contains(res.GetRefusal().GetMessage(), "different content") {
		t.Fatalf("same id, different content: %v, want CONFLICT", res)
	}
	before.unchanged(t, "after a conflicting delivery", adminB)
	if m := get(t, adminB, h.GetId()); m.GetCommunication().GetSubject() != "Original" {
		t.Fatalf("stored message now says %q", m.GetCommunication().GetSubject())
	}
}

// TestDeliverRefusals: envelopes that fail verification, addressing or
// expiry are refused with the right code, and nothing is stored.
func TestDeliverRefusals(t *testing.T) {
	// XAA also publishes a key retired an hour ago and a revoked key; the
	// test holds their private halves, as a thief or a careless operator
	// would.
	retiredKey, _ := envelope.GenerateSigningKey()
	revokedKey, _ := envelope.GenerateSigningKey()
	f := testfed.Start(t, testfed.Options{States: 3, Directory: func(d *pocnetv1.Directory) {
		retired, revoked := certs.PublishSigningKey(retiredKey), certs.PublishSigningKey(revokedKey)
		retired.Status, retired.RetiredAt = pocnetv1.KeyStatus_KEY_STATUS_RETIRED, ts(time.Now().Add(-time.Hour))
		revoked.Status = pocnetv1.KeyStatus_KEY_STATUS_REVOKED
		d.GetMembers()[0].SigningKeys = append(d.GetMembers()[0].SigningKeys, retired, revoked)
	}})
	adminB := f.Contact("XBB", "admin")
	fromA := f.Relay("XAA", "XBB")
	fromC := f.Relay("XCC", "XBB")
	sA, sC := signer(t, f, "XAA"), signer(t, f, "XCC")
	withKey := func(k ed25519.PrivateKey) *sender {
		s := signer(t, f, "XAA")
		var err error
		if s.s, err = envelope.NewSigner(k); err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()

	flip := func(b []byte, sub string) []byte {
		out := bytes.Clone(b)
		i := bytes.Index(out, []byte(sub))
		if i < 0 {
			t.Fatalf("%q not in the bytes to corrupt", sub)
		}
		out[i] ^= 0x01
		return out
	}
	valid := func() *pocnetv1.Envelope {
		c := rfi("Bits will flip")
		return build(t, sA, commHeader(f, "XAA", "XBB", c, now), commPayload(c))
	}
	tests := []struct {
		name  string
		relay pocnetv1.RelayServiceClient
		env   func() *pocnetv1.Envelope
		codes []pocnetv1.RefusalCode
		msg   string
	}{
		{"bit flipped in header", fromA, func() *pocnetv1.Envelope {
			env := valid()
			env.Header = flip(env.GetHeader(), "technical") // from_role becomes "uechnical"
			return env
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE}, "signature does not verify"},
		{"bit flipped in header id", fromA, func() *pocnetv1.Envelope {
			env := valid()
			env.Header[3] ^= 0x01
			return env
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE, pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE}, ""},
		{"bit flipped in payload", fromA, func() *pocnetv1.Envelope {
			env := valid()
			env.Payload = bytes.Clone(env.GetPayload())
			env.Payload[len(env.Payload)/2] ^= 0x01
			return env
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE}, "signature does not verify"},
		{"unknown key id", fromA, func() *pocnetv1.Envelope {
			env := valid()
			env.Signature.KeyId = "ed25519:0123456789abcdef0123456789abcdef"
			return env
			// Unknown to this node: perhaps a key of a directory version it
			// does not hold yet, so the sender is told to retry.
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_UNAVAILABLE}, `key id "ed25519:0123456789abcdef0123456789abcdef" is not a signing key of XAA in the directory; this node is fetching newer directory versions`},
		{"signed with a retired key", fromA, func() *pocnetv1.Envelope {
			c := rfi("Retired key")
			return build(t, withKey(retiredKey), commHeader(f, "XAA", "XBB", c, now), commPayload(c))
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE}, "was retired at"},
		{"signed with a revoked key", fromA, func() *pocnetv1.Envelope {
			c := rfi("Revoked key")
			return build(t, withKey(revokedKey), commHeader(f, "XAA", "XBB", c, now), commPayload(c))
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE}, "is revoked"},
		{"sealed to another state's key", fromA, func() *pocnetv1.Envelope {
			c := rfi("Sealed to XCC")
			key, _ := sA.dir.SealingKey("XCC")
			b, err := envelope.Build(sA.s, sA.sl, key, commHeader(f, "XAA", "XBB", c, now), commPayload(c))
			if err != nil {
				t.Fatal(err)
			}
			return b.Envelope
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE}, "which the node of XBB does not hold"},
		{"header swapped, signed again", fromA, func() *pocnetv1.Envelope {
			// The signature is valid, but the payload was sealed under
			// another header: the header is bound to the ciphertext.
			a, b := valid(), valid()
			e := envelope.SignRaw(sA.s, a.GetHeader(), b.GetPayload())
			e.EncapsulatedKey = a.GetEncapsulatedKey()
			return e
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE}, "does not authenticate with its key and header"},
		{"payload in clear", fromA, func() *pocnetv1.Envelope {
			c := rfi("In clear")
			h := commHeader(f, "XAA", "XBB", c, now)
			h.PayloadEncoding = pocnetv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO
			hb, _ := proto.Marshal(h)
			pb, _ := proto.Marshal(commPayload(c))
			return envelope.SignRaw(sA.s, hb, pb)
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE}, "sealed payloads only"},
		{"bit flipped in signature", fromA, func() *pocnetv1.Envelope {
			env := valid()
			env.Signature.Value = bytes.Clone(env.GetSignature().GetValue())
			env.Signature.Value[len(env.Signature.Value)/2] ^= 0x01
			return env
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE}, "signature does not verify"},
		{"no signature", fromA, func() *pocnetv1.Envelope {
			env := valid()
			env.Signature = nil
			return env
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE}, "no signature"},
		{"empty header", fromA, func() *pocnetv1.Envelope {
			env := valid()
			env.Header = nil
			return env
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE}, "empty header"},
		{"signed by XCC claiming XAA", fromA, func() *pocnetv1.Envelope {
			c := rfi("Forged origin")
			return build(t, sC, commHeader(f, "XAA", "XBB", c, now), commPayload(c))
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE}, "is not a signing key of XAA"},
		{"XAA's envelope over XCC's connection", fromC, func() *pocnetv1.Envelope {
			return valid()
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE}, "envelope from XAA delivered by the node of XCC"},
		{"addressed to XCC", fromA, func() *pocnetv1.Envelope {
			c := rfi("For XCC")
			return build(t, sA, commHeader(f, "XAA", "XCC", c, now), commPayload(c))
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_WRONG_RECIPIENT}, "addressed to XCC"},
		{"other federation", fromA, func() *pocnetv1.Envelope {
			c := rfi("Elsewhere")
			h := commHeader(f, "XAA", "XBB", c, now)
			h.FederationId = "other.example"
			return build(t, sA, h, commPayload(c))
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_WRONG_RECIPIENT}, `"other.example"`},
		{"expired", fromA, func() *pocnetv1.Envelope {
			c := rfi("Too late")
			h := commHeader(f, "XAA", "XBB", c, now.Add(-2*time.Hour))
			h.ExpiresAt = ts(now.Add(-time.Hour))
			return build(t, sA, h, commPayload(c))
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_EXPIRED}, "expired at"},
		{"payload kind differs from header", fromA, func() *pocnetv1.Envelope {
			c := rfi("Kind mismatch")
			h := commHeader(f, "XAA", "XBB", c, now)
			h.Kind = pocnetv1.Kind_KIND_NOTIFICATION
			return build(t, sA, h, commPayload(c))
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE}, "header kind and urgency differ"},
		{"payload type differs from header", fromA, func() *pocnetv1.Envelope {
			c := rfi("Type mismatch")
			return build(t, sA, commHeader(f, "XAA", "XBB", c, now), &pocnetv1.Payload{Body: &pocnetv1.Payload_Acknowledgement{Acknowledgement: &pocnetv1.Acknowledgement{}}})
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE}, "payload does not match header.type"},
		{"created in the future", fromA, func() *pocnetv1.Envelope {
			c := rfi("From the future")
			h := commHeader(f, "XAA", "XBB", c, now.Add(time.Hour))
			return build(t, sA, h, commPayload(c))
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE}, "in the future"},
		{"id not a UUID", fromA, func() *pocnetv1.Envelope {
			c := rfi("Odd id")
			h := commHeader(f, "XAA", "XBB", c, now)
			h.Id, h.ThreadId = "message-1", "message-1"
			return build(t, sA, h, commPayload(c))
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE}, "not a canonical UUID"},
		{"invalid communication", fromA, func() *pocnetv1.Envelope {
			c := rfi("")
			return build(t, sA, commHeader(f, "XAA", "XBB", c, now), commPayload(c))
		}, []pocnetv1.RefusalCode{pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE}, "payload.communication.subject"},
	}
	before := take(t, adminB)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := deliverOne(t, tc.relay, tc.env())
			r := res.GetRefusal()
			ok := false
			for _, code := range tc.codes {
				ok = ok || r.GetCode() == code
			}
			if r == nil || !ok || !strings.Contains(r.GetMessage(), tc.msg) {
				t.Fatalf("result %v, want a refusal %v containing %q", res, tc.codes, tc.msg)
			}
		})
	}
	before.unchanged(t, "XBB after refused envelopes", adminB)
}

// TestAnswerToUnknownMessageRejected: an answer to a message XBB never sent
// is stored for idempotency only and answered with a signed REJECTED receipt.
func TestAnswerToUnknownMessageRejected(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	adminB := f.Contact("XBB", "admin")
	unknown := uuid.Must(uuid.NewV7()).String()
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now()
	h := &pocnetv1.EnvelopeHeader{
		Id: id, Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT, FederationId: f.Certs.ID,
		FromState: "XAA", FromRole: "technical", ToState: "XBB", ToRole: "technical",
		Kind: pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, Urgency: pocnetv1.Urgency_URGENCY_ROUTINE,
		CreatedAt: ts(now), ExpiresAt: ts(now.Add(time.Hour)), InReplyTo: unknown, ThreadId: unknown,
	}
	env := build(t, signer(t, f, "XAA"), h, &pocnetv1.Payload{Body: &pocnetv1.Payload_Acknowledgement{Acknowledgement: &pocnetv1.Acknowledgement{}}})
	before := take(t, adminB)
	body := wantReceipt(t, f, deliverOne(t, f.Relay("XAA", "XBB"), env), env, "XAA", "XBB", pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_REJECTED)
	if !strings.Contains(body.GetReason(), unknown) {
		t.Fatalf("rejection reason %q does not name the message answered", body.GetReason())
	}
	if len(inbox(t, adminB)) != 0 || lastSeq(t, adminB) != before.seq {
		t.Fatal("a rejected answer reached the inbox or the event log")
	}
}

// peerStatus returns what node c reports about delivery to peer.
func peerStatus(t *testing.T, c pocnetv1.ContactServiceClient, peer string) *pocnetv1.PeerStatus {
	t.Helper()
	st, err := c.GetNodeStatus(ctx(t), &pocnetv1.GetNodeStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.GetPeers() {
		if p.GetState() == peer {
			return p
		}
	}
	return nil
}

func TestPeerDownThenBack(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	a := f.Contact("XAA", "technical")
	adminA := f.Contact("XAA", "admin")
	f.Stop("XBB")

	sent := send(t, a, "XBB", "technical", rfi("While you were down"))
	testfed.WaitFor(t, "XAA to see XBB unreachable with the envelope pending", func() bool {
		p := peerStatus(t, adminA, "XBB")
		return p != nil && !p.GetReachable() && p.GetPending() >= 1 && p.GetLastError() != ""
	})
	if m := get(t, a, sent.GetId()); m.GetStatus() != pocnetv1.Status_STATUS_ACCEPTED {
		t.Fatalf("status with the peer down = %v, want ACCEPTED", m.GetStatus())
	}

	f.Restart("XBB")
	waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	adminB := f.Contact("XBB", "admin")
	if in := inbox(t, adminB); len(in) != 1 || in[0].GetId() != sent.GetId() {
		t.Fatalf("XBB inbox has %d messages, want exactly %s", len(in), sent.GetId())
	}
	if n := received(events(t, adminB)); n[sent.GetId()] != 1 || len(n) != 1 {
		t.Fatalf("MESSAGE_RECEIVED at XBB = %v, want one", n)
	}
	testfed.WaitFor(t, "XAA to see XBB reachable with nothing pending", func() bool {
		p := peerStatus(t, adminA, "XBB")
		return p.GetReachable() && p.GetPending() == 0
	})
}

func TestDeadPeerDoesNotDelayOthers(t *testing.T) {
	f := testfed.Start(t, testfed.Options{States: 3})
	a := f.Contact("XAA", "technical")
	f.Stop("XCC")
	var toC []string
	for i := range 20 {
		toC = append(toC, send(t, a, "XCC", "technical", rfi(fmt.Sprintf("To XCC %d", i))).GetId())
	}
	toB := send(t, a, "XBB", "technical", rfi("To XBB"))
	waitStatus(t, a, toB.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	for _, id := range toC {
		if m := get(t, a, id); m.GetStatus() != pocnetv1.Status_STATUS_ACCEPTED {
			t.Fatalf("message %s to the stopped XCC is %v, want ACCEPTED", id, m.GetStatus())
		}
	}
}

// TestUrgentFirst: what waits for a peer goes urgent first. The clock stands
// still while the peer is down, so that the relay's backoff holds every
// queued envelope until the test moves time on, and the first delivery after
// XBB's return carries them all in one batch.
func TestUrgentFirst(t *testing.T) {
	clk := newClock()
	f := testfed.Start(t, testfed.Options{Now: clk.Now})
	a := f.Contact("XAA", "technical")
	adminA := f.Contact("XAA", "admin")
	f.Stop("XBB")

	routine := func(s string) *pocnetv1.Communication {
		c := rfi(s)
		c.Urgency = pocnetv1.Urgency_URGENCY_ROUTINE
		return c
	}
	ids := []string{send(t, a, "XBB", "technical", routine("routine 0")).GetId()}
	testfed.WaitFor(t, "the first attempt to fail", func() bool {
		p := peerStatus(t, adminA, "XBB")
		return p != nil && !p.GetReachable() && p.GetPending() == 1
	})
	for i := 1; i < 5; i++ {
		ids = append(ids, send(t, a, "XBB", "technical", routine(fmt.Sprintf("routine %d", i))).GetId())
	}
	u := rfi("urgent")
	u.Urgency = pocnetv1.Urgency_URGENCY_URGENT
	urgent := send(t, a, "XBB", "technical", u).GetId()
	if p := peerStatus(t, adminA, "XBB"); p.GetPending() != 6 {
		t.Fatalf("pending for XBB = %d, want 6", p.GetPending())
	}

	f.Restart("XBB")
	testfed.WaitFor(t, "all six to be delivered", func() bool {
		clk.Advance(100 * time.Millisecond)
		for _, id := range append(ids, urgent) {
			if get(t, a, id).GetStatus() != pocnetv1.Status_STATUS_DELIVERED {
				return false
			}
		}
		return true
	})
	evs := events(t, f.Contact("XBB", "admin"))
	var order []string
	for _, ev := range evs {
		if ev.GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED {
			order = append(order, ev.GetMessageId())
		}
	}
	want := append([]string{urgent}, ids...)
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("XBB received %v, want the urgent one first, then the routine ones in order: %v", order, want)
	}
}

// TestExpiryBeforeDelivery: an envelope that cannot be delivered before it
// expires becomes UNDELIVERABLE and is never delivered later.
func TestExpiryBeforeDelivery(t *testing.T) {
	clk := newClock()
	f := testfed.Start(t, testfed.Options{Now: clk.Now})
	a := f.Contact("XAA", "technical")
	f.Stop("XBB")
	resp, err := a.SendCommunication(ctx(t), &pocnetv1.SendCommunicationRequest{
		ToState: "XBB", ToRole: "technical", Communication: rfi("Short-lived"), ExpiresAt: ts(clk.Now().Add(time.Hour)),
	})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetMessage().GetId()
	if m := get(t, a, id); m.GetStatus() != pocnetv1.Status_STATUS_ACCEPTED {
		t.Fatalf("status before expiry = %v, want ACCEPTED", m.GetStatus())
	}
	clk.Advance(2 * time.Hour)
	m := waitStatus(t, a, id, pocnetv1.Status_STATUS_UNDELIVERABLE)
	if !strings.Contains(m.GetStatusReason(), "expired") {
		t.Fatalf("undeliverable reason %q does not say it expired", m.GetStatusReason())
	}

	f.Restart("XBB")
	// A later message is delivered; the expired one never is.
	later := send(t, a, "XBB", "technical", rfi("After the restart"))
	// Time moves on while waiting: the relay's backoff runs on the clock.
	testfed.WaitFor(t, "the later message to be delivered", func() bool {
		clk.Advance(100 * time.Millisecond)
		return get(t, a, later.GetId()).GetStatus() == pocnetv1.Status_STATUS_DELIVERED
	})
	in := inbox(t, f.Contact("XBB", "admin"))
	if len(in) != 1 || in[0].GetId() != later.GetId() {
		t.Fatalf("XBB inbox has %d messages, want only %s", len(in), later.GetId())
	}
	if m := get(t, a, id); m.GetStatus() != pocnetv1.Status_STATUS_UNDELIVERABLE {
		t.Fatalf("expired message is now %v", m.GetStatus())
	}
}

// TestDeliverKeysOncePerCall: the envelopes of a call sealed with one
// context may leave their encapsulated key to the call, which carries it
// once; a recipient that never set the context up opens them with it, and
// refuses, saying why, an envelope whose key is nowhere.
func TestDeliverKeysOncePerCall(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	relay := f.Relay("XAA", "XBB")
	s := signer(t, f, "XAA") // a new sealer: a context XBB has not seen
	var envs []*pocnetv1.Envelope
	for i := range 3 {
		c := rfi(fmt.Sprintf("Key once, %d", i))
		envs = append(envs, build(t, s, commHeader(f, "XAA", "XBB", c, time.Now()), commPayload(c)))
	}
	bare, keys := envelope.SplitKeys(envs)
	if len(keys) != 1 {
		t.Fatalf("SplitKeys: %d keys for envelopes of one context, want 1", len(keys))
	}
	for i, e := range bare {
		if len(e.GetEncapsulatedKey()) != 0 || len(envs[i].GetEncapsulatedKey()) == 0 {
			t.Fatal("SplitKeys left a key in a copy, or took one off the original")
		}
	}
	resp, err := relay.Deliver(ctx(t), &pocnetv1.DeliverRequest{Envelopes: bare, EncapsulatedKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range resp.GetResults() {
		wantReceipt(t, f, res, envs[i], "XAA", "XBB", pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED)
	}

	c := rfi("Key nowhere")
	lone, _ := envelope.SplitKeys([]*pocnetv1.Envelope{build(t, signer(t, f, "XAA"), commHeader(f, "XAA", "XBB", c, time.Now()), commPayload(c))})
	res := deliverOne(t, relay, lone[0])
	if r := res.GetRefusal(); r.GetCode() != pocnetv1.RefusalCode_REFUSAL_CODE_INVALID_ENVELOPE || !strings.Contains(r.GetMessage(), "encapsulated_key is missing") {
		t.Fatalf("envelope without its key, none in the call: %v", res)
	}

	_, err = relay.Deliver(ctx(t), &pocnetv1.DeliverRequest{Envelopes: lone, EncapsulatedKeys: [][]byte{keys[0], keys[0]}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "encapsulated_keys: 2 for 1 envelopes") {
		t.Fatalf("more keys than envelopes: %v, want InvalidArgument naming encapsulated_keys", err)
	}
	if n := len(inbox(t, f.Contact("XBB", "admin"))); n != 3 {
		t.Fatalf("XBB inbox has %d messages, want the 3 delivered", n)
	}
}
