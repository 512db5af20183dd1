package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// respondByIn is how far ahead scene 3 sets its respond-by time.
const respondByIn = 3 * time.Second

// send sends req as state's operator of role, prints it and returns the
// accepted message.
func (d *demo) send(ctx context.Context, state, role string, req *pocnetv1.SendCommunicationRequest) (*pocnetv1.Message, error) {
	c := req.GetCommunication()
	sentAt := time.Now()
	m, err := d.op(state, role).c.Send(ctx, req)
	if err != nil {
		return nil, err
	}
	if m.GetStatus() != pocnetv1.Status_STATUS_ACCEPTED {
		return nil, fmt.Errorf("send to %s/%s: status %s, want ACCEPTED", req.GetToState(), req.GetToRole(), client.StatusName(m.GetStatus()))
	}
	d.track(m)
	urgency := client.UrgencyName(c.GetUrgency())
	d.stepAt(sentAt, "%s/%s sends %s/%s %s %s %s:", state, role, req.GetToState(), req.GetToRole(), article(urgency), urgency, client.KindWords(c.GetKind()))
	d.detail("subject    %q", c.GetSubject())
	for _, in := range c.GetIncident().GetIndicators() {
		d.detail("indicator  %s %s (%s)", in.GetType(), in.GetValue(), in.GetDescription())
	}
	if s := c.GetIncident().GetAffectedSectors(); len(s) > 0 {
		d.detail("sector     %s", s[0])
	}
	if c.GetRequestedAction() != "" {
		d.detail("asks       %s", oneLine(c.GetRequestedAction(), lineWidth-len(stepIndent)-11))
	}
	if c.GetRespondBy() != nil {
		d.detail("respond by %s (a wish: answering is voluntary)", d.sinceTS(c.GetRespondBy()))
	}
	if c.GetHandlingCode() != pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION {
		d.detail("handling   %s", client.HandlingWords(c.GetHandlingCode()))
	}
	d.stepAt(m.GetHistory()[0].GetAt().AsTime(), "%s's node: ACCEPTED (stored durably before answering), id %s", state, m.GetId())
	return m, nil
}

// expectStatus waits until state's operator of role sees message id reach
// st, prints it with the time the node recorded, and returns the message.
// A label, if given, names the message in the output.
func (d *demo) expectStatus(ctx context.Context, state, role, id string, st pocnetv1.Status, label string) (*pocnetv1.Message, error) {
	o := d.op(state, role)
	ev, err := o.events.wait(ctx, fmt.Sprintf("%s/%s to see message %s %s", state, role, id, client.StatusName(st)), statusIs(id, st))
	if err != nil {
		return nil, err
	}
	m, err := o.c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	d.track(m)
	if label != "" {
		label = " for " + label
	}
	d.stepAt(ev.GetOccurredAt().AsTime(), "%s/%s sees %s%s", state, role, client.StatusName(st), label)
	return m, nil
}

// expectArrival waits until state's operator of role sees message id
// arrive, and prints what the operator sees.
func (d *demo) expectArrival(ctx context.Context, state, role, id string) (*pocnetv1.Message, error) {
	ev, err := d.op(state, role).events.wait(ctx, fmt.Sprintf("%s/%s's watch to show message %s", state, role, id), received(id))
	if err != nil {
		return nil, err
	}
	m := ev.GetMessage()
	d.stepAt(ev.GetOccurredAt().AsTime(), "%s/%s's watch: new %s from %s/%s: %q", state, role,
		client.KindWords(m.GetCommunication().GetKind()), m.GetFromState(), m.GetFromRole(), oneLine(m.GetCommunication().GetSubject(), 60))
	return m, nil
}

// acceptedKinds returns what state publishes that its PoC role accepts, as
// seen from asker's node.
func (d *demo) acceptedKinds(ctx context.Context, asker *operator, state, role string) ([]pocnetv1.Kind, error) {
	p, err := asker.c.Policy(ctx, state)
	if err != nil {
		return nil, err
	}
	for _, poc := range p.GetPointsOfContact() {
		if poc.GetRole() == role {
			return poc.GetAcceptedKinds(), nil
		}
	}
	return nil, fmt.Errorf("%s publishes no PoC with role %q", state, role)
}

