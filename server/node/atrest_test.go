package node_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestDataDirsHoldNoContent sends a communication and its answer between
// two nodes, with canaries in subjects, bodies, an indicator and request
// ids, stops the nodes, and reads every file of both data directories: no
// canary may be there in clear. A control canary written to a file proves
// that the search can fail.
func TestDataDirsHoldNoContent(t *testing.T) {
	const (
		subject   = "CANARY-NODE-SUBJECT-4c1e97"
		body      = "CANARY-NODE-BODY-b02f6a"
		indicator = "CANARY-NODE-INDICATOR-198.51.100.77"
		requestID = "CANARY-NODE-REQUEST-e85d13"
		answer    = "CANARY-NODE-ANSWER-7a93c0"
	)
	canaries := []string{subject, body, indicator, requestID, answer}
	f := testfed.Start(t, testfed.Options{})
	a := f.Contact("XAA", "technical")
	b := f.Contact("XBB", "technical")
	comm := rfi(subject)
	comm.Body = body
	comm.Incident = &pocnetv1.IncidentDetails{Indicators: []*pocnetv1.Indicator{{Type: "ipv4-addr", Value: indicator}}}
	resp, err := a.SendCommunication(ctx(t), &pocnetv1.SendCommunicationRequest{RequestId: requestID, ToState: "XBB", ToRole: "technical", Communication: comm})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetMessage().GetId()
	waitStatus(t, a, id, pocnetv1.Status_STATUS_DELIVERED)
	if _, err := b.Respond(ctx(t), &pocnetv1.RespondRequest{Id: id, RequestId: requestID + "-answer", Communication: &pocnetv1.Communication{
		Subject: "Re: " + subject, Body: answer, Language: "en",
	}}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a, id, pocnetv1.Status_STATUS_RESPONDED)
	if got := get(t, b, id); got.GetCommunication().GetBody() != body {
		t.Fatalf("recipient reads body %q", got.GetCommunication().GetBody())
	}
	f.StopAll()

	for _, state := range []string{"XAA", "XBB"} {
		dir := f.Node(state).Config.DataDir
		if found := grepDir(t, dir, canaries); len(found) != 0 {
			t.Errorf("%s data directory holds content in clear: %v", state, found)
		}
	}
	control := filepath.Join(f.Node("XAA").Config.DataDir, "control")
	if err := os.WriteFile(control, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if found := grepDir(t, f.Node("XAA").Config.DataDir, canaries); len(found) != 1 {
		t.Fatalf("control: found %v, want the body canary in the control file", found)
	}
}

func grepDir(t *testing.T, dir string, needles []string) []string {
	t.Helper()
	var found []string
	files := 0
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(data, []byte(n)) {
				found = append(found, filepath.Base(path)+": "+n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no files under %s", dir)
	}
	return found
}
