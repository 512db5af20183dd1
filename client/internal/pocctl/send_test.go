package pocctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

var testNow = time.Date(2026, 3, 14, 3, 0, 0, 0, time.UTC)

// run runs pocctl in-process and returns the exit code, stdout and stderr.
func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, Env{
		Stdin:  strings.NewReader(stdin),
		Stdout: &out,
		Stderr: &errOut,
		Getenv: func(string) string { return "" },
		Now:    func() time.Time { return testNow },
	})
	return code, out.String(), errOut.String()
}

func TestUsageErrors(t *testing.T) {
	send := []string{"send", "--to", "XBB", "--role", "technical", "--kind", "rfi", "--subject", "S", "--body", "B",
		"--config", filepath.Join(t.TempDir(), "none.yaml")}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad kind names value and allowed ones", replace(send, "rfi", "rfq"), `pocctl: --kind: unknown kind "rfq" (one of: rfi, rfa, notification, consultations, check, other)`},
		{"bad urgency", append(send, "--urgency", "asap"), `--urgency: unknown urgency "asap" (one of: routine, priority, urgent)`},
		{"bad handling", append(send, "--handling", "tlp-red"), `--handling: unknown handling code "tlp-red" (one of: none, no-onward, no-judicial, originator)`},
		{"originator without note", append(send, "--handling", "originator"), "--handling originator needs --handling-note"},
		{"note without originator", append(send, "--handling-note", "x"), "--handling-note is only for --handling originator"},
		{"respond-by not parseable", append(send, "--respond-by", "tomorrow"), `--respond-by: "tomorrow" is neither a duration from now (e.g. 2h, 90m, 3d) nor an RFC3339 time`},
		{"respond-by in the past", append(send, "--respond-by", "2026-03-13T00:00:00Z"), "--respond-by: 2026-03-13T00:00:00Z is in the past"},
		{"respond-by negative", append(send, "--respond-by", "-2h"), `--respond-by: "-2h" must be a positive duration`},
		{"expires not parseable", append(send, "--expires", "soon"), `--expires: "soon" is neither a duration`},
		{"bad state", replace(send, "XBB", "Examplia"), `--to: "EXAMPLIA" is not an ISO 3166-1 alpha-3 state code`},
		{"bad role", replace(send, "technical", "Tech Team"), `--role: "Tech Team" is not a valid role`},
		{"bad indicator", append(send, "--indicator", "203.0.113.7"), `--indicator "203.0.113.7": want type=value`},
		{"body twice", append(send, "--body-file", "x.txt"), "--body and --body-file cannot be used together"},
		{"missing stix file", append(send, "--stix-file", filepath.Join(t.TempDir(), "no.json")), "--stix-file: open "},
		{"required flags", []string{"send", "--to", "XBB"}, `required flag(s) "kind", "role", "subject" not set`},
		{"bad output", []string{"--output", "yaml", "sent"}, `--output: "yaml" is not an output format (text or json)`},
		{"unknown flag", []string{"inbox", "--unread"}, "unknown flag: --unread"},
		{"unknown command", []string{"delete"}, `unknown command "delete" for "pocctl"`},
		{"show needs an id", []string{"show"}, "show needs 1 argument(s): [ID], got 0"},
		{"status takes one id", []string{"status", "a", "b"}, "status takes at most one argument"},
		{"inbox all and archived", []string{"inbox", "--all", "--archived"}, "--all and --archived cannot be used together"},
		{"policy state", []string{"policy", "examplia"}, `STATE: "EXAMPLIA" is not an ISO 3166-1 alpha-3 state code`},
		{"missing config names the flag", send, "(choose the file with --config or $POCCTL_CONFIG)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, "", tt.args...)
			if code != ExitUsage {
				t.Errorf("exit code %d, want %d (stderr %q)", code, ExitUsage, errOut)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.want)
			}
			if !strings.Contains(errOut, "--help' for usage.") {
				t.Errorf("stderr %q does not point to --help", errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if strings.Contains(errOut, "goroutine") {
				t.Errorf("stderr has a stack trace: %q", errOut)
			}
		})
	}
}

func replace(args []string, old, new string) []string {
	out := append([]string(nil), args...)
	for i, a := range out {
		if a == old {
			out[i] = new
		}
	}
	return out
}

// parseSend parses send's flags without running it and builds the request.
func parseSend(t *testing.T, stdin string, args ...string) (*pocnetv1.SendCommunicationRequest, error) {
	t.Helper()
	a := &app{env: Env{Now: func() time.Time { return testNow }}}
	cmd := a.sendCmd()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	return flagsOf(t, cmd).request(cmd.Flags(), strings.NewReader(stdin), testNow)
}

// flagsOf rebuilds sendFlags from a parsed command's flag values.
func flagsOf(t *testing.T, cmd *cobra.Command) *sendFlags {
	t.Helper()
	fs := cmd.Flags()
	str := func(n string) string { v, _ := fs.GetString(n); return v }
	arr := func(n string) []string { v, _ := fs.GetStringArray(n); return v }
	ex, _ := fs.GetBool("exercise")
	return &sendFlags{
		contentFlags: contentFlags{
			kind: str("kind"), urgency: str("urgency"), subject: str("subject"), body: str("body"),
			bodyFile: str("body-file"), language: str("language"), respondBy: str("respond-by"),
			requestedAction: str("requested-action"), handling: str("handling"), handlingNote: str("handling-note"),
			exercise: ex, requestID: str("request-id"), sectors: arr("sector"), indicators: arr("indicator"),
			references: arr("reference"), stixFile: str("stix-file"),
		},
		to: str("to"), role: str("role"), fromRole: str("from-role"), expires: str("expires"),
	}
}

