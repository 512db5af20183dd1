package transcript_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/transcript"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func TestBuildAndVerify(t *testing.T) {
	f := newFixture(t)
	msgs := f.thread(t)
	recs := records(msgs)
	// A node lists a thread in the order it stored it; the transcript's
	// order depends only on the envelopes.
	rand.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	tr, err := transcript.Build(recs, "XBB", f.now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := transcript.Build(records(msgs), "XBB", f.now)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(tr, other) {
		t.Error("the same records in another order built another transcript")
	}
	rep, err := transcript.Verify(tr, f.dir)
	if err != nil {
		t.Fatalf("honest transcript: %v", err)
	}
	if rep.ThreadID != msgs[0].header.GetId() || rep.States != [2]string{"XAA", "XBB"} || rep.ExportedBy != "XBB" || len(rep.Entries) != 4 {
		t.Fatalf("report: thread %s, states %v, exported by %s, %d entries", rep.ThreadID, rep.States, rep.ExportedBy, len(rep.Entries))
	}
	for i, e := range rep.Entries {
		if e.N != i+1 || e.Header.GetId() != msgs[i].header.GetId() {
			t.Errorf("entry %d is %s, want %s", i+1, e.Header.GetId(), msgs[i].header.GetId())
		}
		if e.Receipt == nil || e.Receipt.Outcome != pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED {
			t.Errorf("entry %d: receipt %+v, want delivered", i+1, e.Receipt)
		}
	}
	if got := [4]int{rep.Entries[0].Answers, rep.Entries[1].Answers, rep.Entries[2].Answers, rep.Entries[3].Answers}; got != [4]int{0, 1, 1, 3} {
		t.Errorf("answers %v, want [0 1 1 3]", got)
	}
	if c := rep.Entries[0].Communication(); c.GetSubject() != "Ransomware C2 at 203.0.113.7" ||
		c.GetHandlingCode() != pocnetv1.HandlingCode_HANDLING_CODE_NO_JUDICIAL_USE_WITHOUT_CONSENT {
		t.Errorf("entry 1 communication: %v", c)
	}

	// A transcript without receipts (not delivered yet) still verifies.
	for _, e := range tr.GetEntries() {
		e.Receipt = nil
	}
	if rep, err := transcript.Verify(tr, f.dir); err != nil || rep.Entries[0].Receipt != nil {
		t.Errorf("transcript without receipts: %v", err)
	}
}

func TestBuildRefusesIncompleteRecords(t *testing.T) {
	f := newFixture(t)
	msgs := f.thread(t)
	if _, err := transcript.Build(records(msgs[1:]), "XAA", f.now); err == nil || !strings.Contains(err.Error(), "opens the thread") {
		t.Errorf("without the communication: %v", err)
	}
	if _, err := transcript.Build(records([]*message{msgs[0], msgs[1], msgs[3]}), "XAA", f.now); err == nil ||
		!strings.Contains(err.Error(), "answers "+msgs[2].header.GetId()) {
		t.Errorf("without the response: %v", err)
	}
	if _, err := transcript.Build(nil, "XAA", f.now); err == nil {
		t.Error("no records: no error")
	}
}

// seal re-seals a payload as a node would, with a key of the doctor's own.
func seal(t *testing.T, key, header []byte, p *pocnetv1.Payload) []byte {
	t.Helper()
	pb, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(b)
	nonce := make([]byte, 12)
	crand.Read(nonce)
	return g.Seal(nonce, nonce, pb, header)
}