func (d *demo) sceneAnswered(ctx context.Context) error {
	section(d.out, "1. An urgent request for information, acknowledged and answered",
		fmt.Sprintf("%s asks %s about an incident in its hospitals.", d.who(xaa, technical), d.who(xbb, technical)))
	now := time.Now()
	req := &pocnetv1.SendCommunicationRequest{
		ToState: xbb, ToRole: technical,
		Communication: &pocnetv1.Communication{
			Kind:     pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION,
			Urgency:  pocnetv1.Urgency_URGENCY_URGENT,
			Subject:  "Ransomware in XAA hospitals: command server at 203.0.113.45",
			Body:     "Since this morning ransomware has encrypted systems in three XAA hospitals. The malware reports to 203.0.113.45, which we believe is hosted in XBB.",
			Language: "en",
			Incident: &pocnetv1.IncidentDetails{
				DetectedAt:      timestamppb.New(now.Add(-40 * time.Minute)),
				AffectedSectors: []string{"health"},
				Indicators: []*pocnetv1.Indicator{{
					Type: "ipv4-addr", Value: "203.0.113.45", Description: "command-and-control server",
				}},
			},
			RequestedAction: "Tell us who hosts 203.0.113.45 and whether you see the same activity.",
			HandlingCode:    pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION,
		},
	}
	m, err := d.send(ctx, xaa, technical, req)
	if err != nil {
		return err
	}
	if _, err := d.expectArrival(ctx, xbb, technical, m.GetId()); err != nil {
		return err
	}
	delivered, err := d.expectStatus(ctx, xaa, technical, m.GetId(), pocnetv1.Status_STATUS_DELIVERED, "")
	if err != nil {
		return err
	}
	receipt, err := d.verifyReceipt(delivered)
	if err != nil {
		return err
	}
	d.detail("with a transport receipt signed by %s's node (stored at %s; signature verified", xbb, d.sinceTS(receipt.GetReceivedAt()))
	d.detail("against %s's own CA from the directory)", xbb)
	d.note("A receipt only proves that XBB's node stored the message. It is automatic and technical: it is not an answer, and nothing about reading is ever sent back.")

	ack, err := d.op(xbb, technical).c.Acknowledge(ctx, m.GetId(), "Received. Our analysts are on it.")
	if err != nil {
		return err
	}
	d.step("%s/%s decides to acknowledge: %q", xbb, technical, ack.GetAcknowledgementNote())
	if _, err := d.expectStatus(ctx, xaa, technical, m.GetId(), pocnetv1.Status_STATUS_ACKNOWLEDGED, ""); err != nil {
		return err
	}
	resp, err := d.op(xbb, technical).c.Respond(ctx, m.GetId(), &pocnetv1.Communication{
		Subject:  "Re: command server 203.0.113.45: hosted in XBB, now taken down",
		Body:     "203.0.113.45 is a rented server at an XBB hosting provider. It was taken down at our request. We see the same malware at two XBB hospitals and share a second indicator below.",
		Language: "en",
		Incident: &pocnetv1.IncidentDetails{
			AffectedSectors: []string{"health"},
			Indicators: []*pocnetv1.Indicator{{
				Type: "domain-name", Value: "update-check.example.net", Description: "fallback command server",
			}},
		},
	}, "")
	if err != nil {
		return err
	}
	d.step("%s/%s responds: %q", xbb, technical, resp.GetCommunication().GetSubject())
	final, err := d.expectStatus(ctx, xaa, technical, m.GetId(), pocnetv1.Status_STATUS_RESPONDED, "")
	if err != nil {
		return err
	}
	thread, err := d.op(xaa, technical).c.Thread(ctx, m.GetId())
	if err != nil {
		return err
	}
	if len(thread) != 3 {
		return fmt.Errorf("thread of %s has %d messages, want 3 (request, acknowledgement, response)", m.GetId(), len(thread))
	}
	d.step("the thread as %s sees it:", xaa)
	for _, t := range thread {
		d.detail("%8s  %s/%s -> %s/%s  %s", d.sinceTS(t.GetCreatedAt()), t.GetFromState(), t.GetFromRole(), t.GetToState(), t.GetToRole(), describe(t))
	}
	d.detail("status trail of the request: %s", d.trail(final))
	return nil
}