func TestSendRequest(t *testing.T) {
	dir := t.TempDir()
	stix := filepath.Join(dir, "bundle.json")
	if err := os.WriteFile(stix, []byte(`{"type":"bundle","id":"bundle--1","objects":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	req, err := parseSend(t, "line one\nline two\n",
		"--to", "xbb", "--role", "technical", "--kind", "rfa", "--urgency", "urgent",
		"--subject", "Ransomware at grid operator", "--body-file", "-", "--language", "fr",
		"--respond-by", "2h", "--requested-action", "block the C2", "--handling", "originator",
		"--handling-note", "CERTs only", "--exercise", "--request-id", "req-42", "--from-role", "policy",
		"--sector", "energy", "--sector", "health", "--indicator", "ipv4-addr=203.0.113.7",
		"--indicator", "url=https://bad.example/?a=b", "--stix-file", stix, "--expires", "3d",
		"--reference", "0198-earlier")
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	c := req.GetCommunication()
	checks := []struct {
		name      string
		got, want any
	}{
		{"to", req.GetToState(), "XBB"},
		{"role", req.GetToRole(), "technical"},
		{"from role", req.GetFromRole(), "policy"},
		{"request id", req.GetRequestId(), "req-42"},
		{"expires", req.GetExpiresAt().AsTime(), testNow.Add(72 * time.Hour)},
		{"kind", c.GetKind(), pocnetv1.Kind_KIND_REQUEST_FOR_ASSISTANCE},
		{"urgency", c.GetUrgency(), pocnetv1.Urgency_URGENCY_URGENT},
		{"body", c.GetBody(), "line one\nline two\n"},
		{"language", c.GetLanguage(), "fr"},
		{"respond by", c.GetRespondBy().AsTime(), testNow.Add(2 * time.Hour)},
		{"action", c.GetRequestedAction(), "block the C2"},
		{"handling", c.GetHandlingCode(), pocnetv1.HandlingCode_HANDLING_CODE_ORIGINATOR_DEFINED},
		{"note", c.GetHandlingNote(), "CERTs only"},
		{"exercise", c.GetExercise(), true},
		{"references", strings.Join(c.GetReferences(), ","), "0198-earlier"},
		{"sectors", strings.Join(c.GetIncident().GetAffectedSectors(), ","), "energy,health"},
		{"indicators", len(c.GetIncident().GetIndicators()), 2},
		{"indicator value with =", c.GetIncident().GetIndicators()[1].GetValue(), "https://bad.example/?a=b"},
		{"stix", string(c.GetIncident().GetStixBundle()), `{"type":"bundle","id":"bundle--1","objects":[]}`},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}

	// Defaults.
	req, err = parseSend(t, "", "--to", "XBB", "--role", "technical", "--kind", "check", "--subject", "ping")
	if err != nil {
		t.Fatal(err)
	}
	c = req.GetCommunication()
	if c.GetUrgency() != pocnetv1.Urgency_URGENCY_ROUTINE || c.GetLanguage() != "en" ||
		c.GetHandlingCode() != pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION || c.GetIncident() != nil ||
		c.GetRespondBy() != nil || req.GetExpiresAt() != nil || req.GetRequestId() != "" {
		t.Errorf("defaults: %v", req)
	}
}

func TestParseWhen(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{"2h", testNow.Add(2 * time.Hour), ""},
		{"90m", testNow.Add(90 * time.Minute), ""},
		{"3d", testNow.Add(72 * time.Hour), ""},
		{"1d12h", testNow.Add(36 * time.Hour), ""},
		{"2026-03-14T18:00:00Z", time.Date(2026, 3, 14, 18, 0, 0, 0, time.UTC), ""},
		{"2026-03-14T18:00:00+01:00", time.Date(2026, 3, 14, 17, 0, 0, 0, time.UTC), ""},
		{"2026-03-14T02:00:00Z", time.Time{}, "--respond-by: 2026-03-14T02:00:00Z is in the past"},
		{"0s", time.Time{}, `--respond-by: "0s" must be a positive duration`},
		{"noon", time.Time{}, `--respond-by: "noon" is neither`},
		{"xd", time.Time{}, `--respond-by: "xd" is neither`},
	}
	for _, tt := range tests {
		got, err := parseWhen("respond-by", tt.in, testNow)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseWhen(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestResponseDefaults(t *testing.T) {
	orig := &pocnetv1.Message{Communication: &pocnetv1.Communication{
		Kind: pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, Urgency: pocnetv1.Urgency_URGENCY_URGENT,
		Subject: "Scanning", Language: "fr", Exercise: true,
		HandlingCode: pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION,
	}}
	a := &app{}
	cmd := a.respondCmd()
	if err := cmd.ParseFlags([]string{"--body", "We see it too."}); err != nil {
		t.Fatal(err)
	}
	var f contentFlags
	f.body = "We see it too."
	f.language = "en"
	f.urgency = "routine"
	f.handling = "none"
	c, err := f.communication(cmd.Flags(), proto2Defaults(orig), strings.NewReader(""), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if c.GetSubject() != "Re: Scanning" || c.GetKind() != pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION ||
		c.GetUrgency() != pocnetv1.Urgency_URGENCY_URGENT || c.GetLanguage() != "fr" || !c.GetExercise() ||
		c.GetHandlingCode() != pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION || c.GetBody() != "We see it too." {
		t.Errorf("response = %v", c)
	}
}