func TestVerifyRejectsDoctoredTranscripts(t *testing.T) {
	f := newFixture(t)
	tr, msgs := f.honest(t)
	otherThread := f.thread(t)

	// rewrite changes the subject of entry i and seals it again under a
	// made-up key, keeping the original signature.
	rewrite := func(t *testing.T, tr *pocnetv1.Transcript, i int) *pocnetv1.Payload {
		e := tr.Entries[i]
		p, err := envelope.Decode(e.Envelope, e.PayloadKey)
		if err != nil {
			t.Fatal(err)
		}
		p.GetCommunication().Subject = "We never asked for this"
		key := make([]byte, 32)
		crand.Read(key)
		e.Envelope.Payload, e.PayloadKey = seal(t, key, e.Envelope.Header, p), key
		return p
	}
	tests := []struct {
		name   string
		doctor func(t *testing.T, tr *pocnetv1.Transcript)
		entry  int
		want   string
	}{
		{"flipped bit in a payload", func(_ *testing.T, tr *pocnetv1.Transcript) {
			tr.Entries[2].Envelope.Payload[20] ^= 1
		}, 3, "signature does not verify"},
		{"flipped bit in a header", func(_ *testing.T, tr *pocnetv1.Transcript) {
			h := tr.Entries[1].Envelope.Header
			h[len(h)-1] ^= 1
		}, 2, ""},
		{"subject changed and sealed again with a made-up key", func(t *testing.T, tr *pocnetv1.Transcript) {
			rewrite(t, tr, 0)
		}, 1, "signature does not verify"},
		{"response rewritten and signed by the other state's key", func(t *testing.T, tr *pocnetv1.Transcript) {
			rewrite(t, tr, 2)
			e := tr.Entries[2]
			e.Envelope = envelope.SignRaw(f.signer["XAA"], e.Envelope.Header, e.Envelope.Payload)
		}, 3, "not a signing key of XBB"},
		{"response rewritten and signed again by its own sender", func(t *testing.T, tr *pocnetv1.Transcript) {
			// XBB can sign anything as XBB, but not XAA's receipt of what
			// XBB really sent.
			p := rewrite(t, tr, 2)
			e := tr.Entries[2]
			// A consistent header: it commits to the new payload key, and
			// the payload is sealed under the new header.
			h, err := envelope.DecodeHeader(e.Envelope)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(append([]byte("pocnet/v1 payload key commitment\x00"), e.PayloadKey...))
			h.PayloadKeyCommitment = sum[:]
			hb, err := proto.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			e.Envelope = envelope.SignRaw(f.signer["XBB"], hb, seal(t, e.PayloadKey, hb, p))
		}, 3, "receipt does not match"},
		{"payload key of another envelope", func(_ *testing.T, tr *pocnetv1.Transcript) {
			tr.Entries[1].PayloadKey = tr.Entries[2].PayloadKey
		}, 2, "does not open with the entry's payload key"},
		{"payload key cut short", func(_ *testing.T, tr *pocnetv1.Transcript) {
			tr.Entries[0].PayloadKey = tr.Entries[0].PayloadKey[:16]
		}, 1, "does not open"},
		{"receipts of two answers swapped", func(_ *testing.T, tr *pocnetv1.Transcript) {
			tr.Entries[1].Receipt, tr.Entries[2].Receipt = tr.Entries[2].Receipt, tr.Entries[1].Receipt
		}, 2, "receipt does not match"},
		{"receipt of the communication on an answer", func(_ *testing.T, tr *pocnetv1.Transcript) {
			tr.Entries[1].Receipt = tr.Entries[0].Receipt
		}, 2, "receipt does not match"},
		{"receipt signed by the sender instead of the recipient", func(t *testing.T, tr *pocnetv1.Transcript) {
			rs, err := envelope.SignReceipts(f.signer["XAA"], "XAA", "XBB", f.now, []*pocnetv1.ReceiptEntry{{
				EnvelopeId: msgs[0].header.GetId(), EnvelopeDigest: msgs[0].built.Digest, Outcome: pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED,
			}})
			if err != nil {
				t.Fatal(err)
			}
			tr.Entries[0].Receipt = rs[0]
		}, 1, "not a signing key of XBB"},
		{"response removed from the middle", func(_ *testing.T, tr *pocnetv1.Transcript) {
			tr.Entries = append(tr.Entries[:2], tr.Entries[3])
		}, 3, "answers " + msgs[2].header.GetId() + ", which is no earlier entry"},
		{"opening communication removed", func(_ *testing.T, tr *pocnetv1.Transcript) {
			tr.Entries = tr.Entries[1:]
		}, 1, "must be the communication that opens thread"},
		{"entries out of order", func(_ *testing.T, tr *pocnetv1.Transcript) {
			tr.Entries[2], tr.Entries[3] = tr.Entries[3], tr.Entries[2]
		}, 3, "which is no earlier entry"},
		{"entry repeated", func(_ *testing.T, tr *pocnetv1.Transcript) {
			tr.Entries = append(tr.Entries, tr.Entries[1])
		}, 5, "repeats the envelope id of entry 2"},
		{"envelope of another thread", func(_ *testing.T, tr *pocnetv1.Transcript) {
			m := otherThread[1]
			tr.Entries[1] = &pocnetv1.TranscriptEntry{Envelope: m.built.Envelope, PayloadKey: m.built.PayloadKey, Receipt: m.receipt}
		}, 2, "belongs to thread " + otherThread[0].header.GetId()},
		{"entry without envelope", func(_ *testing.T, tr *pocnetv1.Transcript) {
			tr.Entries[3].Envelope = nil
		}, 4, "no envelope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := proto.Clone(tr).(*pocnetv1.Transcript)
			tc.doctor(t, d)
			_, err := transcript.Verify(d, f.dir)
			t.Log(err)
			var ee *transcript.EntryError
			if !errors.As(err, &ee) || !errors.Is(err, transcript.ErrInvalid) {
				t.Fatalf("error %v, want an EntryError", err)
			}
			if ee.Entry != tc.entry || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q names entry %d, want entry %d and %q", err, ee.Entry, tc.entry, tc.want)
			}
		})
	}
	if _, err := transcript.Verify(tr, f.dir); err != nil {
		t.Fatalf("the honest transcript was changed by the tests: %v", err)
	}
}

