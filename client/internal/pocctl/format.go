package pocctl

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/client"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// ago says how far t is from now in the largest sensible unit: "just now",
// "3m ago", "5h ago", "2d ago", or "in 2h" for the future.
func ago(t, now time.Time) string {
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < 30*time.Second && !future:
		return "just now"
	case future && d < 90*time.Second:
		// A deadline seconds away (a short silence period) is shown as such.
		s = fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds()))
	case d < 90*time.Minute:
		s = fmt.Sprintf("%dm", int((d + 30*time.Second).Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh", int((d + 30*time.Minute).Hours()))
	default:
		s = fmt.Sprintf("%dd", int((d+12*time.Hour).Hours()/24))
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

// when formats a time as UTC RFC3339 and relative to now, or "-" if unset.
func when(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	t := ts.AsTime()
	return t.UTC().Format(time.RFC3339) + " (" + ago(t, now) + ")"
}

// utc formats a time as UTC RFC3339, or "-" if unset.
func utc(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func party(state, role string) string {
	if role == "" {
		return state
	}
	return state + "/" + role
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// describeStatus says in words where an outbound message stands.
func describeStatus(m *pocnetv1.Message) string {
	to := m.GetToState()
	reason := m.GetStatusReason()
	withReason := func(s string) string {
		if reason == "" {
			return s
		}
		return s + ": " + reason
	}
	switch m.GetStatus() {
	case pocnetv1.Status_STATUS_ACCEPTED:
		return fmt.Sprintf("ACCEPTED — stored by your node (%s), waiting for delivery to %s", m.GetFromState(), to)
	case pocnetv1.Status_STATUS_DELIVERED:
		if m.GetReceipt() != nil {
			return fmt.Sprintf("DELIVERED — stored by %s's node, signed receipt", to)
		}
		return fmt.Sprintf("DELIVERED — stored by %s's node", to)
	case pocnetv1.Status_STATUS_ACKNOWLEDGED:
		return fmt.Sprintf("ACKNOWLEDGED — %s acknowledged it", to)
	case pocnetv1.Status_STATUS_RESPONDED:
		return fmt.Sprintf("RESPONDED — %s responded", to)
	case pocnetv1.Status_STATUS_DECLINED:
		return withReason(fmt.Sprintf("DECLINED — %s declined it", to))
	case pocnetv1.Status_STATUS_REJECTED:
		return withReason(fmt.Sprintf("REJECTED — refused by %s's published policy", to))
	case pocnetv1.Status_STATUS_UNDELIVERABLE:
		if reason == "" {
			return fmt.Sprintf("UNDELIVERABLE — not delivered to %s before it expired", to)
		}
		return fmt.Sprintf("UNDELIVERABLE — not delivered to %s: %s", to, reason)
	default:
		return client.StatusName(m.GetStatus())
	}
}

// overdueNote is the plain note for an outbound communication whose
// respond-by time passed without an answer. Answering is voluntary: this is
// a normal outcome and is never shown as an error.
func overdueNote(m *pocnetv1.Message) string {
	if !m.GetAnswerOverdue() {
		return ""
	}
	return "no answer by requested time (" + utc(m.GetCommunication().GetRespondBy()) + ")"
}

// what names what a message is: the kind of a communication, or the kind of
// answer.
func what(m *pocnetv1.Message) string {
	switch m.GetType() {
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION:
		return client.KindName(m.GetCommunication().GetKind())
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE:
		if k := m.GetCommunication().GetKind(); k != pocnetv1.Kind_KIND_UNSPECIFIED {
			return "response (" + client.KindName(k) + ")"
		}
		return "response"
	default:
		return client.EnvelopeTypeName(m.GetType())
	}
}

// subject is the one-line summary of a message, marked if it is part of an
// exercise. Answers without content describe themselves.
func subject(m *pocnetv1.Message) string {
	var s string
	switch {
	case m.GetCommunication() != nil:
		s = m.GetCommunication().GetSubject()
	case m.GetType() == pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT:
		s = "acknowledgement of " + m.GetInReplyTo()
		if n := m.GetAcknowledgementNote(); n != "" {
			s += ": " + n
		}
	case m.GetType() == pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
		s = "decline of " + m.GetInReplyTo()
		if r := m.GetDeclineReason(); r != "" {
			s += ": " + r
		}
	}
	s = oneLine(s, 80)
	if m.GetCommunication().GetExercise() {
		s = "[EXERCISE] " + s
	}
	return s
}

// oneLine keeps a text to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func urgency(m *pocnetv1.Message) string {
	if m.GetCommunication() == nil {
		return "-"
	}
	return client.UrgencyName(m.GetCommunication().GetUrgency())
}

// row writes one table row, leaving out empty trailing cells so that no line
// ends in padding.
func row(w io.Writer, cells ...string) {
	for len(cells) > 0 && cells[len(cells)-1] == "" {
		cells = cells[:len(cells)-1]
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// writeInbox writes inbound messages as a table.
func writeInbox(w io.Writer, msgs []*pocnetv1.Message, now time.Time) error {
	if len(msgs) == 0 {
		_, err := fmt.Fprintln(w, "No inbound messages.")
		return err
	}
	tw := table(w)
	fmt.Fprintln(tw, "ID\tRECEIVED\tFROM\tTO\tWHAT\tURGENCY\tSUBJECT\tSTATE")
	for _, m := range msgs {
		t := m.GetReceivedAt()
		if t == nil {
			t = m.GetCreatedAt()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.GetId(), when(t, now),
			party(m.GetFromState(), m.GetFromRole()), party(m.GetToState(), m.GetToRole()),
			what(m), urgency(m), subject(m), client.LocalStateName(m.GetLocalState()))
	}
	return tw.Flush()
}

// writeSent writes outbound messages as a table.
func writeSent(w io.Writer, msgs []*pocnetv1.Message, now time.Time) error {
	if len(msgs) == 0 {
		_, err := fmt.Fprintln(w, "No outbound messages.")
		return err
	}
	tw := table(w)
	fmt.Fprintln(tw, "ID\tSENT\tFROM\tTO\tWHAT\tURGENCY\tSUBJECT\tSTATUS")
	for _, m := range msgs {
		st := client.StatusName(m.GetStatus())
		if r := m.GetStatusReason(); r != "" {
			st += ": " + oneLine(r, 60)
		}
		if n := overdueNote(m); n != "" {
			st += "; " + n
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.GetId(), when(m.GetCreatedAt(), now),
			party(m.GetFromState(), m.GetFromRole()), party(m.GetToState(), m.GetToRole()),
			what(m), urgency(m), subject(m), st)
	}
	return tw.Flush()
}

// writeHeader writes who sent what to whom, when, and where it stands.
func writeHeader(tw io.Writer, m *pocnetv1.Message, now time.Time) {
	fmt.Fprintf(tw, "Message\t%s\n", m.GetId())
	fmt.Fprintf(tw, "Type\t%s (%s)\n", client.EnvelopeTypeWords(m.GetType()), client.DirectionName(m.GetDirection()))
	fmt.Fprintf(tw, "From\t%s\n", party(m.GetFromState(), m.GetFromRole()))
	fmt.Fprintf(tw, "To\t%s\n", party(m.GetToState(), m.GetToRole()))
	fmt.Fprintf(tw, "Created\t%s\n", when(m.GetCreatedAt(), now))
	if m.GetReceivedAt() != nil {
		fmt.Fprintf(tw, "Received\t%s\n", when(m.GetReceivedAt(), now))
	}
	if m.GetExpiresAt() != nil && m.GetDirection() == pocnetv1.Direction_DIRECTION_OUTBOUND {
		fmt.Fprintf(tw, "Expires\t%s\n", when(m.GetExpiresAt(), now))
	}
	if m.GetThreadId() != "" && m.GetThreadId() != m.GetId() {
		fmt.Fprintf(tw, "Thread\t%s\n", m.GetThreadId())
	}
	if m.GetInReplyTo() != "" {
		fmt.Fprintf(tw, "In reply to\t%s\n", m.GetInReplyTo())
	}
	if m.GetRequestId() != "" {
		fmt.Fprintf(tw, "Request id\t%s\n", m.GetRequestId())
	}
	switch m.GetDirection() {
	case pocnetv1.Direction_DIRECTION_OUTBOUND:
		fmt.Fprintf(tw, "Status\t%s\n", describeStatus(m))
		if n := overdueNote(m); n != "" {
			fmt.Fprintf(tw, "\t%s\n", n)
		}
	case pocnetv1.Direction_DIRECTION_INBOUND:
		fmt.Fprintf(tw, "Local state\t%s (never sent to anyone)\n", client.LocalStateName(m.GetLocalState()))
	}
	fmt.Fprintf(tw, "Receipt\t%s\n", yesNo(m.GetReceipt() != nil))
}

// writeCommunication writes the template fields, the body and the incident.
func writeCommunication(w io.Writer, c *pocnetv1.Communication, now time.Time) {
	tw := table(w)
	fmt.Fprintf(tw, "Kind\t%s (%s)\n", client.KindWords(c.GetKind()), client.KindName(c.GetKind()))
	fmt.Fprintf(tw, "Urgency\t%s\n", client.UrgencyName(c.GetUrgency()))
	if c.GetExercise() {
		fmt.Fprintf(tw, "Exercise\tyes — EXERCISE, not a real incident\n")
	}
	if c.GetLanguage() != "" {
		fmt.Fprintf(tw, "Language\t%s\n", c.GetLanguage())
	}
	if h := c.GetHandlingCode(); h != pocnetv1.HandlingCode_HANDLING_CODE_UNSPECIFIED {
		s := client.HandlingWords(h)
		if c.GetHandlingNote() != "" {
			s += ": " + c.GetHandlingNote()
		}
		fmt.Fprintf(tw, "Handling\t%s\n", s)
	}
	if c.GetRespondBy() != nil {
		fmt.Fprintf(tw, "Respond by\t%s (requested; answering is voluntary)\n", when(c.GetRespondBy(), now))
	}
	if c.GetRequestedAction() != "" {
		fmt.Fprintf(tw, "Requested action\t%s\n", c.GetRequestedAction())
	}
	if len(c.GetReferences()) > 0 {
		fmt.Fprintf(tw, "References\t%s\n", strings.Join(c.GetReferences(), ", "))
	}
	fmt.Fprintf(tw, "Subject\t%s\n", c.GetSubject())
	tw.Flush()
	if c.GetBody() != "" {
		fmt.Fprintf(w, "\n%s\n", indent(strings.TrimRight(c.GetBody(), "\n"), "  "))
	}
	inc := c.GetIncident()
	if inc == nil {
		return
	}
	fmt.Fprintln(w, "\nIncident")
	tw = table(w)
	for _, t := range []struct {
		name string
		ts   *timestamppb.Timestamp
	}{{"Detected", inc.GetDetectedAt()}, {"Started", inc.GetStartedAt()}, {"Ended", inc.GetEndedAt()}} {
		if t.ts != nil {
			fmt.Fprintf(tw, "  %s\t%s\n", t.name, when(t.ts, now))
		}
	}
	if len(inc.GetAffectedSectors()) > 0 {
		fmt.Fprintf(tw, "  Sectors\t%s\n", strings.Join(inc.GetAffectedSectors(), ", "))
	}
	if len(inc.GetStixBundle()) > 0 {
		fmt.Fprintf(tw, "  STIX bundle\t%d bytes (see --output json)\n", len(inc.GetStixBundle()))
	}
	tw.Flush()
	if len(inc.GetIndicators()) > 0 {
		fmt.Fprintln(w, "  Indicators")
		tw = table(w)
		for _, in := range inc.GetIndicators() {
			row(tw, "    "+in.GetType(), in.GetValue(), in.GetDescription())
		}
		tw.Flush()
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n")
}

// writeTrail writes an outbound message's status trail, oldest first.
func writeTrail(w io.Writer, m *pocnetv1.Message, now time.Time) {
	if len(m.GetHistory()) == 0 {
		return
	}
	fmt.Fprintln(w, "\nStatus trail")
	tw := table(w)
	for _, h := range m.GetHistory() {
		row(tw, "  "+when(h.GetAt(), now), client.StatusName(h.GetStatus()), h.GetReason())
	}
	tw.Flush()
}

// writeMessage writes everything about one message, with its answers (those
// that could be loaded; the others by id).
func writeMessage(w io.Writer, m *pocnetv1.Message, answers []*pocnetv1.Message, now time.Time) error {
	tw := table(w)
	writeHeader(tw, m, now)
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case m.GetCommunication() != nil:
		fmt.Fprintln(w)
		writeCommunication(w, m.GetCommunication(), now)
	case m.GetType() == pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT:
		fmt.Fprintf(w, "\nAcknowledgement of %s", m.GetInReplyTo())
		if m.GetAcknowledgementNote() != "" {
			fmt.Fprintf(w, ": %s", m.GetAcknowledgementNote())
		}
		fmt.Fprintln(w)
	case m.GetType() == pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
		fmt.Fprintf(w, "\nDecline of %s", m.GetInReplyTo())
		if m.GetDeclineReason() != "" {
			fmt.Fprintf(w, ": %s", m.GetDeclineReason())
		} else {
			fmt.Fprint(w, " (no reason given)")
		}
		fmt.Fprintln(w)
	}
	writeTrail(w, m, now)
	if len(m.GetAnswerIds()) > 0 {
		fmt.Fprintln(w, "\nAnswers")
		tw := table(w)
		byID := make(map[string]*pocnetv1.Message, len(answers))
		for _, a := range answers {
			byID[a.GetId()] = a
		}
		for _, id := range m.GetAnswerIds() {
			a, ok := byID[id]
			if !ok {
				row(tw, "  "+id)
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", id, when(a.GetCreatedAt(), now), what(a), subject(a))
		}
		tw.Flush()
	}
	return nil
}

// writeThread writes a thread as a conversation, oldest first.
func writeThread(w io.Writer, msgs []*pocnetv1.Message, now time.Time) error {
	if len(msgs) == 0 {
		_, err := fmt.Fprintln(w, "Empty thread.")
		return err
	}
	fmt.Fprintf(w, "Thread %s — %d message(s)\n", msgs[0].GetThreadId(), len(msgs))
	for i, m := range msgs {
		fmt.Fprintf(w, "\n[%d] %s  %s → %s  %s", i+1, when(m.GetCreatedAt(), now),
			party(m.GetFromState(), m.GetFromRole()), party(m.GetToState(), m.GetToRole()),
			client.EnvelopeTypeWords(m.GetType()))
		if c := m.GetCommunication(); c != nil {
			fmt.Fprintf(w, ", %s, %s", client.KindWords(c.GetKind()), client.UrgencyName(c.GetUrgency()))
			if c.GetExercise() {
				fmt.Fprint(w, "  [EXERCISE]")
			}
		}
		fmt.Fprintf(w, "\n    id %s\n", m.GetId())
		switch {
		case m.GetCommunication() != nil:
			c := m.GetCommunication()
			fmt.Fprintf(w, "    Subject: %s\n", c.GetSubject())
			if c.GetBody() != "" {
				fmt.Fprintf(w, "%s\n", indent(strings.TrimRight(c.GetBody(), "\n"), "    | "))
			}
			if c.GetRespondBy() != nil {
				fmt.Fprintf(w, "    Respond by %s\n", utc(c.GetRespondBy()))
			}
		case m.GetAcknowledgementNote() != "":
			fmt.Fprintf(w, "    Note: %s\n", m.GetAcknowledgementNote())
		case m.GetType() == pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
			r := m.GetDeclineReason()
			if r == "" {
				r = "(no reason given)"
			}
			fmt.Fprintf(w, "    Reason: %s\n", r)
		}
		if m.GetDirection() == pocnetv1.Direction_DIRECTION_OUTBOUND {
			fmt.Fprintf(w, "    Status: %s\n", describeStatus(m))
			if n := overdueNote(m); n != "" {
				fmt.Fprintf(w, "    %s\n", n)
			}
		}
	}
	return nil
}

// writeMessageStatus writes where a message stands and its trail.
func writeMessageStatus(w io.Writer, m *pocnetv1.Message, now time.Time) error {
	tw := table(w)
	fmt.Fprintf(tw, "Message\t%s\n", m.GetId())
	fmt.Fprintf(tw, "What\t%s %s, %s → %s\n", client.DirectionName(m.GetDirection()), client.EnvelopeTypeWords(m.GetType()),
		party(m.GetFromState(), m.GetFromRole()), party(m.GetToState(), m.GetToRole()))
	if m.GetDirection() == pocnetv1.Direction_DIRECTION_INBOUND {
		fmt.Fprintf(tw, "Local state\t%s (never sent to anyone)\n", client.LocalStateName(m.GetLocalState()))
	} else {
		fmt.Fprintf(tw, "Status\t%s\n", describeStatus(m))
		if n := overdueNote(m); n != "" {
			fmt.Fprintf(tw, "\t%s\n", n)
		}
	}
	fmt.Fprintf(tw, "Receipt\t%s\n", yesNo(m.GetReceipt() != nil))
	if len(m.GetAnswerIds()) > 0 {
		fmt.Fprintf(tw, "Answers\t%s\n", strings.Join(m.GetAnswerIds(), ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	writeTrail(w, m, now)
	return nil
}

// writeEvent writes one event as one line.
func writeEvent(w io.Writer, ev *pocnetv1.Event, now time.Time) error {
	m := ev.GetMessage()
	head := fmt.Sprintf("%s  #%d  ", utc(ev.GetOccurredAt()), ev.GetSeq())
	var err error
	switch ev.GetType() {
	case pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED:
		_, err = fmt.Fprintf(w, "%sRECEIVED  %s  %s → %s  %s  %s  %s\n", head, ev.GetMessageId(),
			party(m.GetFromState(), m.GetFromRole()), party(m.GetToState(), m.GetToRole()),
			what(m), urgency(m), subject(m))
	case pocnetv1.EventType_EVENT_TYPE_STATUS_CHANGED:
		st := describeStatus(m)
		if m == nil || m.GetStatus() != ev.GetStatus() {
			// The message has moved on since; the event's own status is what
			// happened at this point.
			st = client.StatusName(ev.GetStatus())
		}
		_, err = fmt.Fprintf(w, "%sSTATUS    %s  %s → %s  %s  %s\n", head, ev.GetMessageId(),
			party(m.GetFromState(), m.GetFromRole()), party(m.GetToState(), m.GetToRole()),
			subject(m), st)
	default:
		_, err = fmt.Fprintf(w, "%s%s  %s\n", head, client.EventTypeName(ev.GetType()), ev.GetMessageId())
	}
	return err
}

func hours(h *pocnetv1.Hours) string {
	if h == nil {
		return "-"
	}
	s := h.GetDescription()
	if h.GetAroundTheClock() {
		s = "24/7"
	}
	if h.GetTimeZone() != "" {
		s += " (" + h.GetTimeZone() + ")"
	}
	if s == "" {
		return "-"
	}
	return s
}

func kinds(ks []pocnetv1.Kind) string {
	if len(ks) == 0 {
		return "-"
	}
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = client.KindName(k)
	}
	return strings.Join(s, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func languages(l []string) string {
	if len(l) == 0 {
		return "any"
	}
	return strings.Join(l, ",")
}

// writePoCs writes points of contact as an indented table.
func writePoCs(w io.Writer, pocs []*pocnetv1.PointOfContact) error {
	if len(pocs) == 0 {
		_, err := fmt.Fprintln(w, "  (no points of contact listed)")
		return err
	}
	tw := table(w)
	fmt.Fprintln(tw, "  ROLE\tORGANISATION\tPOSITION\tLANGUAGES\tHOURS\tACCEPTS")
	for _, p := range pocs {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", p.GetRole(), orDash(p.GetOrganisation()), orDash(p.GetPosition()),
			languages(p.GetLanguages()), hours(p.GetHours()), kinds(p.GetAcceptedKinds()))
	}
	return tw.Flush()
}

// writeDirectory writes the members of the federation and their PoCs.
func writeDirectory(w io.Writer, d *pocnetv1.Directory) error {
	fmt.Fprintf(w, "Federation %s — %d member(s)\n", d.GetFederationId(), len(d.GetMembers()))
	return writeMembers(w, d)
}

// writePolicy writes what a state publishes about its PoCs.
func writePolicy(w io.Writer, p *pocnetv1.GetPolicyResponse) error {
	fmt.Fprintf(w, "Points of contact of %s\n", p.GetState())
	return writePoCs(w, p.GetPointsOfContact())
}

// writeNodeStatus writes the node's status and delivery to each peer.
func writeNodeStatus(w io.Writer, s *pocnetv1.GetNodeStatusResponse, now time.Time) error {
	tw := table(w)
	fmt.Fprintf(tw, "Federation\t%s\n", s.GetFederationId())
	fmt.Fprintf(tw, "State\t%s\n", s.GetState())
	fmt.Fprintf(tw, "You are\t%s (role %s)\n", s.GetCallerIdentity(), orDash(s.GetCallerRole()))
	fmt.Fprintf(tw, "Last event seq\t%d\n", s.GetLastEventSeq())
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.GetPeers()) == 0 {
		_, err := fmt.Fprintln(w, "\nNo peers.")
		return err
	}
	fmt.Fprintln(w)
	tw = table(w)
	fmt.Fprintln(tw, "PEER\tPENDING\tREACHABLE\tLAST CONTACT\tNEXT ATTEMPT\tLAST ERROR")
	for _, p := range s.GetPeers() {
		next := "-"
		if p.GetPending() > 0 {
			next = when(p.GetNextAttempt(), now)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", p.GetState(), p.GetPending(), yesNo(p.GetReachable()),
			when(p.GetLastContact(), now), next, orDash(oneLine(p.GetLastError(), 100)))
	}
	return tw.Flush()
}