// verifyReceipt checks the transport receipt of a delivered message: signed
// with a signing key the recipient state publishes in the directory.
func (d *demo) verifyReceipt(m *pocnetv1.Message) (*pocnetv1.ReceiptBody, error) {
	if m.GetReceipt() == nil {
		return nil, fmt.Errorf("message %s is %s but carries no receipt", m.GetId(), client.StatusName(m.GetStatus()))
	}
	var entry pocnetv1.ReceiptEntry
	if err := proto.Unmarshal(m.GetReceipt().GetEntry(), &entry); err != nil {
		return nil, fmt.Errorf("receipt of %s: %w", m.GetId(), err)
	}
	// The client holds no copy of the envelope, so the digest is taken from
	// the receipt itself: what is checked is who signed it, and for what id.
	verified, err := envelope.VerifyReceipt(m.GetReceipt(), d.directory, m.GetFromState(), m.GetToState(), m.GetId(), entry.GetEnvelopeDigest())
	if err != nil {
		return nil, fmt.Errorf("receipt of %s does not verify: %w", m.GetId(), err)
	}
	return verified.Body, nil
}

func (d *demo) sceneDeclined(ctx context.Context) error {
	section(d.out, "2. A request declined, with a reason",
		fmt.Sprintf("%s asks %s for its national assessment of the campaign. Answering is voluntary, and so is declining.", d.who(xaa, policy), d.who(xcc, policy)))
	kind := pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION
	kinds, err := d.acceptedKinds(ctx, d.op(xaa, policy), xcc, policy)
	if err != nil {
		return err
	}
	if !slices.Contains(kinds, kind) {
		return fmt.Errorf("%s/%s does not accept a %s (it accepts %s)", xcc, policy, client.KindWords(kind), kindsWords(kinds))
	}
	d.step("%s's published policy: its %s PoC accepts %s", xcc, policy, kindsWords(kinds))
	m, err := d.send(ctx, xaa, policy, &pocnetv1.SendCommunicationRequest{
		ToState: xcc, ToRole: policy,
		Communication: &pocnetv1.Communication{
			Kind:            kind,
			Urgency:         pocnetv1.Urgency_URGENCY_PRIORITY,
			Subject:         "National assessment of the hospital ransomware campaign",
			Body:            "XAA is preparing its national response to the ransomware campaign against hospitals. We would value XCC's assessment of who is behind it.",
			Language:        "en",
			RequestedAction: "Share your national assessment, if you can.",
			HandlingCode:    pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION,
		},
	})
	if err != nil {
		return err
	}
	if _, err := d.expectArrival(ctx, xcc, policy, m.GetId()); err != nil {
		return err
	}
	if _, err := d.expectStatus(ctx, xaa, policy, m.GetId(), pocnetv1.Status_STATUS_DELIVERED, ""); err != nil {
		return err
	}
	reason := "XCC does not share national assessments while its own investigation is ongoing. Technical information keeps flowing between our CERTs."
	if _, err := d.op(xcc, policy).c.Decline(ctx, m.GetId(), reason); err != nil {
		return err
	}
	d.step("%s/%s decides to decline, with a reason", xcc, policy)
	final, err := d.expectStatus(ctx, xaa, policy, m.GetId(), pocnetv1.Status_STATUS_DECLINED, "")
	if err != nil {
		return err
	}
	thread, err := d.op(xaa, policy).c.Thread(ctx, m.GetId())
	if err != nil {
		return err
	}
	var got string
	for _, t := range thread {
		if t.GetType() == pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE {
			got = t.GetDeclineReason()
		}
	}
	if got != reason {
		return fmt.Errorf("%s sees the decline reason %q, want %q", xaa, got, reason)
	}
	d.detail("reason: %q", oneLine(got, 200))
	d.detail("status trail: %s", d.trail(final))
	d.note("DECLINED is XCC's own decision, signed by XCC's node and delivered like any message.")
	return nil
}

