package pocctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Limits the node enforces too; checking them here names the flag.
const (
	maxSubject   = 200
	maxBody      = 64 << 10
	maxStix      = 1 << 20
	maxRequestID = 128
)

// contentFlags are the flags that fill in a Communication, shared by send and
// respond.
type contentFlags struct {
	kind, urgency, subject, body, bodyFile, language   string
	respondBy, requestedAction, handling, handlingNote string
	exercise                                           bool
	requestID                                          string
	sectors, indicators, references                    []string
	stixFile                                           string
	// bodyText is the content of --body-file once read.
	bodyText []byte
}

func (f *contentFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.kind, "kind", "", "kind of communication: "+strings.Join(client.KindNames(), ", "))
	fs.StringVar(&f.urgency, "urgency", "routine", "urgency: "+strings.Join(client.UrgencyNames(), ", "))
	fs.StringVar(&f.subject, "subject", "", "one-line summary (at most 200 characters)")
	fs.StringVar(&f.body, "body", "", "text of the communication")
	fs.StringVar(&f.bodyFile, "body-file", "", "read the text from this file ('-' for standard input)")
	fs.StringVar(&f.language, "language", "en", "BCP 47 language tag of subject and body")
	fs.StringVar(&f.respondBy, "respond-by", "", "answer wished by: a duration from now (2h, 90m, 3d) or an RFC3339 time")
	fs.StringVar(&f.requestedAction, "requested-action", "", "what you ask the recipient to do")
	fs.StringVar(&f.handling, "handling", "none", "handling code: "+strings.Join(client.HandlingNames(), ", "))
	fs.StringVar(&f.handlingNote, "handling-note", "", "what an originator-defined handling code means (with --handling originator)")
	fs.BoolVar(&f.exercise, "exercise", false, "mark as part of an exercise")
	fs.StringVar(&f.requestID, "request-id", "", "your own id for this request; repeating it never creates a second message (default: a fresh UUIDv7)")
	fs.StringArrayVar(&f.sectors, "sector", nil, "affected sector, e.g. energy (repeatable)")
	fs.StringArrayVar(&f.indicators, "indicator", nil, "technical indicator as type=value, e.g. ipv4-addr=203.0.113.7 (repeatable)")
	fs.StringArrayVar(&f.references, "reference", nil, "id of an earlier message this one refers to (repeatable)")
	fs.StringVar(&f.stixFile, "stix-file", "", "attach this STIX 2.1 bundle (JSON, at most 1 MiB)")
}

// parseWhen reads a time given as a duration from now (Go syntax, plus "d"
// for days) or as an RFC3339 time. It must lie in the future.
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		if !t.After(now) {
			return time.Time{}, usagef("--%s: %s is in the past", flag, t.UTC().Format(time.RFC3339))
		}
		return t, nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return time.Time{}, usagef("--%s: %q is neither a duration from now (e.g. 2h, 90m, 3d) nor an RFC3339 time (e.g. 2026-05-01T18:00:00Z)", flag, s)
	}
	if d <= 0 {
		return time.Time{}, usagef("--%s: %q must be a positive duration", flag, s)
	}
	return now.Add(d), nil
}

// parseDuration is time.ParseDuration that also accepts whole days ("3d",
// "1d12h").
func parseDuration(s string) (time.Duration, error) {
	if i := strings.Index(s, "d"); i > 0 {
		days, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, err
		}
		d := time.Duration(days) * 24 * time.Hour
		if rest := s[i+1:]; rest != "" {
			r, err := time.ParseDuration(rest)
			if err != nil {
				return 0, err
			}
			d += r
		}
		return d, nil
	}
	return time.ParseDuration(s)
}

