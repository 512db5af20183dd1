package client_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/client/internal/pocctl"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// TestMain starts one federation for the runnable examples, which read
// their configuration from the variables it sets.
func TestMain(m *testing.M) {
	fed, stop, err := testfed.StartMain(testfed.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "examples: start the federation:", err)
		os.Exit(1)
	}
	states := fed.States()
	exampleConfig = fed.OperatorConfigFile(states[0], "technical")
	exampleRecipientConfig = fed.OperatorConfigFile(states[1], "technical")
	exampleAdminConfig = fed.OperatorConfigFile(states[0], "admin")
	exampleTo = states[1]
	code := 1
	if err := seedExample(); err != nil {
		fmt.Fprintln(os.Stderr, "examples: seed the federation:", err)
	} else if err := seedProposal(fed.OperatorConfigFile(states[1], "admin")); err != nil {
		fmt.Fprintln(os.Stderr, "examples: seed a proposal:", err)
	} else {
		code = m.Run()
	}
	stop()
	os.Exit(code)
}

// seedExample sends one communication to the recipient of the examples, so
// that each example also runs alone.
func seedExample() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := client.LoadConfig(exampleConfig)
	if err != nil {
		return err
	}
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Send(ctx, rfi(exampleTo, "Seed: scanning from 198.51.100.0/24"))
	return err
}

// seedProposal has the second state's admin propose a rule change, which
// ExampleClient_FindProposal finds and signs at the first state's node,
// and waits until that node holds it.
func seedProposal(proposerConfig string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(path string) (*client.Client, error) {
		cfg, err := client.LoadConfig(path)
		if err != nil {
			return nil, err
		}
		return client.Dial(ctx, cfg)
	}
	proposer, err := dial(proposerConfig)
	if err != nil {
		return err
	}
	defer proposer.Close()
	p, err := proposer.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Rule{Rule: &pocnetv1.DecisionRule{
		Rule: &pocnetv1.DecisionRule_Consensus{Consensus: &pocnetv1.ConsensusRule{}}, SilencePeriod: durationpb.New(72 * time.Hour),
	}}})
	if err != nil {
		return err
	}
	exampleProposal = hex.EncodeToString(p.GetHash()[:4])
	signer, err := dial(exampleAdminConfig)
	if err != nil {
		return err
	}
	defer signer.Close()
	for {
		_, err := signer.FindProposal(ctx, exampleProposal)
		if !errors.Is(err, client.ErrNoProposal) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the proposal never reached the first state's node: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func rfi(to, subject string) *pocnetv1.SendCommunicationRequest {
	return &pocnetv1.SendCommunicationRequest{
		ToState: to,
		ToRole:  "technical",
		Communication: &pocnetv1.Communication{
			Kind:         pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION,
			Urgency:      pocnetv1.Urgency_URGENCY_URGENT,
			Subject:      subject,
			Body:         "Do you see this too?",
			Language:     "en",
			HandlingCode: pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION,
		},
	}
}

// noLeaks checks, after every cleanup of the test, that no goroutine started
// by the test is left (the examples' federation is already running).
func noLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func dial(t *testing.T, fed *testfed.Federation, state, role string) *client.Client {
	t.Helper()
	cfg, err := client.LoadConfig(fed.OperatorConfigFile(state, role))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial %s/%s: %v", state, role, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// collector runs Watch in the background and keeps every event.
type collector struct {
	mu     sync.Mutex
	events []*pocnetv1.Event
	err    error
	done   chan struct{}
}

func watch(t *testing.T, c *client.Client, after uint64) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	col := &collector{done: make(chan struct{})}
	go func() {
		defer close(col.done)
		err := c.Watch(ctx, after, func(ev *pocnetv1.Event) error {
			col.mu.Lock()
			col.events = append(col.events, ev)
			col.mu.Unlock()
			return nil
		})
		col.mu.Lock()
		col.err = err
		col.mu.Unlock()
	}()
	t.Cleanup(func() {
		cancel()
		<-col.done
		if !errors.Is(col.err, context.Canceled) {
			t.Errorf("Watch ended with %v, want context.Canceled", col.err)
		}
		col.checkOrder(t)
	})
	return col
}