func (d *demo) sceneSilence(ctx context.Context) error {
	section(d.out, "3. No answer by the requested time",
		fmt.Sprintf("%s asks %s to answer within %s. XCC reads it and stays silent.", d.who(xaa, technical), d.who(xcc, technical), respondByIn))
	respondBy := time.Now().Add(respondByIn)
	m, err := d.send(ctx, xaa, technical, &pocnetv1.SendCommunicationRequest{
		ToState: xcc, ToRole: technical,
		Communication: &pocnetv1.Communication{
			Kind:            pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION,
			Urgency:         pocnetv1.Urgency_URGENCY_PRIORITY,
			Subject:         "Do you see the hospital ransomware in XCC?",
			Body:            "The ransomware hitting XAA hospitals reports to update-check.example.net. Do you see connections to it from XCC networks?",
			Language:        "en",
			RequestedAction: "Tell us whether you see connections to update-check.example.net.",
			RespondBy:       timestamppb.New(respondBy),
			HandlingCode:    pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION,
		},
	})
	if err != nil {
		return err
	}
	if _, err := d.expectArrival(ctx, xcc, technical, m.GetId()); err != nil {
		return err
	}
	if _, err := d.expectStatus(ctx, xaa, technical, m.GetId(), pocnetv1.Status_STATUS_DELIVERED, ""); err != nil {
		return err
	}
	in, err := d.op(xcc, technical).c.SetLocalState(ctx, m.GetId(), pocnetv1.LocalState_LOCAL_STATE_READ)
	if err != nil {
		return err
	}
	d.step("%s/%s marks it %s in its own inbox (this never leaves %s's node) and sends nothing",
		xcc, technical, client.LocalStateName(in.GetLocalState()), xcc)
	// Wait out the respond-by time, a little more for the clocks of the
	// demo and the node.
	wait := time.Until(respondBy) + 300*time.Millisecond
	select {
	case <-time.After(wait):
	case <-ctx.Done():
		return ctx.Err()
	}
	got, err := d.op(xaa, technical).c.Get(ctx, m.GetId())
	if err != nil {
		return err
	}
	d.track(got)
	if !got.GetAnswerOverdue() || got.GetStatus() != pocnetv1.Status_STATUS_DELIVERED {
		return fmt.Errorf("after the respond-by time %s sees status %s, answer_overdue %v; want DELIVERED, answer_overdue true",
			xaa, client.StatusName(got.GetStatus()), got.GetAnswerOverdue())
	}
	if len(got.GetAnswerIds()) != 0 {
		return fmt.Errorf("%s sees %d answers to a message %s did not answer", xaa, len(got.GetAnswerIds()), xcc)
	}
	d.step("%s/%s sees: DELIVERED, no answer by the requested time (respond-by was %s)", xaa, technical, d.sinceTS(got.GetCommunication().GetRespondBy()))
	d.note("This is a normal outcome, not an error: XCC alone decides whether and when to answer, nothing is answered on its behalf, and an answer that comes late is still accepted.")
	return nil
}