// communication builds a Communication from the flags. Flags not given take
// their value from defaults (nil means the flags' own defaults).
func (f *contentFlags) communication(fs *pflag.FlagSet, defaults *pocnetv1.Communication, stdin io.Reader, now time.Time) (*pocnetv1.Communication, error) {
	c := &pocnetv1.Communication{}
	var err error
	if fs.Changed("kind") || defaults == nil {
		if c.Kind, err = client.ParseKind(f.kind); err != nil {
			return nil, usagef("--kind: %v", err)
		}
	} else {
		c.Kind = defaults.GetKind()
	}
	if fs.Changed("urgency") || defaults == nil {
		if c.Urgency, err = client.ParseUrgency(f.urgency); err != nil {
			return nil, usagef("--urgency: %v", err)
		}
	} else {
		c.Urgency = defaults.GetUrgency()
	}
	if fs.Changed("handling") || defaults == nil {
		if c.HandlingCode, err = client.ParseHandling(f.handling); err != nil {
			return nil, usagef("--handling: %v", err)
		}
	} else {
		c.HandlingCode = defaults.GetHandlingCode()
	}
	c.HandlingNote = f.handlingNote
	if c.HandlingCode == pocnetv1.HandlingCode_HANDLING_CODE_ORIGINATOR_DEFINED && c.HandlingNote == "" {
		if defaults == nil || fs.Changed("handling") {
			return nil, usagef("--handling originator needs --handling-note saying what it means")
		}
		c.HandlingNote = defaults.GetHandlingNote()
	}
	if c.HandlingNote != "" && c.HandlingCode != pocnetv1.HandlingCode_HANDLING_CODE_ORIGINATOR_DEFINED {
		return nil, usagef("--handling-note is only for --handling originator")
	}

	c.Subject = strings.TrimSpace(f.subject)
	if !fs.Changed("subject") && defaults != nil {
		c.Subject = defaults.GetSubject()
	}
	if c.Subject == "" {
		return nil, usagef("--subject is required")
	}
	if n := len([]rune(c.Subject)); n > maxSubject {
		return nil, usagef("--subject: %d characters, at most %d", n, maxSubject)
	}
	if strings.ContainsAny(c.Subject, "\r\n") {
		return nil, usagef("--subject must be one line")
	}

	switch {
	case fs.Changed("body") && fs.Changed("body-file"):
		return nil, usagef("--body and --body-file cannot be used together")
	case fs.Changed("body-file"):
		if f.bodyText == nil {
			b, err := readFile(f.bodyFile, stdin, maxBody)
			if err != nil {
				return nil, usagef("--body-file: %v", err)
			}
			// Kept, so that standard input is read once however often the
			// communication is built.
			f.bodyText = b
		}
		c.Body = string(f.bodyText)
	default:
		c.Body = f.body
	}
	if len(c.Body) > maxBody {
		return nil, usagef("--body: %d bytes, at most %d", len(c.Body), maxBody)
	}

	c.Language = f.language
	if !fs.Changed("language") && defaults.GetLanguage() != "" {
		c.Language = defaults.GetLanguage()
	}
	if f.respondBy != "" {
		t, err := parseWhen("respond-by", f.respondBy, now)
		if err != nil {
			return nil, err
		}
		c.RespondBy = timestamppb.New(t)
	}
	c.RequestedAction = f.requestedAction
	// A response to an exercise is part of the same exercise.
	c.Exercise = f.exercise || defaults.GetExercise()
	c.References = f.references

	inc := &pocnetv1.IncidentDetails{AffectedSectors: f.sectors}
	for _, s := range f.indicators {
		typ, value, ok := strings.Cut(s, "=")
		typ, value = strings.TrimSpace(typ), strings.TrimSpace(value)
		if !ok || typ == "" || value == "" {
			return nil, usagef("--indicator %q: want type=value, e.g. ipv4-addr=203.0.113.7 or domain-name=bad.example", s)
		}
		inc.Indicators = append(inc.Indicators, &pocnetv1.Indicator{Type: typ, Value: value})
	}
	if f.stixFile != "" {
		b, err := readFile(f.stixFile, stdin, maxStix)
		if err != nil {
			return nil, usagef("--stix-file: %v", err)
		}
		if !json.Valid(b) {
			return nil, usagef("--stix-file %s: not JSON (a STIX 2.1 bundle is a JSON object)", f.stixFile)
		}
		inc.StixBundle = b
	}
	if len(inc.AffectedSectors) > 0 || len(inc.Indicators) > 0 || len(inc.StixBundle) > 0 {
		c.Incident = inc
	}
	if len(f.requestID) > maxRequestID {
		return nil, usagef("--request-id: %d characters, at most %d", len(f.requestID), maxRequestID)
	}
	return c, nil
}

// readFile reads a file, or stdin for "-", refusing more than limit bytes.
func readFile(name string, stdin io.Reader, limit int64) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, limit)
	}
	return b, nil
}

// sendFlags are the flags of send.
type sendFlags struct {
	contentFlags
	to, role, fromRole, expires string
}

// request builds the SendCommunicationRequest, checking every flag.
func (f *sendFlags) request(fs *pflag.FlagSet, stdin io.Reader, now time.Time) (*pocnetv1.SendCommunicationRequest, error) {
	to := strings.ToUpper(strings.TrimSpace(f.to))
	if err := identity.ValidateState(to); err != nil {
		return nil, usagef("--to: %v", err)
	}
	if err := identity.ValidateRole(f.role); err != nil {
		return nil, usagef("--role: %v; see 'pocctl policy %s' for the roles %s lists", err, to, to)
	}
	if f.fromRole != "" {
		if err := identity.ValidateRole(f.fromRole); err != nil {
			return nil, usagef("--from-role: %v", err)
		}
	}
	comm, err := f.communication(fs, nil, stdin, now)
	if err != nil {
		return nil, err
	}
	req := &pocnetv1.SendCommunicationRequest{
		RequestId:     f.requestID,
		ToState:       to,
		ToRole:        f.role,
		FromRole:      f.fromRole,
		Communication: comm,
	}
	if f.expires != "" {
		t, err := parseWhen("expires", f.expires, now)
		if err != nil {
			return nil, err
		}
		req.ExpiresAt = timestamppb.New(t)
	}
	return req, nil
}