// waitFor waits for an event matching pred and returns it.
func (col *collector) waitFor(t *testing.T, what string, pred func(*pocnetv1.Event) bool) *pocnetv1.Event {
	t.Helper()
	var found *pocnetv1.Event
	testfed.WaitFor(t, what, func() bool {
		col.mu.Lock()
		defer col.mu.Unlock()
		for _, ev := range col.events {
			if pred(ev) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

// checkOrder asserts that events came exactly once and in order.
func (col *collector) checkOrder(t *testing.T) {
	t.Helper()
	col.mu.Lock()
	defer col.mu.Unlock()
	for i := 1; i < len(col.events); i++ {
		if col.events[i].GetSeq() <= col.events[i-1].GetSeq() {
			t.Errorf("event #%d after #%d: repeated or out of order", col.events[i].GetSeq(), col.events[i-1].GetSeq())
		}
	}
}

func received(subject string) func(*pocnetv1.Event) bool {
	return func(ev *pocnetv1.Event) bool {
		return ev.GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED && ev.GetMessage().GetCommunication().GetSubject() == subject
	}
}

func statusOf(id string, st pocnetv1.Status) func(*pocnetv1.Event) bool {
	return func(ev *pocnetv1.Event) bool {
		return ev.GetType() == pocnetv1.EventType_EVENT_TYPE_STATUS_CHANGED && ev.GetMessageId() == id && ev.GetStatus() == st
	}
}

func lastSeq(t *testing.T, c *client.Client) uint64 {
	t.Helper()
	s, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.GetLastEventSeq()
}

func TestSendWatchAndAnswer(t *testing.T) {
	noLeaks(t)
	fed := testfed.Start(t, testfed.Options{Quiet: true})
	xaa, xbb := fed.States()[0], fed.States()[1]
	sender, recipient := dial(t, fed, xaa, "technical"), dial(t, fed, xbb, "technical")
	ctx := context.Background()
	sent := watch(t, sender, lastSeq(t, sender))
	inbox := watch(t, recipient, lastSeq(t, recipient))

	// Acknowledge, then respond.
	m1, err := sender.Send(ctx, rfi(xbb, "Scanning from 203.0.113.0/24"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if m1.GetStatus() != pocnetv1.Status_STATUS_ACCEPTED || m1.GetRequestId() == "" {
		t.Fatalf("sent message: status %v, request id %q", m1.GetStatus(), m1.GetRequestId())
	}
	in1 := inbox.waitFor(t, "the recipient to receive m1", received("Scanning from 203.0.113.0/24")).GetMessage()
	if in1.GetFromState() != xaa || in1.GetDirection() != pocnetv1.Direction_DIRECTION_INBOUND {
		t.Errorf("received message %v", in1)
	}
	sent.waitFor(t, "m1 DELIVERED", statusOf(m1.GetId(), pocnetv1.Status_STATUS_DELIVERED))

	ack, err := recipient.Acknowledge(ctx, in1.GetId(), "looking into it")
	if err != nil {
		t.Fatalf("Acknowledge: %v", err)
	}
	if ack.GetType() != pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT || ack.GetInReplyTo() != in1.GetId() {
		t.Errorf("acknowledgement %v", ack)
	}
	sent.waitFor(t, "m1 ACKNOWLEDGED", statusOf(m1.GetId(), pocnetv1.Status_STATUS_ACKNOWLEDGED))

	resp, err := recipient.Respond(ctx, in1.GetId(), &pocnetv1.Communication{
		Kind: pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, Urgency: pocnetv1.Urgency_URGENCY_URGENT,
		Subject: "Re: Scanning", Body: "Yes, from the same range.", Language: "en",
		HandlingCode: pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION,
	}, "")
	if err != nil {
		t.Fatalf("Respond: %v", err)
	}
	sent.waitFor(t, "m1 RESPONDED", statusOf(m1.GetId(), pocnetv1.Status_STATUS_RESPONDED))
	thread, err := sender.Thread(ctx, m1.GetId())
	if err != nil {
		t.Fatalf("Thread: %v", err)
	}
	testfed.WaitFor(t, "the thread to hold the answers", func() bool {
		thread, err = sender.Thread(ctx, m1.GetId())
		return err == nil && len(thread) == 3
	})
	wantTypes := []pocnetv1.EnvelopeType{pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT, pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE}
	for i, m := range thread {
		if m.GetType() != wantTypes[i] {
			t.Errorf("thread[%d] is a %v, want %v", i, m.GetType(), wantTypes[i])
		}
	}
	if thread[2].GetCommunication().GetBody() != "Yes, from the same range." || thread[2].GetId() != resp.GetId() {
		t.Errorf("response in thread: %v", thread[2])
	}

	// Decline.
	m2, err := sender.Send(ctx, rfi(xbb, "Please take down bad.example"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	in2 := inbox.waitFor(t, "the recipient to receive m2", received("Please take down bad.example")).GetMessage()
	if _, err := recipient.Decline(ctx, in2.GetId(), "outside our remit"); err != nil {
		t.Fatalf("Decline: %v", err)
	}
	sent.waitFor(t, "m2 DECLINED", statusOf(m2.GetId(), pocnetv1.Status_STATUS_DECLINED))
	got, err := sender.Get(ctx, m2.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if got.GetStatus() != pocnetv1.Status_STATUS_DECLINED {
		t.Errorf("m2 status %v, want DECLINED", got.GetStatus())
	}

	// The gRPC status survives the library's wrapping.
	_, err = sender.Get(ctx, "0198c0de-0000-7000-8000-000000000000")
	if status.Code(err) != codes.NotFound || !strings.HasPrefix(err.Error(), "get message 0198c0de-0000-7000-8000-000000000000: ") {
		t.Errorf("Get(unknown) = %v (code %v), want NotFound", err, status.Code(err))
	}
}

func TestSendSameRequestIDOnce(t *testing.T) {
	noLeaks(t)
	fed := testfed.Start(t, testfed.Options{Quiet: true})
	xbb := fed.States()[1]
	c := dial(t, fed, fed.States()[0], "technical")
	ctx := context.Background()

	req := rfi(xbb, "Once only")
	m1, err := c.Send(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again := rfi(xbb, "Once only")
	again.RequestId = req.RequestId
	m2, err := c.Send(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if m1.GetId() != m2.GetId() {
		t.Fatalf("same request id gave messages %s and %s", m1.GetId(), m2.GetId())
	}
	out, err := c.ListAll(ctx, pocnetv1.Direction_DIRECTION_OUTBOUND, false)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range out {
		if m.GetRequestId() == req.RequestId {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d outbound messages with request id %s, want 1", n, req.RequestId)
	}
}

func TestWatchResumes(t *testing.T) {
	noLeaks(t)
	fed := testfed.Start(t, testfed.Options{Quiet: true})
	xaa, xbb := fed.States()[0], fed.States()[1]
	sender, recipient := dial(t, fed, xaa, "technical"), dial(t, fed, xbb, "technical")
	ctx := context.Background()
	start := lastSeq(t, recipient)

	send := func(subject string) {
		t.Helper()
		if _, err := sender.Send(ctx, rfi(xbb, subject)); err != nil {
			t.Fatal(err)
		}
	}
	// Collect from a cursor until want subjects have arrived, stopping
	// there, and return the seqs and subjects seen and the last seq.
	var seqs []uint64
	subjects := map[string]int{}
	collect := func(after uint64, want int) uint64 {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		errEnough := errors.New("enough")
		got := 0
		last := after
		err := recipient.Watch(wctx, after, func(ev *pocnetv1.Event) error {
			seqs = append(seqs, ev.GetSeq())
			last = ev.GetSeq()
			if ev.GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED {
				subjects[ev.GetMessage().GetCommunication().GetSubject()]++
				if got++; got == want {
					return errEnough
				}
			}
			return nil
		})
		if !errors.Is(err, errEnough) {
			t.Fatalf("Watch = %v", err)
		}
		return last
	}

	send("one")
	send("two")
	last := collect(start, 2)
	// Broken off; more arrives meanwhile; resuming from the last seq seen
	// gives what came after, and nothing twice.
	send("three")
	send("four")
	last = collect(last, 2)

	// A stream broken by a node restart resumes by itself.
	col := watch(t, recipient, last)
	send("five")
	col.waitFor(t, "five", received("five"))
	fed.Restart(xbb)
	send("six")
	col.waitFor(t, "six after the restart", received("six"))

	for _, s := range []string{"one", "two", "three", "four"} {
		if subjects[s] != 1 {
			t.Errorf("%q seen %d times, want once", s, subjects[s])
		}
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Errorf("seq %d after %d", seqs[i], seqs[i-1])
		}
	}
	col.mu.Lock()
	n := 0
	for _, ev := range col.events {
		if ev.GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED {
			n++
		}
	}
	col.mu.Unlock()
	if n != 2 {
		t.Errorf("watch across the restart saw %d received messages, want 2 (five, six)", n)
	}
}

// pocctlRun runs pocctl in-process with the given configuration.
func pocctlRun(t *testing.T, config string, args ...string) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := pocctl.Run(context.Background(), append([]string{"--config", config}, args...), pocctl.Env{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut,
		Getenv: func(string) string { return "" },
	})
	if code != pocctl.ExitOK {
		t.Fatalf("pocctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// contains checks that out holds each of want, however the columns were
// padded.
func contains(t *testing.T, what, out string, want ...string) {
	t.Helper()
	squeeze := func(s string) string { return spaces.ReplaceAllString(s, " ") }
	for _, w := range want {
		if !strings.Contains(squeeze(out), squeeze(w)) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

func TestPocctl(t *testing.T) {
	noLeaks(t)
	fed := testfed.Start(t, testfed.Options{Quiet: true})
	xaa, xbb := fed.States()[0], fed.States()[1]
	a, b := fed.OperatorConfigFile(xaa, "technical"), fed.OperatorConfigFile(xbb, "technical")

	out, _ := pocctlRun(t, a, "send", "--to", xbb, "--role", "technical", "--kind", "rfi", "--urgency", "urgent",
		"--subject", "Ransomware C2 at 203.0.113.7", "--body", "Seen on three operators.", "--respond-by", "2h",
		"--handling", "no-onward", "--exercise", "--sector", "energy", "--indicator", "ipv4-addr=203.0.113.7")
	contains(t, "send", out, "Sent  ", "ACCEPTED — stored by your node ("+xaa+")")
	id1 := strings.Fields(strings.SplitN(out, "\n", 2)[0])[1]

	out, _ = pocctlRun(t, a, "-o", "json", "send", "--to", xbb, "--role", "technical", "--kind", "notification",
		"--subject", "Patch advisory", "--body", "Patch now.")
	var m2 struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &m2); err != nil || m2.Status != "STATUS_ACCEPTED" {
		t.Fatalf("send json %q: %+v, %v", out, m2, err)
	}

	// The recipient's inbox, as text and JSON.
	testfed.WaitFor(t, "both messages in the recipient's inbox", func() bool {
		out, _ = pocctlRun(t, b, "-o", "json", "inbox")
		var doc struct {
			Messages []json.RawMessage `json:"messages"`
		}
		return json.Unmarshal([]byte(out), &doc) == nil && len(doc.Messages) == 2
	})
	out, _ = pocctlRun(t, b, "inbox")
	contains(t, "inbox", out, "RECEIVED", xaa+"/technical", "[EXERCISE] Ransomware C2 at 203.0.113.7", "Patch advisory", "new")
	in1, in2 := inboundID(t, b, "Ransomware C2 at 203.0.113.7"), inboundID(t, b, "Patch advisory")

	out, _ = pocctlRun(t, b, "show", in1)
	contains(t, "show", out, "Type         communication (inbound)", "Local state  read (never sent to anyone)",
		"Seen on three operators.", "Sectors  energy", "ipv4-addr  203.0.113.7", "no onward dissemination",
		"yes — EXERCISE, not a real incident")

	out, _ = pocctlRun(t, b, "ack", in1, "--note", "looking into it")
	contains(t, "ack", out, "Acknowledged with", "ACCEPTED")
	out, _ = pocctlRun(t, b, "respond", in1, "--body", "Confirmed; blocking.")
	contains(t, "respond", out, "Responded with", "To          "+xaa+"/technical")
	out, _ = pocctlRun(t, b, "decline", in2, "--reason", "not for us")
	contains(t, "decline", out, "Declined with")

	testfed.WaitFor(t, "the sender to see RESPONDED", func() bool {
		out, _ = pocctlRun(t, a, "status", id1)
		return strings.Contains(out, "RESPONDED — "+xbb+" responded")
	})
	contains(t, "status ID", out, "Receipt      yes", "Status trail", "ACCEPTED", "DELIVERED", "ACKNOWLEDGED")

	out, _ = pocctlRun(t, a, "thread", id1)
	contains(t, "thread", out, "— 3 message(s)", "[1] ", "Subject: Ransomware C2 at 203.0.113.7", "[2] ", "acknowledgement",
		"Note: looking into it", "[3] ", "Subject: Re: Ransomware C2 at 203.0.113.7", "| Confirmed; blocking.")
	out, _ = pocctlRun(t, a, "-o", "json", "thread", id1)
	var thread struct {
		Messages []struct {
			Type string `json:"type"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &thread); err != nil || len(thread.Messages) != 3 || thread.Messages[2].Type != "ENVELOPE_TYPE_RESPONSE" {
		t.Errorf("thread json: %v\n%s", err, out)
	}

	testfed.WaitFor(t, "the sender to see DECLINED", func() bool {
		out, _ = pocctlRun(t, a, "sent")
		return strings.Contains(out, "DECLINED")
	})
	contains(t, "sent", out, "STATUS", "RESPONDED", "urgent")

	out, _ = pocctlRun(t, a, "status")
	contains(t, "status", out, "State           "+xaa, "(role technical)", "PEER", xbb)
	out, _ = pocctlRun(t, a, "-o", "json", "status")
	var st struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.State != xaa {
		t.Errorf("status json: %v\n%s", err, out)
	}

	out, _ = pocctlRun(t, a, "directory")
	contains(t, "directory", out, xaa+"  Testland "+xaa+" (state)", "technical  National CERT of "+xbb, "24/7", "rfi,rfa,notification,check,other")
	out, _ = pocctlRun(t, a, "-o", "json", "directory")
	var dir struct {
		Members []json.RawMessage `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &dir); err != nil || len(dir.Members) != 2 {
		t.Errorf("directory json: %v\n%s", err, out)
	}
	out, _ = pocctlRun(t, a, "policy", xbb)
	contains(t, "policy", out, "Points of contact of "+xbb, "diplomatic", "notification,consultations,check")

	// A node error exits 1 with one plain line.
	var o, e bytes.Buffer
	code := pocctl.Run(context.Background(), []string{"--config", a, "show", "0198c0de-0000-7000-8000-000000000000"},
		pocctl.Env{Stdout: &o, Stderr: &e, Getenv: func(string) string { return "" }})
	if code != pocctl.ExitError || !strings.HasPrefix(e.String(), "pocctl: get message 0198c0de-0000-7000-8000-000000000000: ") ||
		!strings.HasSuffix(e.String(), "(NotFound)\n") {
		t.Errorf("show unknown: exit %d, stderr %q", code, e.String())
	}
}

var spaces = regexp.MustCompile(` {2,}`)

// inboundID finds an inbound message by subject through pocctl's JSON.
func inboundID(t *testing.T, config, subject string) string {
	t.Helper()
	out, _ := pocctlRun(t, config, "-o", "json", "inbox", "--all")
	var doc struct {
		Messages []struct {
			ID            string `json:"id"`
			Communication struct {
				Subject string `json:"subject"`
			} `json:"communication"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("inbox json: %v\n%s", err, out)
	}
	for _, m := range doc.Messages {
		if m.Communication.Subject == subject {
			return m.ID
		}
	}
	t.Fatalf("no inbound message %q in\n%s", subject, out)
	return ""
}
