package node_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/pocnet/pocnet/internal/audit"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func auditClient(f *testfed.Federation, state, role string) pocnetv1.AuditServiceClient {
	return pocnetv1.NewAuditServiceClient(f.Dial(state, &f.Certs.State(state).Operator(role).TLS))
}

// export reads a whole export stream.
func export(t *testing.T, c pocnetv1.AuditServiceClient, req *pocnetv1.ExportAuditRequest) ([]*pocnetv1.AuditEntry, error) {
	t.Helper()
	stream, err := c.ExportAudit(ctx(t), req)
	if err != nil {
		return nil, err
	}
	var out []*pocnetv1.AuditEntry
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, resp.GetEntries()...)
	}
}

func head(t *testing.T, c pocnetv1.AuditServiceClient) audit.Head {
	t.Helper()
	resp, err := c.GetAuditHead(ctx(t), &pocnetv1.GetAuditHeadRequest{})
	if err != nil {
		t.Fatalf("GetAuditHead: %v", err)
	}
	return audit.Head{Seq: resp.GetSeq(), Hash: resp.GetHash()}
}

func decode(t *testing.T, entries []*pocnetv1.AuditEntry) []*pocnetv1.AuditRecord {
	t.Helper()
	out := make([]*pocnetv1.AuditRecord, len(entries))
	for i, e := range entries {
		r, err := audit.Decode(e)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		out[i] = r
	}
	return out
}

// TestAuditServiceAdminOnly: the node's own admin operators read the audit
// log; PoC roles and nodes (its own included) are refused, and a refused
// call records nothing.
func TestAuditServiceAdminOnly(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	admin := auditClient(f, "XAA", "admin")
	before := head(t, admin)
	technical := auditClient(f, "XAA", "technical")
	peerNode := pocnetv1.NewAuditServiceClient(f.Dial("XAA", &f.Certs.State("XBB").Node.TLS))
	ownNode := pocnetv1.NewAuditServiceClient(f.Dial("XAA", &f.Certs.State("XAA").Node.TLS))
	for _, tc := range []struct {
		name   string
		client pocnetv1.AuditServiceClient
	}{{"technical operator", technical}, {"peer node", peerNode}, {"own node", ownNode}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.client.GetAuditHead(ctx(t), &pocnetv1.GetAuditHeadRequest{})
			wantCode(t, err, "PermissionDenied", "only admin operators of XAA may call AuditService")
			_, err = export(t, tc.client, &pocnetv1.ExportAuditRequest{})
			wantCode(t, err, "PermissionDenied", "is not an admin operator of XAA")
		})
	}
	if after := head(t, admin); after.String() != before.String() {
		t.Fatalf("refused calls changed the head from %v to %v", before, after)
	}
}