func TestVerifyRejectsDoctoredTranscriptFields(t *testing.T) {
	f := newFixture(t)
	tr, _ := f.honest(t)
	tests := []struct {
		name   string
		doctor func(tr *pocnetv1.Transcript)
		want   string
	}{
		{"exported by a third state", func(tr *pocnetv1.Transcript) { tr.ExportedByState = "XCC" }, `exported by "XCC"`},
		{"other federation", func(tr *pocnetv1.Transcript) { tr.FederationId = "elsewhere.example" }, "federation"},
		{"no entries", func(tr *pocnetv1.Transcript) { tr.Entries = nil }, "no entries"},
		{"no export time", func(tr *pocnetv1.Transcript) { tr.ExportedAt = nil }, "exported_at"},
		{"other thread id", func(tr *pocnetv1.Transcript) { tr.ThreadId = tr.Entries[1].GetEnvelope().String() }, "entry 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := proto.Clone(tr).(*pocnetv1.Transcript)
			tc.doctor(d)
			if _, err := transcript.Verify(d, f.dir); !errors.Is(err, transcript.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := transcript.Verify(nil, f.dir); !errors.Is(err, transcript.ErrInvalid) {
		t.Errorf("nil transcript: %v", err)
	}
}

func TestVerifyDisclosure(t *testing.T) {
	f := newFixture(t)
	tr, _ := f.honest(t)
	const purpose = "Court of Examplia, case 2026/17"

	d, err := transcript.VerifyDisclosure(f.bundle(t, tr, purpose, "XAA", "XBB"), f.dir)
	if err != nil {
		t.Fatalf("bundle with both consents: %v", err)
	}
	if d.Purpose != purpose || len(d.Consents) != 2 || len(d.Missing) != 0 || len(d.Report.Entries) != 4 {
		t.Errorf("disclosure: %+v", d)
	}
	// Either state may consent first.
	if _, err := transcript.VerifyDisclosure(f.bundle(t, tr, purpose, "XBB", "XAA"), f.dir); err != nil {
		t.Errorf("consents in the other order: %v", err)
	}

	digestOf := func(b *pocnetv1.DisclosureBundle) []byte { return transcript.Digest(b.GetTranscript()) }
	at := tr.GetExportedAt().AsTime().Add(time.Minute)
	tests := []struct {
		name string
		make func() *pocnetv1.DisclosureBundle
		want string
	}{
		{"one state alone", func() *pocnetv1.DisclosureBundle { return f.bundle(t, tr, purpose, "XAA") }, "consent of XBB is missing"},
		{"the other state alone", func() *pocnetv1.DisclosureBundle { return f.bundle(t, tr, purpose, "XBB") }, "consent of XAA is missing"},
		{"no consent", func() *pocnetv1.DisclosureBundle { return f.bundle(t, tr, purpose) }, "consents of XAA and XBB are missing"},
		{"XAA forges XBB's consent with its own key", func() *pocnetv1.DisclosureBundle {
			b := f.bundle(t, tr, purpose, "XAA")
			return withConsent(b, envelope.SignConsent(f.signer["XAA"], digestOf(b), "XBB", at, purpose))
		}, "consent of XBB: bad signature: consent: key id"},
		{"XAA names XBB's key but signs with its own", func() *pocnetv1.DisclosureBundle {
			b := f.bundle(t, tr, purpose, "XAA")
			c := envelope.SignConsent(f.signer["XAA"], digestOf(b), "XBB", at, purpose)
			c.KeyId = f.signer["XBB"].KeyID()
			return withConsent(b, c)
		}, "consent of XBB: bad signature: consent signature does not verify"},
		{"XBB's consent to another transcript", func() *pocnetv1.DisclosureBundle {
			b := f.bundle(t, tr, purpose, "XAA")
			return withConsent(b, envelope.SignConsent(f.signer["XBB"], transcript.Digest([]byte("other")), "XBB", at, purpose))
		}, "consent of XBB: bad signature"},
		{"transcript changed after both consented", func() *pocnetv1.DisclosureBundle {
			b := f.bundle(t, tr, purpose, "XAA", "XBB")
			d := proto.Clone(tr).(*pocnetv1.Transcript)
			d.Entries = d.Entries[:3]
			b.Transcript, _ = proto.Marshal(d)
			return b
		}, "consent of XAA: bad signature"},
		{"purposes differ", func() *pocnetv1.DisclosureBundle {
			b := f.bundle(t, tr, purpose, "XAA")
			return withConsent(b, envelope.SignConsent(f.signer["XBB"], digestOf(b), "XBB", at, "the press"))
		}, "both states consent to the same purpose"},
		{"purpose changed after signing", func() *pocnetv1.DisclosureBundle {
			b := f.bundle(t, tr, purpose, "XAA", "XBB")
			b.Consents[1].Purpose = "anyone"
			return b
		}, "consent of XBB: bad signature"},
		{"no purpose", func() *pocnetv1.DisclosureBundle { return f.bundle(t, tr, " ", "XAA", "XBB") }, "names no purpose"},
		{"consent of a third state", func() *pocnetv1.DisclosureBundle { return f.bundle(t, tr, purpose, "XAA", "XCC", "XBB") }, `consent 2 is of "XCC", which is not a party`},
		{"two consents of one state", func() *pocnetv1.DisclosureBundle { return f.bundle(t, tr, purpose, "XAA", "XAA", "XBB") }, "two consents of XAA"},
		{"consent signed before the transcript existed", func() *pocnetv1.DisclosureBundle {
			b := f.bundle(t, tr, purpose, "XAA")
			return withConsent(b, envelope.SignConsent(f.signer["XBB"], digestOf(b), "XBB", at.Add(-24*time.Hour), purpose))
		}, "before the transcript was exported"},
		{"no transcript", func() *pocnetv1.DisclosureBundle { return &pocnetv1.DisclosureBundle{} }, "no transcript"},
		{"transcript that does not decode", func() *pocnetv1.DisclosureBundle {
			return &pocnetv1.DisclosureBundle{Transcript: []byte{0x0a, 0xff}}
		}, "does not decode"},
		{"doctored transcript", func() *pocnetv1.DisclosureBundle {
			d := proto.Clone(tr).(*pocnetv1.Transcript)
			d.Entries[1].PayloadKey = d.Entries[2].PayloadKey
			return f.bundle(t, d, purpose, "XAA", "XBB")
		}, "entry 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := transcript.VerifyDisclosure(tc.make(), f.dir)
			t.Log(err)
			if !errors.Is(err, transcript.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}

	// CheckBundle takes a bundle still waiting for a consent, and says whose.
	d, err = transcript.CheckBundle(f.bundle(t, tr, purpose, "XBB"), f.dir)
	if err != nil || len(d.Missing) != 1 || d.Missing[0] != "XAA" || d.Purpose != purpose {
		t.Errorf("CheckBundle with XBB's consent: %+v, %v", d, err)
	}
}

func withConsent(b *pocnetv1.DisclosureBundle, c *pocnetv1.Consent) *pocnetv1.DisclosureBundle {
	b.Consents = append(b.Consents, c)
	return b
}

func TestMarshalRoundTrip(t *testing.T) {
	f := newFixture(t)
	tr, _ := f.honest(t)
	js, err := transcript.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	again, err := transcript.Marshal(tr)
	if err != nil || !bytes.Equal(js, again) {
		t.Error("Marshal is not stable")
	}
	got, err := transcript.Unmarshal(js)
	if err != nil || !proto.Equal(got, tr) {
		t.Fatalf("JSON round trip: %v", err)
	}
	bin, _ := proto.Marshal(tr)
	if got, err := transcript.Unmarshal(bin); err != nil || !proto.Equal(got, tr) {
		t.Fatalf("binary round trip: %v", err)
	}
	if _, err := transcript.Unmarshal([]byte(`{"threadId": "x", "extra": 1}`)); err == nil {
		t.Error("unknown JSON field accepted")
	}
	b := f.bundle(t, tr, "court", "XAA", "XBB")
	bjs, err := transcript.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := transcript.UnmarshalBundle(bjs)
	if err != nil || !proto.Equal(gb, b) {
		t.Fatalf("bundle round trip: %v", err)
	}
	if _, err := transcript.VerifyDisclosure(gb, f.dir); err != nil {
		t.Errorf("bundle after a JSON round trip: %v", err)
	}
}