func (d *demo) sceneRejected(ctx context.Context) error {
	section(d.out, "4. A request refused by the recipient's published policy",
		fmt.Sprintf("%s asks %s for consultations. XBB publishes that its technical PoC does not accept requests for consultations.", d.who(xaa, policy), d.who(xbb, technical)))
	kind := pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS
	kinds, err := d.acceptedKinds(ctx, d.op(xaa, policy), xbb, technical)
	if err != nil {
		return err
	}
	if slices.Contains(kinds, kind) {
		return fmt.Errorf("%s/%s accepts a %s; this scene needs a PoC that does not", xbb, technical, client.KindWords(kind))
	}
	d.step("%s's published policy: its %s PoC accepts %s", xbb, technical, kindsWords(kinds))
	m, err := d.send(ctx, xaa, policy, &pocnetv1.SendCommunicationRequest{
		ToState: xbb, ToRole: technical,
		Communication: &pocnetv1.Communication{
			Kind:            kind,
			Urgency:         pocnetv1.Urgency_URGENCY_PRIORITY,
			Subject:         "Consultations on a joint statement about the hospital attacks",
			Body:            "XAA proposes consultations on a joint public statement about the attacks on hospitals in our two states.",
			Language:        "en",
			RequestedAction: "Propose a time for consultations.",
			HandlingCode:    pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION,
		},
	})
	if err != nil {
		return err
	}
	final, err := d.expectStatus(ctx, xaa, policy, m.GetId(), pocnetv1.Status_STATUS_REJECTED, "")
	if err != nil {
		return err
	}
	if final.GetStatusReason() == "" {
		return fmt.Errorf("%s sees REJECTED without a reason", xaa)
	}
	d.detail("reason: %q", oneLine(final.GetStatusReason(), 200))
	var accepting []string
	p, err := d.op(xaa, policy).c.Policy(ctx, xbb)
	if err != nil {
		return err
	}
	for _, poc := range p.GetPointsOfContact() {
		if slices.Contains(poc.GetAcceptedKinds(), kind) {
			accepting = append(accepting, xbb+"/"+poc.GetRole())
		}
	}
	d.note(fmt.Sprintf("No person at XBB decided this: XBB's node applied XBB's published policy at once and said why, in a signed receipt (compare DECLINED in scene 2). XBB's PoCs that accept consultations: %s.", strings.Join(accepting, ", ")))
	return nil
}

func (d *demo) sceneCrash(ctx context.Context) error {
	section(d.out, "5. Crash and recovery: nothing accepted is lost, nothing arrives twice",
		"XBB's node is killed without warning. XAA sends two communications to XBB, then XAA's node is killed too. Both come back.")
	if err := d.kill(xbb); err != nil {
		return err
	}
	d.step("the node of %s is killed with SIGKILL (no clean shutdown)", xbb)
	var reqs []*pocnetv1.SendCommunicationRequest
	var ids []string
	for i, s := range []struct {
		kind    pocnetv1.Kind
		urgency pocnetv1.Urgency
		subject string
	}{
		{pocnetv1.Kind_KIND_NOTIFICATION, pocnetv1.Urgency_URGENCY_PRIORITY, "Follow-up 1/2: XAA hospitals restored from backups"},
		{pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, pocnetv1.Urgency_URGENCY_URGENT, "Follow-up 2/2: new sample, same command server?"},
	} {
		req := &pocnetv1.SendCommunicationRequest{
			ToState: xbb, ToRole: technical,
			Communication: &pocnetv1.Communication{
				Kind: s.kind, Urgency: s.urgency, Subject: s.subject, Language: "en",
				Body:         fmt.Sprintf("Follow-up %d to our request about 203.0.113.45.", i+1),
				References:   []string{d.sent[0].GetId()},
				HandlingCode: pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION,
			},
		}
		m, err := d.send(ctx, xaa, technical, req)
		if err != nil {
			return err
		}
		reqs, ids = append(reqs, req), append(ids, m.GetId())
	}
	peer, err := d.waitPeer(ctx, func(p *pocnetv1.PeerStatus) bool {
		return p.GetPending() >= int64(len(ids)) && !p.GetReachable()
	}, fmt.Sprintf("%s's node to report %d pending for an unreachable %s", xaa, len(ids), xbb))
	if err != nil {
		return err
	}
	d.step("%s's node status, peer %s: %d waiting in the durable outbox, unreachable", xaa, xbb, peer.GetPending())
	if e := peer.GetLastError(); e != "" {
		d.detail("last delivery error: %s", oneLine(lastCause(e), 100))
	}
	if err := d.kill(xaa); err != nil {
		return err
	}
	d.step("the node of %s is killed with SIGKILL too, with both communications still undelivered", xaa)

	if err := d.restart(ctx, xaa); err != nil {
		return err
	}
	peer, err = d.waitPeer(ctx, func(p *pocnetv1.PeerStatus) bool { return p.GetPending() >= int64(len(ids)) },
		fmt.Sprintf("%s's node to report its outbox for %s after the restart", xaa, xbb))
	if err != nil {
		return err
	}
	d.step("%s's node status, peer %s: still %d waiting: the outbox survived the crash", xaa, xbb, peer.GetPending())
	if err := d.restart(ctx, xbb); err != nil {
		return err
	}
	d.note("On start, XBB's node tells its peers it is back, so XAA's node retries at once rather than after its backoff.")
	for i, id := range ids {
		if _, err := d.expectStatus(ctx, xaa, technical, id, pocnetv1.Status_STATUS_DELIVERED, fmt.Sprintf("follow-up %d/%d", i+1, len(ids))); err != nil {
			return err
		}
	}
	// A tool that lost the node's answer sends again with the same request
	// id: the node returns the message it first created.
	again, err := d.op(xaa, technical).c.Send(ctx, reqs[0])
	if err != nil {
		return err
	}
	if again.GetId() != ids[0] {
		return fmt.Errorf("sending again with request id %s created message %s, want the first one, %s", reqs[0].GetRequestId(), again.GetId(), ids[0])
	}
	d.step("%s/%s sends follow-up 1 again with the same request id, as a tool that lost the answer would:", xaa, technical)
	d.detail("the node returns the same message (%s, %s), nothing new is created", again.GetId(), client.StatusName(again.GetStatus()))
	return d.verifyExactlyOnce(ctx, ids)
}

