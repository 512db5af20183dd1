package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/client/internal/pocctl"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/testfed"
	"github.com/pocnet/pocnet/internal/transcript"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// pocctlFail runs pocctl in-process and returns its exit code and output,
// for runs that are meant to fail.
func pocctlFail(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := pocctl.Run(context.Background(), args, pocctl.Env{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut,
		Getenv: func(string) string { return "" },
	})
	return code, out.String(), errOut.String()
}

// answered sends a communication from a to b with handling code h, has b
// acknowledge and respond, and waits until a and b both hold all three
// envelopes with their receipts: a transcript is checked against the other
// state's copy, and a sender records a receipt a moment after the
// recipient issued it. It returns the communication's id.
func answered(t *testing.T, a, b *client.Client, to, subject string, h pocnetv1.HandlingCode) string {
	t.Helper()
	ctx := context.Background()
	req := rfi(to, subject)
	req.Communication.HandlingCode = h
	m, err := a.Send(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	testfed.WaitFor(t, subject+" delivered with a receipt", func() bool {
		got, err := a.Get(ctx, m.GetId())
		return err == nil && got.GetReceipt() != nil
	})
	if _, err := b.Acknowledge(ctx, m.GetId(), "looking into it"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Respond(ctx, m.GetId(), &pocnetv1.Communication{Subject: "Re: " + subject, Body: "Confirmed; blocking.", Language: "en"}, ""); err != nil {
		t.Fatal(err)
	}
	withReceipts := func(c *client.Client) bool {
		th, err := c.Thread(ctx, m.GetId())
		if err != nil || len(th) != 3 {
			return false
		}
		for _, e := range th {
			if e.GetReceipt() == nil {
				return false
			}
		}
		return true
	}
	testfed.WaitFor(t, subject+" answered, every envelope with its receipt on both sides", func() bool {
		return withReceipts(a) && withReceipts(b)
	})
	return m.GetId()
}

func TestRecordsThroughTheLibrary(t *testing.T) {
	noLeaks(t)
	fed := testfed.Start(t, testfed.Options{Quiet: true})
	xaa, xbb := fed.States()[0], fed.States()[1]
	a, b := dial(t, fed, xaa, "technical"), dial(t, fed, xbb, "technical")
	adminA, adminB := dial(t, fed, xaa, "admin"), dial(t, fed, xbb, "admin")
	ctx := context.Background()
	id := answered(t, a, b, xbb, "Scanning from 198.51.100.0/24", pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION)

	tr, err := a.ExportThread(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.GetEntries()) != 3 || tr.GetThreadId() != id || tr.GetExportedByState() != xaa {
		t.Errorf("transcript: %d entries of thread %s by %s", len(tr.GetEntries()), tr.GetThreadId(), tr.GetExportedByState())
	}
	_, err = a.RequestDisclosure(ctx, id, "court")
	if status.Code(err) != codes.PermissionDenied || !strings.HasPrefix(err.Error(), "request disclosure of thread of "+id+": ") {
		t.Errorf("RequestDisclosure by a PoC operator: %v", err)
	}
	half, err := adminA.RequestDisclosure(ctx, id, "court")
	if err != nil {
		t.Fatal(err)
	}
	full, err := adminB.ConsentDisclosure(ctx, half)
	if err != nil {
		t.Fatal(err)
	}
	if len(full.GetConsents()) != 2 || !bytes.Equal(full.GetTranscript(), half.GetTranscript()) {
		t.Errorf("consented bundle: %d consents, transcript kept: %v", len(full.GetConsents()), bytes.Equal(full.GetTranscript(), half.GetTranscript()))
	}
}

func TestPocctlTranscriptAndDisclosure(t *testing.T) {
	noLeaks(t)
	fed := testfed.Start(t, testfed.Options{Quiet: true})
	xaa, xbb := fed.States()[0], fed.States()[1]
	a, b := dial(t, fed, xaa, "technical"), dial(t, fed, xbb, "technical")
	cfgA, cfgAdminA, cfgAdminB := fed.OperatorConfigFile(xaa, "technical"), fed.OperatorConfigFile(xaa, "admin"), fed.OperatorConfigFile(xbb, "admin")
	dirFile := filepath.Join(fed.Dir, "directory.json")
	work := t.TempDir()
	file := func(name string) string { return filepath.Join(work, name) }
	// Verifying needs no node: the configuration pocctl would dial with
	// does not even exist.
	noNode := file("no-such-pocctl.yaml")

	id := answered(t, a, b, xbb, "Ransomware C2 at 203.0.113.7", pocnetv1.HandlingCode_HANDLING_CODE_NO_JUDICIAL_USE_WITHOUT_CONSENT)

	out, _ := pocctlRun(t, cfgA, "thread", "export", id, "--out", file("t.json"))
	contains(t, "thread export", out, "Exported thread "+id+": 3 envelope(s), exported by "+xaa, "pocctl thread verify")
	if st, err := os.Stat(file("t.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("transcript file: %v, mode %v; want readable by its owner only", err, st.Mode().Perm())
	}
	out, _ = pocctlRun(t, noNode, "thread", "verify", file("t.json"), "--directory", dirFile)
	contains(t, "thread verify", out,
		"Transcript of thread "+id+": VERIFIED against "+dirFile,
		"Between "+xaa+" and "+xbb,
		"Entries 3: every signature, payload and receipt checks out",
		"[1] ", xaa+"/technical → "+xbb+"/technical communication",
		"request for information, urgent",
		"Handling: no judicial use without consent",
		"Subject: Ransomware C2 at 203.0.113.7",
		"| Do you see this too?",
		"Delivered to "+xbb+" at ",
		"[2] ", "acknowledgement to [1]", "Note: looking into it",
		"[3] ", "response to [1]", "Subject: Re: Ransomware C2 at 203.0.113.7", "Handling: no restriction",
		"Delivered to "+xaa+" at ")

	out, _ = pocctlRun(t, noNode, "-o", "json", "thread", "verify", file("t.json"), "--directory", dirFile)
	var rep struct {
		Verified bool `json:"verified"`
		Entries  []struct {
			Type    string `json:"type"`
			Receipt *struct {
				Outcome string `json:"outcome"`
			} `json:"receipt"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.Verified || len(rep.Entries) != 3 {
		t.Fatalf("verify json: %v\n%s", err, out)
	}
	for i, e := range rep.Entries {
		if e.Receipt == nil || e.Receipt.Outcome != "DELIVERY_OUTCOME_DELIVERED" {
			t.Errorf("entry %d (%s): receipt %+v", i+1, e.Type, e.Receipt)
		}
	}

	// Without --out the transcript goes to standard output.
	out, _ = pocctlRun(t, cfgA, "thread", "export", id)
	if tr, err := transcript.Unmarshal([]byte(out)); err != nil || len(tr.GetEntries()) != 3 {
		t.Errorf("export to standard output: %v", err)
	}

	// A doctored transcript exits 1 and names the entry.
	data, _ := os.ReadFile(file("t.json"))
	tr, err := transcript.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	tr.Entries[2].Envelope.Payload[40] ^= 0x01
	bad, _ := transcript.Marshal(tr)
	os.WriteFile(file("bad.json"), bad, 0o600)
	respID, _ := envelope.DecodeHeader(tr.Entries[2].GetEnvelope())
	code, _, errOut := pocctlFail("thread", "verify", file("bad.json"), "--directory", dirFile)
	if code != pocctl.ExitError || !strings.HasPrefix(errOut, "pocctl: "+file("bad.json")+" does not verify: entry 3 ("+respID.GetId()+"): the envelope's signature does not verify") {
		t.Errorf("doctored transcript: exit %d, stderr %q", code, errOut)
	}

	// A thread marked no onward dissemination is not exported; the
	// disclosure path is the way out, with both consents.
	id2 := answered(t, a, b, xbb, "Source of the leak", pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION)
	code, _, errOut = pocctlFail("--config", cfgA, "thread", "export", id2, "--out", file("t2.json"))
	if code != pocctl.ExitError || !strings.Contains(errOut, "is marked no onward dissemination") ||
		!strings.Contains(errOut, "pocctl disclosure request "+id2) || !strings.HasSuffix(errOut, "(FailedPrecondition)\n") {
		t.Errorf("export of a no-onward thread: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(file("t2.json")); err == nil {
		t.Error("a refused export left a file")
	}

	const purpose = "Joint report to the Court of Examplia, case 2026/17"
	code, _, errOut = pocctlFail("--config", cfgA, "disclosure", "request", id2, "--purpose", purpose)
	if code != pocctl.ExitError || !strings.Contains(errOut, "only its admin operators may call") {
		t.Errorf("request by a PoC operator: exit %d, stderr %q", code, errOut)
	}
	out, _ = pocctlRun(t, cfgAdminA, "disclosure", "request", id2, "--purpose", purpose, "--out", file("req.json"))
	contains(t, "disclosure request", out, "Consent of "+xaa+" signed, for the purpose: "+purpose,
		"Not valid yet: the consent of "+xbb+" is missing", "pocctl disclosure consent "+file("req.json"))
	code, _, errOut = pocctlFail("disclosure", "verify", file("req.json"), "--directory", dirFile)
	if code != pocctl.ExitError || !strings.Contains(errOut, "does not verify: consent of "+xbb+" is missing") {
		t.Errorf("verify with one consent: exit %d, stderr %q", code, errOut)
	}

	out, _ = pocctlRun(t, cfgAdminB, "disclosure", "consent", file("req.json"), "--out", file("bundle.json"))
	contains(t, "disclosure consent", out, "Consent of "+xaa+" and "+xbb+" signed", "Both states consented", "pocctl disclosure verify "+file("bundle.json"))
	out, _ = pocctlRun(t, noNode, "disclosure", "verify", file("bundle.json"), "--directory", dirFile)
	contains(t, "disclosure verify", out, "Disclosure bundle: VERIFIED against "+dirFile, "Purpose "+purpose,
		"Consent of "+xaa+" signed at ", "Consent of "+xbb+" signed at ", "Transcript SHA-256 ",
		"Transcript of thread "+id2+": VERIFIED", "Handling: no onward dissemination")
	out, _ = pocctlRun(t, noNode, "-o", "json", "disclosure", "verify", file("bundle.json"), "--directory", dirFile)
	var dj struct {
		Verified bool   `json:"verified"`
		Purpose  string `json:"purpose"`
		Consents []struct {
			State string `json:"state"`
		} `json:"consents"`
	}
	if err := json.Unmarshal([]byte(out), &dj); err != nil || !dj.Verified || dj.Purpose != purpose || len(dj.Consents) != 2 {
		t.Errorf("disclosure verify json: %v\n%s", err, out)
	}

	// XAA forges XBB's consent with its own key: refused.
	data, _ = os.ReadFile(file("req.json"))
	req, err := transcript.UnmarshalBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	sA, err := envelope.NewSigner(fed.Certs.State(xaa).SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	req.Consents = append(req.Consents, envelope.SignConsent(sA, transcript.Digest(req.GetTranscript()), xbb, time.Now(), purpose))
	forged, _ := transcript.Marshal(req)
	os.WriteFile(file("forged.json"), forged, 0o600)
	code, _, errOut = pocctlFail("disclosure", "verify", file("forged.json"), "--directory", dirFile)
	if code != pocctl.ExitError || !strings.Contains(errOut, "consent of "+xbb+": bad signature") {
		t.Errorf("forged consent: exit %d, stderr %q", code, errOut)
	}

	// XBB's node refuses to consent to a transcript that is not its copy.
	tr2, err := transcript.Unmarshal(req.GetTranscript())
	if err != nil {
		t.Fatal(err)
	}
	tr2.Entries = tr2.Entries[:2]
	short, _ := proto.MarshalOptions{Deterministic: true}.Marshal(tr2)
	shortBundle, _ := transcript.Marshal(&pocnetv1.DisclosureBundle{Transcript: short, Consents: []*pocnetv1.Consent{
		envelope.SignConsent(sA, transcript.Digest(short), xaa, time.Now(), purpose),
	}})
	os.WriteFile(file("short.json"), shortBundle, 0o600)
	code, _, errOut = pocctlFail("--config", cfgAdminB, "disclosure", "consent", file("short.json"), "--out", file("short-bundle.json"))
	if code != pocctl.ExitError || !strings.Contains(errOut, "differs from "+xbb+"'s own copy") || !strings.HasSuffix(errOut, "(FailedPrecondition)\n") {
		t.Errorf("consent to a shortened transcript: exit %d, stderr %q", code, errOut)
	}
}