// TestAuditExportThroughNode exports a real node's log: its start record,
// each export recorded before it is served, the chain intact across a
// restart, and the request's bounds.
func TestAuditExportThroughNode(t *testing.T) {
	f := testfed.Start(t, testfed.Options{})
	admin := auditClient(f, "XAA", "admin")
	adminID := f.Certs.State("XAA").Operator("admin").ID.String()
	h := head(t, admin)
	if h.Seq != 2 {
		t.Fatalf("head of a fresh node: %v, want the genesis in force and its start record", h)
	}
	entries, err := export(t, admin, &pocnetv1.ExportAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(entries, audit.Anchor{Head: h, Label: "the node's head"}); err != nil {
		t.Fatal(err)
	}
	recs := decode(t, entries)
	if len(recs) != 3 {
		t.Fatalf("%d records, want the genesis, the start and this export", len(recs))
	}
	if g := recs[0]; g.GetAction() != pocnetv1.AuditAction_AUDIT_ACTION_DIRECTORY || !strings.HasPrefix(g.GetDetail(), "directory version 1 in force") {
		t.Errorf("genesis record %v", g)
	}
	start, exp := recs[1], recs[2]
	if start.GetAction() != pocnetv1.AuditAction_AUDIT_ACTION_NODE_STARTED || start.GetActor() != "spiffe://"+f.Certs.ID+"/state/XAA/node" ||
		!strings.HasPrefix(start.GetDetail(), "certificate sha256:") || !strings.Contains(start.GetDetail(), "directory "+f.Certs.ID+" sha256:") {
		t.Errorf("start record %v", start)
	}
	if exp.GetAction() != pocnetv1.AuditAction_AUDIT_ACTION_EXPORTED || exp.GetActor() != adminID || exp.GetDetail() != "audit log exported after record 0" {
		t.Errorf("export record %v", exp)
	}

	f.Restart("XAA")
	admin = auditClient(f, "XAA", "admin")
	h = head(t, admin)
	entries, err = export(t, admin, &pocnetv1.ExportAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(entries, audit.Anchor{Head: h, Label: "the node's head"}); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	var actions []string
	for _, r := range decode(t, entries) {
		actions = append(actions, strings.TrimPrefix(r.GetAction().String(), "AUDIT_ACTION_"))
	}
	if got := strings.Join(actions, " "); got != "DIRECTORY NODE_STARTED EXPORTED NODE_STOPPED NODE_STARTED EXPORTED" {
		t.Fatalf("actions %s", got)
	}

	// Bounds: from a seq, a limit, and past the head.
	part, err := export(t, admin, &pocnetv1.ExportAuditRequest{AfterSeq: 2, Limit: 2})
	if err != nil || len(part) != 2 {
		t.Fatalf("after 2, limit 2: %d entries, %v", len(part), err)
	}
	v := audit.NewVerifier(audit.Head{Seq: 2, Hash: entries[1].GetHash()})
	for _, e := range part {
		if err := v.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := v.Finish(); err != nil || got.Seq != 4 {
		t.Fatalf("partial export ends at %v, %v", got, err)
	}
	h = head(t, admin)
	_, err = export(t, admin, &pocnetv1.ExportAuditRequest{AfterSeq: h.Seq + 1})
	wantCode(t, err, "InvalidArgument", "after_seq: ")
	if after := head(t, admin); after.Seq != h.Seq {
		t.Fatalf("a refused export was recorded: head %v, was %v", after, h)
	}
}

// TestAuditRecordsTheExchange: every step of an exchange, and the export of
// its transcript, is in the audit log of the node where it happened, with
// who did it, in commit order, and each log verifies.
func TestAuditRecordsTheExchange(t *testing.T) {
	f := testfed.Start(t, testfed.Options{States: 3})
	techA, techB := f.Contact("XAA", "technical"), f.Contact("XBB", "technical")
	m := send(t, techA, "XBB", "technical", rfi("Audited"))
	waitStatus(t, f.Contact("XAA", "admin"), m.GetId(), pocnetv1.Status_STATUS_DELIVERED)
	get(t, techB, m.GetId())
	inbox(t, techB)
	// A watch is recorded once, when it starts.
	stream, err := techB.WatchEvents(ctx(t), &pocnetv1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if _, err := techB.Acknowledge(ctx(t), &pocnetv1.AcknowledgeRequest{Id: m.GetId()}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, f.Contact("XAA", "admin"), m.GetId(), pocnetv1.Status_STATUS_ACKNOWLEDGED)
	// Refused by XBB's policy: its technical PoC does not take requests
	// for consultations (see certs).
	c := rfi("Consultations please")
	c.Kind = pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS
	r := send(t, f.Contact("XAA", "policy"), "XBB", "technical", c)
	waitStatus(t, f.Contact("XAA", "admin"), r.GetId(), pocnetv1.Status_STATUS_REJECTED)
	exportThread(t, records(f, "XAA", "technical"), m.GetId())

	type step struct {
		action pocnetv1.AuditAction
		actor  string
		msg    string
	}
	watches := map[string]int{}
	steps := func(state string) []step {
		t.Helper()
		admin := auditClient(f, state, "admin")
		entries, err := export(t, admin, &pocnetv1.ExportAuditRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := audit.Verify(entries, audit.Anchor{Head: head(t, admin), Label: "the node's head"}); err != nil {
			t.Fatalf("%s audit log: %v", state, err)
		}
		var out []step
		for _, rec := range decode(t, entries) {
			if rec.GetAction() == pocnetv1.AuditAction_AUDIT_ACTION_OPENED && strings.HasPrefix(rec.GetDetail(), "watch of events after seq 0") {
				watches[state]++
			}
			if rec.GetMessageId() != "" {
				out = append(out, step{rec.GetAction(), rec.GetActor(), rec.GetMessageId()})
			}
		}
		return out
	}
	node := func(s string) string { return "spiffe://" + f.Certs.ID + "/state/" + s + "/node" }
	opA, opB := "spiffe://"+f.Certs.ID+"/state/XAA/operator/technical/duty-officer", "spiffe://"+f.Certs.ID+"/state/XBB/operator/technical/duty-officer"
	gotA, gotB := steps("XAA"), steps("XBB")
	ack := func(got []step) string {
		for _, s := range got {
			if s.action == pocnetv1.AuditAction_AUDIT_ACTION_ACKNOWLEDGED || (s.action == pocnetv1.AuditAction_AUDIT_ACTION_RECEIVED && s.msg != m.GetId() && s.msg != r.GetId()) {
				return s.msg
			}
		}
		return ""
	}
	ackID := ack(gotB)
	wantA := []step{
		{pocnetv1.AuditAction_AUDIT_ACTION_SENT, opA, m.GetId()},
		{pocnetv1.AuditAction_AUDIT_ACTION_DELIVERED, node("XAA"), m.GetId()},
		{pocnetv1.AuditAction_AUDIT_ACTION_RECEIVED, node("XAA"), ackID},
		{pocnetv1.AuditAction_AUDIT_ACTION_SENT, "spiffe://" + f.Certs.ID + "/state/XAA/operator/policy/desk", r.GetId()},
		{pocnetv1.AuditAction_AUDIT_ACTION_REJECTED, node("XAA"), r.GetId()},
		{pocnetv1.AuditAction_AUDIT_ACTION_EXPORTED, opA, m.GetId()},
	}
	wantB := []step{
		{pocnetv1.AuditAction_AUDIT_ACTION_RECEIVED, node("XBB"), m.GetId()},
		{pocnetv1.AuditAction_AUDIT_ACTION_OPENED, opB, m.GetId()}, // read
		{pocnetv1.AuditAction_AUDIT_ACTION_OPENED, opB, m.GetId()}, // listed
		{pocnetv1.AuditAction_AUDIT_ACTION_ACKNOWLEDGED, opB, ackID},
		{pocnetv1.AuditAction_AUDIT_ACTION_DELIVERED, node("XBB"), ackID},
		{pocnetv1.AuditAction_AUDIT_ACTION_REJECTED, node("XBB"), r.GetId()},
	}
	if watches["XBB"] != 1 || watches["XAA"] != 0 {
		t.Errorf("watch records: %v, want one at XBB", watches)
	}
	for _, c := range []struct {
		state     string
		got, want []step
	}{{"XAA", gotA, wantA}, {"XBB", gotB, wantB}} {
		if ackID == "" || fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s audit log:\n got %v\nwant %v", c.state, c.got, c.want)
		}
	}
}
