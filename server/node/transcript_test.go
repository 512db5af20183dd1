package node_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/testfed"
	"github.com/pocnet/pocnet/internal/transcript"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// records returns a RecordService client of state's node for the operator
// acting for role.
func records(f *testfed.Federation, state, role string) pocnetv1.RecordServiceClient {
	return pocnetv1.NewRecordServiceClient(f.Dial(state, &f.Certs.State(state).Operator(role).TLS))
}

// offline loads the directory file the federation was written with, as
// anyone verifying a transcript away from any node does.
func offline(t *testing.T, f *testfed.Federation) *directory.Directory {
	t.Helper()
	d, err := directory.Load(filepath.Join(f.Dir, "directory.json"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// waitReceipt waits until the node behind c holds a receipt for id.
func waitReceipt(t *testing.T, c pocnetv1.ContactServiceClient, id string) {
	t.Helper()
	testfed.WaitFor(t, "a receipt for "+id, func() bool { return get(t, c, id).GetReceipt() != nil })
}

// conversation runs a thread between XAA and XBB through the nodes: XAA's
// communication (with handling code h), XBB's acknowledgement and response,
// XAA's acknowledgement of the response. It returns the four ids once both
// nodes hold a receipt for every envelope.
func conversation(t *testing.T, f *testfed.Federation, h pocnetv1.HandlingCode) []string {
	t.Helper()
	a, b := f.Contact("XAA", "technical"), f.Contact("XBB", "technical")
	c := rfi("Ransomware C2 at 203.0.113.7")
	c.HandlingCode = h
	sent := send(t, a, "XBB", "technical", c)
	waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	ack, err := b.Acknowledge(ctx(t), &pocnetv1.AcknowledgeRequest{Id: sent.GetId(), Note: "looking into it"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.Respond(ctx(t), &pocnetv1.RespondRequest{Id: sent.GetId(), Communication: &pocnetv1.Communication{
		Subject: "Re: Ransomware C2 at 203.0.113.7", Body: "We see it too; blocking.", Language: "en",
	}})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_RESPONDED)
	ack2, err := a.Acknowledge(ctx(t), &pocnetv1.AcknowledgeRequest{Id: resp.GetResponse().GetId(), Note: "thanks"})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{sent.GetId(), ack.GetAcknowledgement().GetId(), resp.GetResponse().GetId(), ack2.GetAcknowledgement().GetId()}
	for _, id := range ids {
		waitReceipt(t, a, id)
		waitReceipt(t, b, id)
	}
	return ids
}

func exportThread(t *testing.T, c pocnetv1.RecordServiceClient, id string) *pocnetv1.Transcript {
	t.Helper()
	resp, err := c.ExportThread(ctx(t), &pocnetv1.ExportThreadRequest{Id: id})
	if err != nil {
		t.Fatalf("export %s: %v", id, err)
	}
	return resp.GetTranscript()
}

func TestTranscriptExportAndVerify(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	ids := conversation(t, f, pocnetv1.HandlingCode_HANDLING_CODE_NO_JUDICIAL_USE_WITHOUT_CONSENT)
	dir := offline(t, f)

	// Any message of the thread names it.
	tr := exportThread(t, records(f, "XAA", "technical"), ids[2])
	rep, err := transcript.Verify(tr, dir)
	if err != nil {
		t.Fatalf("honest transcript: %v", err)
	}
	if rep.ThreadID != ids[0] || rep.ExportedBy != "XAA" || rep.States != [2]string{"XAA", "XBB"} || len(rep.Entries) != 4 {
		t.Fatalf("report: thread %s by %s, states %v, %d entries", rep.ThreadID, rep.ExportedBy, rep.States, len(rep.Entries))
	}
	wantTypes := []pocnetv1.EnvelopeType{pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT,
		pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE, pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT}
	for i, e := range rep.Entries {
		if e.Header.GetId() != ids[i] || e.Header.GetType() != wantTypes[i] {
			t.Errorf("entry %d: %s %v, want %s %v", i+1, e.Header.GetId(), e.Header.GetType(), ids[i], wantTypes[i])
		}
		if e.Receipt == nil || e.Receipt.Outcome != pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED {
			t.Errorf("entry %d: receipt %+v, want delivered", i+1, e.Receipt)
		}
	}
	if c := rep.Entries[0].Communication(); c.GetHandlingCode() != pocnetv1.HandlingCode_HANDLING_CODE_NO_JUDICIAL_USE_WITHOUT_CONSENT || c.GetSubject() != "Ransomware C2 at 203.0.113.7" {
		t.Errorf("entry 1: %v", c)
	}

	// The other state holds the same thread: the same entries, in the same
	// order, and receipts that verify just as well.
	trB := exportThread(t, records(f, "XBB", "technical"), ids[0])
	if len(trB.GetEntries()) != 4 {
		t.Fatalf("XBB's transcript has %d entries", len(trB.GetEntries()))
	}
	for i := range trB.GetEntries() {
		if !proto.Equal(trB.Entries[i].GetEnvelope(), tr.Entries[i].GetEnvelope()) || string(trB.Entries[i].GetPayloadKey()) != string(tr.Entries[i].GetPayloadKey()) {
			t.Errorf("entry %d differs between the two states' transcripts", i+1)
		}
	}
	if _, err := transcript.Verify(trB, dir); err != nil {
		t.Errorf("XBB's transcript: %v", err)
	}
	// An admin exports too.
	if _, err := transcript.Verify(exportThread(t, records(f, "XAA", "admin"), ids[0]), dir); err != nil {
		t.Errorf("admin's transcript: %v", err)
	}

	// Doctored copies are refused, naming the entry.
	reseal := func(t *testing.T, e *pocnetv1.TranscriptEntry) {
		p, err := envelope.Decode(e.Envelope, e.PayloadKey)
		if err != nil {
			t.Fatal(err)
		}
		p.GetCommunication().Subject = "We never said that"
		key := make([]byte, 32)
		rand.Read(key)
		e.Envelope.Payload, e.PayloadKey = seal(t, key, e.Envelope.Header, p), key
	}
	doctored := []struct {
		name   string
		doctor func(t *testing.T, tr *pocnetv1.Transcript)
		entry  int
		want   string
	}{
		{"flipped bit in a payload", func(_ *testing.T, tr *pocnetv1.Transcript) { tr.Entries[2].Envelope.Payload[30] ^= 0x10 }, 3, "signature does not verify"},
		{"subject changed, sealed again with a made-up key", func(t *testing.T, tr *pocnetv1.Transcript) { reseal(t, tr.Entries[2]) }, 3, "signature does not verify"},
		{"response removed", func(_ *testing.T, tr *pocnetv1.Transcript) { tr.Entries = append(tr.Entries[:2], tr.Entries[3]) }, 3, "which is no earlier entry"},
		{"receipts swapped", func(_ *testing.T, tr *pocnetv1.Transcript) {
			tr.Entries[1].Receipt, tr.Entries[2].Receipt = tr.Entries[2].Receipt, tr.Entries[1].Receipt
		}, 2, "receipt does not match"},
		{"payload key of another envelope", func(_ *testing.T, tr *pocnetv1.Transcript) { tr.Entries[3].PayloadKey = tr.Entries[1].PayloadKey }, 4, "does not open with the entry's payload key"},
	}
	for _, tc := range doctored {
		t.Run(tc.name, func(t *testing.T) {
			d := proto.Clone(tr).(*pocnetv1.Transcript)
			tc.doctor(t, d)
			_, err := transcript.Verify(d, dir)
			var ee *transcript.EntryError
			if !errors.As(err, &ee) || ee.Entry != tc.entry || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want entry %d: %q", err, tc.entry, tc.want)
			}
		})
	}
}

// seal seals a payload as a node does, under a key of the caller's choice.
func seal(t *testing.T, key, header []byte, p *pocnetv1.Payload) []byte {
	t.Helper()
	pb, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	g := gcm(t, key)
	nonce := make([]byte, g.NonceSize())
	rand.Read(nonce)
	return g.Seal(nonce, nonce, pb, header)
}

func TestExportRefusals(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	ids := conversation(t, f, pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION)
	tests := []struct {
		name, state, role, id, code, msg string
	}{
		{"other role", "XAA", "policy", ids[0], "PermissionDenied", `belongs to role "technical"`},
		{"unknown message", "XAA", "technical", "0198c0de-0000-7000-8000-000000000000", "NotFound", "not found"},
		{"not an id", "XAA", "technical", "thread-1", "InvalidArgument", "id:"},
		{"no id", "XBB", "technical", "", "InvalidArgument", "id: is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := records(f, tc.state, tc.role).ExportThread(ctx(t), &pocnetv1.ExportThreadRequest{Id: tc.id})
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	// A node is not an operator.
	asNode := pocnetv1.NewRecordServiceClient(f.Dial("XAA", &f.Certs.State("XBB").Node.TLS))
	_, err := asNode.ExportThread(ctx(t), &pocnetv1.ExportThreadRequest{Id: ids[0]})
	wantCode(t, err, "PermissionDenied", "only operators of XAA may call RecordService")
}

// TestNoOnwardDissemination: a thread holding a communication marked no
// onward dissemination is not exported, at either node, whichever message
// carries the mark; it leaves the two states only as a disclosure bundle.
func TestNoOnwardDissemination(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	ids := conversation(t, f, pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION)
	for _, st := range []string{"XAA", "XBB"} {
		for _, role := range []string{"technical", "admin"} {
			_, err := records(f, st, role).ExportThread(ctx(t), &pocnetv1.ExportThreadRequest{Id: ids[3]})
			wantCode(t, err, "FailedPrecondition", "message "+ids[0]+" (communication from XAA) is marked no onward dissemination")
			wantCode(t, err, "FailedPrecondition", "pocctl disclosure request "+ids[0])
		}
	}

	// The mark on a response holds the thread back just the same.
	a, b := f.Contact("XAA", "technical"), f.Contact("XBB", "technical")
	sent := send(t, a, "XBB", "technical", rfi("Phishing wave"))
	waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	resp, err := b.Respond(ctx(t), &pocnetv1.RespondRequest{Id: sent.GetId(), Communication: &pocnetv1.Communication{
		Subject: "Re: Phishing wave", Body: "Source identified; keep this between us.", Language: "en",
		HandlingCode: pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION,
	}})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a, sent.GetId(), pocnetv1.Status_STATUS_RESPONDED)
	_, err = records(f, "XAA", "technical").ExportThread(ctx(t), &pocnetv1.ExportThreadRequest{Id: sent.GetId()})
	wantCode(t, err, "FailedPrecondition", "message "+resp.GetResponse().GetId()+" (response from XBB) is marked no onward dissemination")

	// The disclosure path stays open, with both consents.
	req, err := records(f, "XAA", "admin").RequestDisclosure(ctx(t), &pocnetv1.RequestDisclosureRequest{Id: ids[0], Purpose: "Joint report to the OEWG"})
	if err != nil {
		t.Fatal(err)
	}
	done, err := records(f, "XBB", "admin").ConsentDisclosure(ctx(t), &pocnetv1.ConsentDisclosureRequest{Bundle: req.GetBundle()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := transcript.VerifyDisclosure(done.GetBundle(), offline(t, f)); err != nil {
		t.Errorf("bundle of a no-onward-dissemination thread with both consents: %v", err)
	}
}

func TestDisclosure(t *testing.T) {
	f := testfed.Start(t, testfed.Options{States: 3})
	ids := conversation(t, f, pocnetv1.HandlingCode_HANDLING_CODE_NO_JUDICIAL_USE_WITHOUT_CONSENT)
	dir := offline(t, f)
	adminA, adminB, adminC := records(f, "XAA", "admin"), records(f, "XBB", "admin"), records(f, "XCC", "admin")
	const purpose = "Court of Examplia, case 2026/17"

	req, err := adminA.RequestDisclosure(ctx(t), &pocnetv1.RequestDisclosureRequest{Id: ids[1], Purpose: purpose})
	if err != nil {
		t.Fatal(err)
	}
	half := req.GetBundle()
	if len(half.GetConsents()) != 1 || half.GetConsents()[0].GetState() != "XAA" || half.GetConsents()[0].GetPurpose() != purpose {
		t.Fatalf("requested bundle consents: %v", half.GetConsents())
	}
	// One state alone cannot produce a verifiable bundle.
	if _, err := transcript.VerifyDisclosure(half, dir); err == nil || !strings.Contains(err.Error(), "consent of XBB is missing") {
		t.Fatalf("bundle with XAA's consent only: %v", err)
	}
	resp, err := adminB.ConsentDisclosure(ctx(t), &pocnetv1.ConsentDisclosureRequest{Bundle: half})
	if err != nil {
		t.Fatal(err)
	}
	full := resp.GetBundle()
	d, err := transcript.VerifyDisclosure(full, dir)
	if err != nil {
		t.Fatalf("bundle with both consents: %v", err)
	}
	if d.Purpose != purpose || len(d.Consents) != 2 || d.Consents[1].State != "XBB" || len(d.Report.Entries) != 4 {
		t.Errorf("disclosure: purpose %q, consents %+v, %d entries", d.Purpose, d.Consents, len(d.Report.Entries))
	}
	// Consenting again changes nothing, at either node.
	for _, c := range []pocnetv1.RecordServiceClient{adminA, adminB} {
		again, err := c.ConsentDisclosure(ctx(t), &pocnetv1.ConsentDisclosureRequest{Bundle: full})
		if err != nil || !proto.Equal(again.GetBundle(), full) {
			t.Errorf("consent to a complete bundle: %v", err)
		}
	}

	// XAA forges XBB's consent with its own key: refused offline.
	sA := signer(t, f, "XAA").s
	forged := proto.Clone(half).(*pocnetv1.DisclosureBundle)
	forged.Consents = append(forged.Consents, envelope.SignConsent(sA, transcript.Digest(half.GetTranscript()), "XBB", time.Now(), purpose))
	if _, err := transcript.VerifyDisclosure(forged, dir); err == nil || !strings.Contains(err.Error(), "consent of XBB") || !strings.Contains(err.Error(), "not a signing key of XBB") {
		t.Errorf("bundle with a consent of XBB forged by XAA: %v", err)
	}

	// XAA leaves out its acknowledgement of the response (nothing answers
	// it, so the transcript alone still verifies) and consents to that: XBB
	// sees that it is not its own copy of the thread.
	tr, err := transcript.Unmarshal(half.GetTranscript())
	if err != nil {
		t.Fatal(err)
	}
	tr.Entries = tr.Entries[:3]
	short, _ := proto.MarshalOptions{Deterministic: true}.Marshal(tr)
	if _, err := transcript.Verify(tr, dir); err != nil {
		t.Fatalf("shortened transcript: %v", err)
	}
	partial := &pocnetv1.DisclosureBundle{Transcript: short, Consents: []*pocnetv1.Consent{
		envelope.SignConsent(sA, transcript.Digest(short), "XAA", time.Now(), purpose),
	}}

	// XAA, the recipient of XBB's answers, signs a new receipt for one of
	// them saying it was rejected: valid offline, but not the receipt XBB
	// holds.
	trR, err := transcript.Unmarshal(half.GetTranscript())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range trR.Entries {
		h, _ := envelope.DecodeHeader(e.GetEnvelope())
		if h.GetFromState() != "XBB" {
			continue
		}
		rs, err := envelope.SignReceipts(sA, "XBB", "XAA", time.Now(), []*pocnetv1.ReceiptEntry{{
			EnvelopeId: h.GetId(), EnvelopeDigest: envelope.Digest(e.GetEnvelope()),
			Outcome: pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_REJECTED, Reason: "never received",
		}})
		if err != nil {
			t.Fatal(err)
		}
		e.Receipt = rs[0]
		break
	}
	if _, err := transcript.Verify(trR, dir); err != nil {
		t.Fatalf("transcript with a receipt re-signed by XAA: %v", err)
	}
	resigned, _ := proto.MarshalOptions{Deterministic: true}.Marshal(trR)
	otherReceipt := &pocnetv1.DisclosureBundle{Transcript: resigned, Consents: []*pocnetv1.Consent{
		envelope.SignConsent(sA, transcript.Digest(resigned), "XAA", time.Now(), purpose),
	}}

	// A bit flipped in the response.
	trX := proto.Clone(tr).(*pocnetv1.Transcript)
	trX.Entries[2].Envelope.Payload[0] ^= 1

	tests := []struct {
		name   string
		c      pocnetv1.RecordServiceClient
		call   func(c pocnetv1.RecordServiceClient) error
		code   string
		substr string
	}{
		{"transcript differs from XBB's copy", adminB, func(c pocnetv1.RecordServiceClient) error {
			_, err := c.ConsentDisclosure(ctx(t), &pocnetv1.ConsentDisclosureRequest{Bundle: partial})
			return err
		}, "FailedPrecondition", "differs from XBB's own copy of thread " + ids[0] + ": it lacks " + ids[3]},
		{"a receipt XBB does not hold", adminB, func(c pocnetv1.RecordServiceClient) error {
			_, err := c.ConsentDisclosure(ctx(t), &pocnetv1.ConsentDisclosureRequest{Bundle: otherReceipt})
			return err
		}, "FailedPrecondition", "carries another receipt than the one this node holds"},
		{"no consent of the requesting state", adminB, func(c pocnetv1.RecordServiceClient) error {
			_, err := c.ConsentDisclosure(ctx(t), &pocnetv1.ConsentDisclosureRequest{Bundle: &pocnetv1.DisclosureBundle{Transcript: half.GetTranscript()}})
			return err
		}, "FailedPrecondition", "carries no consent of XAA"},
		{"forged consent", adminB, func(c pocnetv1.RecordServiceClient) error {
			_, err := c.ConsentDisclosure(ctx(t), &pocnetv1.ConsentDisclosureRequest{Bundle: forged})
			return err
		}, "InvalidArgument", "consent of XBB"},
		{"doctored transcript", adminB, func(c pocnetv1.RecordServiceClient) error {
			raw, _ := proto.Marshal(trX)
			_, err := c.ConsentDisclosure(ctx(t), &pocnetv1.ConsentDisclosureRequest{Bundle: &pocnetv1.DisclosureBundle{Transcript: raw,
				Consents: []*pocnetv1.Consent{envelope.SignConsent(sA, transcript.Digest(raw), "XAA", time.Now(), purpose)}}})
			return err
		}, "InvalidArgument", "entry 3"},
		{"no bundle", adminB, func(c pocnetv1.RecordServiceClient) error {
			_, err := c.ConsentDisclosure(ctx(t), &pocnetv1.ConsentDisclosureRequest{})
			return err
		}, "InvalidArgument", "bundle: is required"},
		{"a state not party to the thread", adminC, func(c pocnetv1.RecordServiceClient) error {
			_, err := c.ConsentDisclosure(ctx(t), &pocnetv1.ConsentDisclosureRequest{Bundle: half})
			return err
		}, "FailedPrecondition", "XCC is not a party"},
		{"a PoC operator requests", records(f, "XAA", "technical"), func(c pocnetv1.RecordServiceClient) error {
			_, err := c.RequestDisclosure(ctx(t), &pocnetv1.RequestDisclosureRequest{Id: ids[0], Purpose: purpose})
			return err
		}, "PermissionDenied", "only its admin operators may call"},
		{"a PoC operator consents", records(f, "XBB", "technical"), func(c pocnetv1.RecordServiceClient) error {
			_, err := c.ConsentDisclosure(ctx(t), &pocnetv1.ConsentDisclosureRequest{Bundle: half})
			return err
		}, "PermissionDenied", "only its admin operators may call"},
		{"no purpose", adminA, func(c pocnetv1.RecordServiceClient) error {
			_, err := c.RequestDisclosure(ctx(t), &pocnetv1.RequestDisclosureRequest{Id: ids[0], Purpose: "  "})
			return err
		}, "InvalidArgument", "purpose: is required"},
		{"a thread the node does not hold", adminC, func(c pocnetv1.RecordServiceClient) error {
			_, err := c.RequestDisclosure(ctx(t), &pocnetv1.RequestDisclosureRequest{Id: ids[0], Purpose: purpose})
			return err
		}, "NotFound", "not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.call(tc.c), tc.code, tc.substr)
		})
	}
}

func gcm(t *testing.T, key []byte) cipher.AEAD {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// Communications sent at the same time are signed together by the sending
// node: the recipient stores them as signed, each one's transcript verifies
// alone, offline, and some share a signature.
func TestConcurrentSendsSignedTogether(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	a := f.Contact("XAA", "technical")
	const senders, each = 16, 4
	ids := make(chan string, senders*each)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for j := range each {
				ids <- send(t, a, "XBB", "technical", rfi(fmt.Sprintf("Burst %d.%d", i, j))).GetId()
			}
		})
	}
	wg.Wait()
	close(ids)
	dir := offline(t, f)
	b := records(f, "XBB", "technical")
	signatures := map[string]int{}
	largest := uint32(0)
	n := 0
	for id := range ids {
		waitReceipt(t, a, id)
		tr := exportThread(t, b, id)
		if _, err := transcript.Verify(tr, dir); err != nil {
			t.Fatalf("transcript of %s exported by XBB: %v", id, err)
		}
		// Signed alone (no tree) or in a tree, it verified above.
		env := tr.GetEntries()[0].GetEnvelope()
		signatures[string(env.GetSignature().GetValue())]++
		largest = max(largest, env.GetTree().GetSize())
		n++
	}
	if n != senders*each {
		t.Fatalf("%d messages sent, want %d", n, senders*each)
	}
	if len(signatures) >= n || largest < 2 {
		t.Fatalf("%d messages sent at once carry %d distinct signatures, largest tree %d: none were signed together", n, len(signatures), largest)
	}
	t.Logf("%d messages, %d signatures, largest tree %d", n, len(signatures), largest)
}