// restart starts state's node again and reconnects its operators.
func (d *demo) restart(ctx context.Context, state string) error {
	if err := d.startNode(ctx, state); err != nil {
		return err
	}
	if err := d.waitHealthy(ctx, state); err != nil {
		return err
	}
	if err := d.connect(ctx, state); err != nil {
		return err
	}
	d.step("the node of %s is healthy again", state)
	return nil
}

// waitPeer polls XAA's node status until its view of peer XBB satisfies ok.
func (d *demo) waitPeer(ctx context.Context, ok func(*pocnetv1.PeerStatus) bool, what string) (*pocnetv1.PeerStatus, error) {
	deadline := time.Now().Add(stepTimeout)
	var last *pocnetv1.PeerStatus
	for {
		st, err := d.op(xaa, identity.AdminRole).c.Status(ctx)
		if err != nil {
			return nil, err
		}
		for _, p := range st.GetPeers() {
			if p.GetState() == xbb {
				last = p
			}
		}
		if last != nil && ok(last) {
			return last, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("waiting for %s: after %s the node reports %v", what, stepTimeout, last)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// verifyExactlyOnce reads XBB's event log from the start and its inbox, and
// checks that every message arrived exactly once, the follow-ups included.
func (d *demo) verifyExactlyOnce(ctx context.Context, ids []string) error {
	admin := d.op(xbb, identity.AdminRole)
	st, err := admin.c.Status(ctx)
	if err != nil {
		return err
	}
	log := watch(ctx, admin.c, 0)
	defer log.stop()
	if _, err := log.wait(ctx, fmt.Sprintf("%s's event log up to seq %d", xbb, st.GetLastEventSeq()), seqAtLeast(st.GetLastEventSeq())); err != nil {
		return err
	}
	received := map[string]int{}
	events := 0
	for _, ev := range log.all() {
		if ev.GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED {
			received[ev.GetMessageId()]++
			events++
		}
	}
	inbox, err := admin.c.ListAll(ctx, pocnetv1.Direction_DIRECTION_INBOUND, true)
	if err != nil {
		return err
	}
	listed := map[string]int{}
	for _, m := range inbox {
		listed[m.GetId()]++
	}
	var problems []error
	for id, n := range received {
		if n != 1 {
			problems = append(problems, fmt.Errorf("%s's event log has %d MESSAGE_RECEIVED events for message %s", xbb, n, id))
		}
	}
	for id, n := range listed {
		if n != 1 {
			problems = append(problems, fmt.Errorf("%s's inbox lists message %s %d times", xbb, id, n))
		}
	}
	for _, id := range ids {
		if received[id] != 1 || listed[id] != 1 {
			problems = append(problems, fmt.Errorf("follow-up %s: %d MESSAGE_RECEIVED events and %d inbox entries at %s, want 1 and 1", id, received[id], listed[id], xbb))
		}
	}
	// Everything XAA had sent to XBB and XBB had stored before the crash is
	// still there.
	for _, m := range d.sent {
		if m.GetToState() == xbb && m.GetStatus() != pocnetv1.Status_STATUS_REJECTED && listed[m.GetId()] != 1 {
			problems = append(problems, fmt.Errorf("message %s (%q) is not in %s's inbox", m.GetId(), m.GetCommunication().GetSubject(), xbb))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return err
	}
	d.step("%s's event log read from seq 0: %d MESSAGE_RECEIVED events for %d distinct messages; inbox: %d messages",
		xbb, events, len(received), len(inbox))
	d.detail("each follow-up was received exactly once, and so was every message before the crash")
	return nil
}

// summary checks that XAA still holds every communication its node
// accepted, with a status no lower than the one last seen, and prints them.
func (d *demo) summary(ctx context.Context) error {
	section(d.out, "What XAA's node holds after the crash",
		"Every communication XAA's node accepted during the demo, read back from the node restarted after SIGKILL.")
	c := d.op(xaa, identity.AdminRole).c
	for _, seen := range d.sent {
		m, err := c.Get(ctx, seen.GetId())
		if err != nil {
			return fmt.Errorf("a communication %s accepted was lost: %w", xaa, err)
		}
		if statusRank(m.GetStatus()) < statusRank(seen.GetStatus()) {
			return fmt.Errorf("message %s went back from %s to %s", m.GetId(), client.StatusName(seen.GetStatus()), client.StatusName(m.GetStatus()))
		}
		fmt.Fprintf(d.out, "  %s/%-9s -> %s/%-9s  %-13s  %s\n", m.GetFromState(), m.GetFromRole(), m.GetToState(), m.GetToRole(),
			client.StatusName(m.GetStatus()), oneLine(m.GetCommunication().GetSubject(), 48))
		if m.GetAnswerOverdue() {
			fmt.Fprintf(d.out, "%49s(no answer by the requested time: a normal outcome)\n", "")
		}
	}
	fmt.Fprintf(d.out, "  all %d accepted communications are there, each with its status trail.\n", len(d.sent))
	return nil
}

// statusRank orders statuses as they progress.
func statusRank(s pocnetv1.Status) int {
	switch s {
	case pocnetv1.Status_STATUS_ACCEPTED:
		return 1
	case pocnetv1.Status_STATUS_DELIVERED:
		return 2
	case pocnetv1.Status_STATUS_ACKNOWLEDGED:
		return 3
	case pocnetv1.Status_STATUS_RESPONDED, pocnetv1.Status_STATUS_DECLINED, pocnetv1.Status_STATUS_REJECTED, pocnetv1.Status_STATUS_UNDELIVERABLE:
		return 4
	default:
		return 0
	}
}

// checkAtRest searches every file of the three nodes' data directories,
// once the nodes have stopped, for the subject and body of every
// communication of the demo: payloads travel sealed to the recipient
// state's key, and whatever a node writes is sealed with its data key.
func (d *demo) checkAtRest() error {
	var needles []string
	for _, m := range d.sent {
		for _, s := range []string{m.GetCommunication().GetSubject(), m.GetCommunication().GetBody()} {
			if s != "" {
				needles = append(needles, s)
			}
		}
	}
	if len(needles) == 0 {
		return errors.New("no communication to search the data directories for")
	}
	section(d.out, "Sealed end to end and at rest",
		"Envelopes travel sealed to the recipient state's published key (ML-KEM-768+X25519 with AES-256-GCM) and signed with the sender state's Ed25519 key; every value a node writes to disk is sealed again with its own data key. The demo now searches the nodes' data directories for the plain text of every subject and body it sent.")
	files, size := 0, int64(0)
	for _, s := range d.order {
		root := filepath.Join(filepath.Dir(d.nodes[s].config), "data")
		err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files++
			size += int64(len(b))
			for _, n := range needles {
				if bytes.Contains(b, []byte(n)) {
					return fmt.Errorf("%q is readable in %s", oneLine(n, 40), p)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("searching the data directory of %s: %w", s, err)
		}
	}
	d.detail("searched %d files (%.1f MiB) in the data directories of %s", files, float64(size)/(1<<20), andList(d.order))
	d.detail("for %d subjects and bodies: none is there in clear", len(needles))
	return nil
}
