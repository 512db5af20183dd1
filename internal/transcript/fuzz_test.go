package transcript_test

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/transcript"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// FuzzVerifyTranscript feeds arbitrary files, as anyone could hand them to
// pocctl thread verify, to the transcript decoder and verifier: it must
// never panic, and never accept an envelope or receipt that was not signed.
func FuzzVerifyTranscript(f *testing.F) {
	fx := newFixture(f)
	tr, msgs := fx.honest(f)
	signed := map[string]bool{}
	attested := map[string]bool{} // receipt body and entry, as signed
	for _, m := range msgs {
		signed[string(m.built.Digest)] = true
		attested[string(m.receipt.GetBody())+"|"+string(m.receipt.GetEntry())] = true
	}
	bin, _ := proto.Marshal(tr)
	js, _ := transcript.Marshal(tr)
	f.Add(bin)
	f.Add(js)
	f.Add(bin[:len(bin)/2])
	f.Add([]byte{})
	f.Add([]byte("{}"))
	doctored := proto.Clone(tr).(*pocnetv1.Transcript)
	doctored.Entries = append(doctored.Entries[:1], doctored.Entries[2:]...)
	d, _ := proto.Marshal(doctored)
	f.Add(d)
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := transcript.Unmarshal(data)
		if err != nil {
			return
		}
		rep, err := transcript.Verify(tr, fx.dir)
		if err != nil {
			return
		}
		if len(rep.Entries) != len(tr.GetEntries()) {
			t.Fatalf("report of %d entries for %d", len(rep.Entries), len(tr.GetEntries()))
		}
		for i, e := range tr.GetEntries() {
			if !signed[string(envelope.Digest(e.GetEnvelope()))] {
				t.Fatalf("entry %d accepted, but its envelope was never signed", i+1)
			}
			if r := e.GetReceipt(); r != nil && !attested[string(r.GetBody())+"|"+string(r.GetEntry())] {
				t.Fatalf("entry %d: accepted a receipt that was never signed", i+1)
			}
		}
	})
}

// FuzzVerifyDisclosure feeds arbitrary files to the bundle decoder and
// verifier: it must never panic, and never accept a bundle without the
// consent of both states over the transcript they consented to.
func FuzzVerifyDisclosure(f *testing.F) {
	fx := newFixture(f)
	tr, _ := fx.honest(f)
	full := fx.bundle(f, tr, "Court of Examplia, case 2026/17", "XAA", "XBB")
	bin, _ := proto.Marshal(full)
	js, _ := transcript.Marshal(full)
	f.Add(bin)
	f.Add(js)
	one, _ := proto.Marshal(fx.bundle(f, tr, "Court of Examplia, case 2026/17", "XAA"))
	f.Add(one)
	forged := fx.bundle(f, tr, "Court of Examplia, case 2026/17", "XAA")
	forged.Consents = append(forged.Consents, envelope.SignConsent(fx.signer["XAA"], transcript.Digest(forged.GetTranscript()), "XBB",
		tr.GetExportedAt().AsTime(), "Court of Examplia, case 2026/17"))
	fb, _ := proto.Marshal(forged)
	f.Add(fb)
	f.Add(bin[:len(bin)-7])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := transcript.UnmarshalBundle(data)
		if err != nil {
			return
		}
		d, err := transcript.VerifyDisclosure(b, fx.dir)
		if err != nil {
			return
		}
		// Only the honest transcript bytes were ever consented to.
		if !bytes.Equal(b.GetTranscript(), full.GetTranscript()) {
			t.Fatal("accepted a bundle whose transcript neither state consented to")
		}
		if len(d.Consents) != 2 || d.Consents[0].State == d.Consents[1].State {
			t.Fatalf("accepted a bundle with consents %+v", d.Consents)
		}
	})
}