func (a *app) sendCmd() *cobra.Command {
	var f sendFlags
	cmd := &cobra.Command{
		Use:   "send --to STATE --role ROLE --kind KIND --subject S [--body B | --body-file F]",
		Short: "Send a communication to another state's point of contact",
		Example: `  pocctl send --to XBB --role technical --kind rfi --urgency urgent \
      --subject "Scanning from 203.0.113.0/24" --body-file report.txt \
      --respond-by 2h --handling no-onward --indicator ipv4-addr=203.0.113.7`,
		Args: exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			req, err := f.request(cmd.Flags(), a.env.Stdin, a.now())
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				m, err := c.Send(ctx, req)
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(m, false)
				}
				return writeSent1(a.env.Stdout, "Sent", m, req.RequestId)
			})
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&f.to, "to", "", "recipient state (ISO 3166-1 alpha-3, e.g. XBB)")
	fs.StringVar(&f.role, "role", "", "recipient PoC role, as the recipient lists it (e.g. technical)")
	fs.StringVar(&f.fromRole, "from-role", "", "PoC role you send for (required when you are admin)")
	fs.StringVar(&f.expires, "expires", "", "give up delivery after: a duration (72h, 3d) or an RFC3339 time (default: 7 days)")
	f.register(fs)
	for _, name := range []string{"to", "role", "kind", "subject"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// writeSent1 reports one message just sent: its id and status.
func writeSent1(w io.Writer, verb string, m *pocnetv1.Message, requestID string) error {
	tw := table(w)
	fmt.Fprintf(tw, "%s\t%s\n", verb, m.GetId())
	fmt.Fprintf(tw, "To\t%s\n", party(m.GetToState(), m.GetToRole()))
	fmt.Fprintf(tw, "Status\t%s\n", describeStatus(m))
	if requestID != "" {
		fmt.Fprintf(tw, "Request id\t%s\n", requestID)
	}
	return tw.Flush()
}

func (a *app) respondCmd() *cobra.Command {
	var f contentFlags
	cmd := &cobra.Command{
		Use:   "respond ID --body B [--subject S] [content flags as for send]",
		Short: "Respond to an inbound communication with a communication of your own",
		Long: `respond answers an inbound communication. Kind, urgency, language,
handling and the exercise mark default to those of the communication
answered, and the subject to "Re: <its subject>".`,
		Args: exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			id := args[0]
			fs := cmd.Flags()
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				orig, err := c.Get(ctx, id)
				if err != nil {
					return err
				}
				defaults := proto2Defaults(orig)
				comm, err := f.communication(fs, defaults, a.env.Stdin, a.now())
				if err != nil {
					return err
				}
				reqID := f.requestID
				if reqID == "" {
					reqID = client.NewRequestID()
				}
				m, err := c.Respond(ctx, id, comm, reqID)
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(m, false)
				}
				return writeSent1(a.env.Stdout, "Responded with", m, reqID)
			})
		}),
	}
	f.register(cmd.Flags())
	return cmd
}

// proto2Defaults returns the defaults of a response to orig.
func proto2Defaults(orig *pocnetv1.Message) *pocnetv1.Communication {
	oc := orig.GetCommunication()
	subject := oc.GetSubject()
	if subject != "" && !strings.HasPrefix(strings.ToLower(subject), "re:") {
		subject = "Re: " + subject
	}
	if n := []rune(subject); len(n) > maxSubject {
		subject = string(n[:maxSubject])
	}
	kind := oc.GetKind()
	if kind == pocnetv1.Kind_KIND_UNSPECIFIED {
		kind = pocnetv1.Kind_KIND_OTHER
	}
	urgency := oc.GetUrgency()
	if urgency == pocnetv1.Urgency_URGENCY_UNSPECIFIED {
		urgency = pocnetv1.Urgency_URGENCY_ROUTINE
	}
	handling := oc.GetHandlingCode()
	if handling == pocnetv1.HandlingCode_HANDLING_CODE_UNSPECIFIED {
		handling = pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION
	}
	return &pocnetv1.Communication{
		Kind:         kind,
		Urgency:      urgency,
		Subject:      subject,
		Language:     oc.GetLanguage(),
		HandlingCode: handling,
		HandlingNote: oc.GetHandlingNote(),
		Exercise:     oc.GetExercise(),
	}
}
