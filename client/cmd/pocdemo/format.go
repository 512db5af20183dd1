package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/client"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Layout of the output: a step is "  +12.3s  text", and what belongs to a
// step is indented to its text.
const (
	stepIndent = "            "
	lineWidth  = 96
)

// section starts a part of the output, with an optional explanation.
func section(w io.Writer, title, explain string) {
	fmt.Fprintf(w, "\n%s\n%s\n", title, strings.Repeat("-", len([]rune(title))))
	if explain != "" {
		for _, l := range wrap(explain, lineWidth-2) {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// since returns t relative to the start of the demo, e.g. "+3.42s".
func (d *demo) since(t time.Time) string {
	return fmt.Sprintf("+%.2fs", t.Sub(d.t0).Seconds())
}

func (d *demo) sinceTS(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return d.since(ts.AsTime())
}

// step prints what happens now.
func (d *demo) step(format string, a ...any) { d.stepAt(time.Now(), format, a...) }

// stepAt prints what happened at t, e.g. when a node recorded an event.
func (d *demo) stepAt(t time.Time, format string, a ...any) {
	fmt.Fprintf(d.out, "  %8s  %s\n", d.since(t), fmt.Sprintf(format, a...))
}

// detail prints a line belonging to the step before it.
func (d *demo) detail(format string, a ...any) {
	fmt.Fprintf(d.out, "%s%s\n", stepIndent, fmt.Sprintf(format, a...))
}

// note prints an explanation for newcomers, wrapped.
func (d *demo) note(text string) {
	for i, l := range wrap(text, lineWidth-len(stepIndent)-3) {
		mark := "   "
		if i == 0 {
			mark = "-> "
		}
		fmt.Fprintf(d.out, "%s%s%s\n", stepIndent, mark, l)
	}
}

// wrap splits text into lines of at most width characters.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		switch {
		case line == "":
			line = w
		case len([]rune(line))+1+len([]rune(w)) > width:
			lines = append(lines, line)
			line = w
		default:
			line += " " + w
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// member returns state's directory entry.
func (d *demo) member(state string) (*pocnetv1.Member, bool) {
	for _, m := range d.fed.Directory.GetMembers() {
		if m.GetState() == state {
			return m, true
		}
	}
	return nil, false
}

// who names a PoC for people: "XBB/technical (National CERT of XBB)".
func (d *demo) who(state, role string) string {
	if m, ok := d.member(state); ok {
		for _, p := range m.GetPointsOfContact() {
			if p.GetRole() == role && p.GetOrganisation() != "" {
				return fmt.Sprintf("%s/%s (%s)", state, role, p.GetOrganisation())
			}
		}
	}
	return state + "/" + role
}

// kindsWords lists kinds in words.
func kindsWords(ks []pocnetv1.Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = client.KindWords(k)
	}
	return strings.Join(s, ", ")
}

// trail returns a message's status trail: "ACCEPTED +2.1s, DELIVERED +2.2s".
func (d *demo) trail(m *pocnetv1.Message) string {
	s := make([]string, len(m.GetHistory()))
	for i, h := range m.GetHistory() {
		s[i] = client.StatusName(h.GetStatus()) + " " + d.sinceTS(h.GetAt())
	}
	return strings.Join(s, ", ")
}

// article returns "a" or "an" for the word w.
func article(w string) string {
	if w != "" && strings.ContainsRune("aeiou", rune(w[0])) {
		return "an"
	}
	return "a"
}

// lastCause returns the innermost description of a gRPC error text, e.g.
// "transport: Error while dialing: dial tcp ...: connection refused".
func lastCause(s string) string {
	if i := strings.LastIndex(s, "desc = "); i >= 0 {
		s = s[i+len("desc = "):]
	}
	return strings.Trim(s, `"\`)
}

// oneLine shortens s to n characters on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// describe says what a message of a thread is, in one line.
func describe(m *pocnetv1.Message) string {
	switch m.GetType() {
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_ACKNOWLEDGEMENT:
		if n := m.GetAcknowledgementNote(); n != "" {
			return fmt.Sprintf("acknowledgement, note %q", n)
		}
		return "acknowledgement"
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_DECLINE:
		if r := m.GetDeclineReason(); r != "" {
			return fmt.Sprintf("decline, reason %q", oneLine(r, 70))
		}
		return "decline (no reason given)"
	case pocnetv1.EnvelopeType_ENVELOPE_TYPE_RESPONSE:
		return fmt.Sprintf("response %q", oneLine(m.GetCommunication().GetSubject(), 50))
	default:
		c := m.GetCommunication()
		return fmt.Sprintf("%s %s %q", client.UrgencyName(c.GetUrgency()), client.KindWords(c.GetKind()), oneLine(c.GetSubject(), 50))
	}
}

// andList joins words for people: "XAA", "XAA and XBB", "XAA, XBB and XCC".
func andList(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}
