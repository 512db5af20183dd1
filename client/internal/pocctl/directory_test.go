package pocctl

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pocnet/pocnet/client/internal/testpki"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func TestDirectoryUsageErrors(t *testing.T) {
	dir := t.TempDir()
	noConfig := []string{"--config", filepath.Join(dir, "none.yaml"), "directory"}
	observer := filepath.Join(dir, "observer.json")
	if err := os.WriteFile(observer, []byte(`{"state": "XDD", "kind": "MEMBER_KIND_OBSERVER"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	typo := filepath.Join(dir, "typo.json")
	if err := os.WriteFile(typo, []byte(`{"state": "XDD", "endpoint": ["a:1"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := testpki.NewCA(t, "XAA")
	leaf := ca.Issue(t, identity.Operator("pocnet.test", "XAA", "technical", "alice"), x509.ExtKeyUsageClientAuth)
	leafCert, err := x509.ParseCertificate(leaf.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	leafFile := writeCert(t, leafCert)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"history limit", []string{"history", "--limit", "501"}, "--limit: 501 is more than 500"},
		{"history takes no argument", []string{"history", "7"}, "history takes no arguments"},
		{"sign short prefix", []string{"sign", "1a2b"}, `HASH-PREFIX: invalid proposal hash prefix: "1a2b": give 8 to 64 hex digits of the proposal's hash`},
		{"sign not hex", []string{"sign", "xyz12345"}, `HASH-PREFIX: invalid proposal hash prefix: "xyz12345" is not hexadecimal`},
		{"object without prefix", []string{"object"}, "object needs 1 argument(s): [HASH-PREFIX], got 0"},
		{"rule unknown", []string{"propose", "rule", "majority"}, `RULE: "majority": not a rule (consensus, supermajority:PERCENT or threshold:STATES)`},
		{"supermajority too low", []string{"propose", "rule", "supermajority:50"}, "the percentage must be a whole number from 51 to 100"},
		{"supermajority not a number", []string{"propose", "rule", "supermajority:most"}, "the percentage must be a whole number from 51 to 100"},
		{"threshold zero", []string{"propose", "rule", "threshold:0"}, "the number of states must be a whole number of at least 1"},
		{"consensus with a number", []string{"propose", "rule", "consensus:3"}, "consensus takes no number"},
		{"silence zero", []string{"propose", "rule", "consensus", "--silence-period", "0s"}, "--silence-period: 0s is not between 0 and 8784h0m0s"},
		{"silence too long", []string{"propose", "rule", "consensus", "--silence-period", "400d"}, "--silence-period: 9600h0m0s is not between 0 and 8784h0m0s"},
		{"silence not a duration", []string{"propose", "rule", "consensus", "--silence-period", "a week"}, `--silence-period: "a week" is not a duration (e.g. 72h, 14d)`},
		{"remove bad code", []string{"propose", "remove", "Examplia"}, `STATE: "EXAMPLIA" is not an ISO 3166-1 alpha-3 state code`},
		{"admit without entry", []string{"propose", "admit"}, `required flag(s) "entry" not set`},
		{"admit missing file", []string{"propose", "admit", "--entry", filepath.Join(dir, "no.json")}, "--entry: open "},
		{"admit an observer", []string{"propose", "admit", "--entry", observer}, "--entry: XDD is of kind observer: use 'pocctl directory propose observer'"},
		{"admit a misspelt field", []string{"propose", "admit", "--entry", typo}, `not a pocnet.v1.Member in protobuf JSON`},
		{"propose takes a subcommand", []string{"propose", "admission"}, "propose takes no arguments"},
		{"update nothing", []string{"update"}, "nothing to change: give --entry FILE, or --endpoint"},
		{"update entry and edits", []string{"update", "--entry", typo, "--endpoint", "a:1"}, "--entry replaces the whole entry and cannot be combined with edits"},
		{"update reason alone", []string{"update", "--endpoint", "a:1", "--reason", "x"}, "--reason is only for --revoke-cert"},
		{"update revoke without reason", []string{"update", "--revoke-cert", leafFile}, "--revoke-cert needs --reason"},
		{"update bad endpoint", []string{"update", "--endpoint", "xaa.example"}, `--endpoint: "xaa.example" is not HOST:PORT`},
		{"update endpoint twice", []string{"update", "--endpoint", "a:1", "--endpoint", "a:1"}, "--endpoint: a:1 is given twice"},
		{"update a leaf as CA", []string{"update", "--add-ca", leafFile}, `is not a CA certificate`},
		{"update missing CA file", []string{"update", "--add-ca", filepath.Join(dir, "no.pem")}, "--add-ca: open "},
		{"update CA from a JSON file", []string{"update", "--add-ca", typo}, "no PEM CERTIFICATE found"},
		{"update revoke missing file", []string{"update", "--revoke-cert", "gone.pem", "--reason", "x"}, "--revoke-cert: open gone.pem"},
		{"update languages without role", []string{"update", "--set-poc-languages", "en,fr"}, `--set-poc-languages "en,fr": want ROLE=VALUE`},
		{"update bad role", []string{"update", "--set-poc-languages", "Tech Desk=en"}, `--set-poc-languages "Tech Desk=en": `},
		{"update bad language", []string{"update", "--set-poc-languages", "technical=en,english!"}, `"english!" is not a BCP 47 language tag`},
		{"update role twice", []string{"update", "--set-poc-languages", "technical=en", "--set-poc-languages", "technical=fr"}, "--set-poc-languages: role technical is given twice"},
		{"update bad kind", []string{"update", "--set-poc-accepts", "technical=rfi,rfq"}, `unknown kind "rfq" (one of: rfi, rfa, notification, consultations, check, other)`},
		{"update no kind", []string{"update", "--set-poc-accepts", "technical="}, "give at least one kind"},
		{"rotate nothing", []string{"rotate-keys"}, "give --signing, --encryption or both"},
		{"export takes no argument", []string{"export", "3"}, "export takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, "", append(slicesClone(noConfig), tt.args...)...)
			if code != ExitUsage {
				t.Errorf("exit code %d, want %d (stderr %q)", code, ExitUsage, errOut)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.want)
			}
			if strings.Contains(errOut, "choose the file with --config") {
				t.Errorf("checked only after loading the configuration: %q", errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

func TestParseRule(t *testing.T) {
	tests := []struct {
		in   string
		want *pocnetv1.DecisionRule
	}{
		{"consensus", &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Consensus{Consensus: &pocnetv1.ConsensusRule{}}}},
		{" Consensus ", &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Consensus{Consensus: &pocnetv1.ConsensusRule{}}}},
		{"supermajority:70", &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: 70}}}},
		{"supermajority:51%", &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: 51}}}},
		{"supermajority:100", &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: 100}}}},
		{"threshold:5", &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Threshold{Threshold: &pocnetv1.ThresholdRule{States: 5}}}},
		{"supermajority:101", nil},
		{"supermajority", nil},
		{"threshold:-1", nil},
		{"threshold:2.5", nil},
		{"", nil},
	}
	for _, tt := range tests {
		got, err := parseRule(tt.in)
		if tt.want == nil {
			if err == nil {
				t.Errorf("parseRule(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || !proto.Equal(got, tt.want) {
			t.Errorf("parseRule(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseHours(t *testing.T) {
	tests := []struct {
		in   string
		want *pocnetv1.Hours
	}{
		{"24/7", &pocnetv1.Hours{AroundTheClock: true}},
		{"24/7 (Europe/Vienna)", &pocnetv1.Hours{AroundTheClock: true, TimeZone: "Europe/Vienna"}},
		{"Mon-Fri 08:00-18:00 (UTC)", &pocnetv1.Hours{Description: "Mon-Fri 08:00-18:00", TimeZone: "UTC"}},
		{"Mon-Fri 09:00-17:00", &pocnetv1.Hours{Description: "Mon-Fri 09:00-17:00"}},
		{"", nil},
	}
	for _, tt := range tests {
		got := parseHours(tt.in)
		if !proto.Equal(got, tt.want) {
			t.Errorf("parseHours(%q) = %v, want %v", tt.in, got, tt.want)
		}
		// What hours() prints reads back the same.
		if tt.want != nil && !proto.Equal(parseHours(hours(got)), got) {
			t.Errorf("parseHours(hours(%v)) = %v", got, parseHours(hours(got)))
		}
	}
}

func TestProposalState(t *testing.T) {
	pending := &pocnetv1.Proposal{State: pocnetv1.ProposalState_PROPOSAL_STATE_PENDING, Needed: 4,
		Rule: "supermajority of 70% (4 of 5 states); observers by silence of 72h", Signed: []string{"XAA", "XBB", "XCC"}, Missing: []string{"XDD", "XEE"}}
	tests := []struct {
		p    *pocnetv1.Proposal
		want string
	}{
		{pending, "pending: 3 of 4 signatures needed under supermajority of 70% (4 of 5 states); signed by XAA, XBB, XCC; missing: XDD, XEE"},
		{&pocnetv1.Proposal{State: pocnetv1.ProposalState_PROPOSAL_STATE_PENDING, Needed: 2, Rule: "consensus"},
			"pending: 0 of 2 signatures needed under consensus; signed by nobody yet"},
		{&pocnetv1.Proposal{State: pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE, SilenceDeadline: ts(72 * time.Hour)},
			"observer admission takes effect at 2026-03-17T03:00:00Z (in 3d) unless a state member objects; no objection so far"},
		{&pocnetv1.Proposal{State: pocnetv1.ProposalState_PROPOSAL_STATE_OBJECTED, Objected: []string{"XCC"}}, "objected to by XCC: will not take effect"},
		{&pocnetv1.Proposal{State: pocnetv1.ProposalState_PROPOSAL_STATE_SUPERSEDED, Version: 7}, "superseded by version 7: propose again"},
		{&pocnetv1.Proposal{State: pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED, Version: 7}, "adopted as version 7"},
	}
	for _, tt := range tests {
		if got := proposalState(tt.p, testNow); got != tt.want {
			t.Errorf("proposalState(%v) =\n  %q, want\n  %q", tt.p.GetState(), got, tt.want)
		}
	}
}

func TestDiffMember(t *testing.T) {
	base := &pocnetv1.Member{
		State: "XAA", Kind: pocnetv1.MemberKind_MEMBER_KIND_STATE, Name: "Testland", Endpoints: []string{"a:1"},
		PointsOfContact: []*pocnetv1.PointOfContact{
			{Role: "technical", Languages: []string{"en"}, AcceptedKinds: []pocnetv1.Kind{pocnetv1.Kind_KIND_NOTIFICATION}},
			{Role: "policy"},
		},
		SigningKeys: []*pocnetv1.SigningKey{{KeyId: "ed25519:old", Status: pocnetv1.KeyStatus_KEY_STATUS_ACTIVE}},
	}
	edit := func(f func(m *pocnetv1.Member)) *pocnetv1.Member {
		m := proto.Clone(base).(*pocnetv1.Member)
		f(m)
		return m
	}
	tests := []struct {
		name string
		cur  *pocnetv1.Member
		want []string
	}{
		{"nothing", edit(func(*pocnetv1.Member) {}), nil},
		{"name and endpoints", edit(func(m *pocnetv1.Member) { m.Name, m.Endpoints = "Republic of Testland", nil }),
			[]string{`name: "Testland" → "Republic of Testland"`, "endpoints: a:1 → -"}},
		{"points of contact", edit(func(m *pocnetv1.Member) {
			m.PointsOfContact[0].Languages = nil
			m.PointsOfContact[0].Organisation = "CERT"
			m.PointsOfContact[1] = &pocnetv1.PointOfContact{Role: "diplomatic"}
		}), []string{`point of contact technical: organisation "" → "CERT"; languages en → any`, "point of contact diplomatic added", "point of contact policy removed"}},
		{"keys", edit(func(m *pocnetv1.Member) {
			m.SigningKeys[0].Status = pocnetv1.KeyStatus_KEY_STATUS_RETIRED
			m.SigningKeys = append(m.SigningKeys, &pocnetv1.SigningKey{KeyId: "ed25519:new", Status: pocnetv1.KeyStatus_KEY_STATUS_ACTIVE})
		}), []string{"signing key ed25519:old: active → retired", "signing key added: ed25519:new (active)"}},
		{"revocation", edit(func(m *pocnetv1.Member) {
			m.RevokedCertificates = []*pocnetv1.RevokedCertificate{{Sha256: []byte{0xab, 0xcd}, RevokedAt: ts(0), Reason: "lost"}}
		}), []string{"certificate revoked: sha256 abcd at 2026-03-14T03:00:00Z: lost"}},
	}
	for _, tt := range tests {
		got := diffMember(base, tt.cur)
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("%s: diff\n  %q\nwant\n  %q", tt.name, got, tt.want)
		}
	}
}

func TestWriteHistoryForkWithoutEquivocator(t *testing.T) {
	h := &pocnetv1.GetHistoryResponse{
		Head:  &pocnetv1.DirectoryHead{Version: 5, Hash: bytes.Repeat([]byte{0x11}, 32)},
		Forks: []*pocnetv1.Fork{{Version: 5, HaveHash: bytes.Repeat([]byte{0x11}, 32), GotHash: bytes.Repeat([]byte{0x22}, 32)}},
		Versions: []*pocnetv1.VersionSummary{{Version: 5, Hash: bytes.Repeat([]byte{0x11}, 32), IssuedAt: ts(-time.Hour),
			Description: "entry update of XBB", Signers: []string{"XBB"}}},
	}
	var b bytes.Buffer
	if err := writeHistory(&b, h, 1, testNow); err != nil {
		t.Fatal(err)
	}
	want := "Version 5 in force (hash 1111111111111111)\n" +
		"\n!! FORK: 1 point(s) where the directory's history has split\n" +
		"!!   version 5: this node holds 1111111111111111; it refused another valid version 2222222222222222 (no state signed both: changes made at the same time)\n" +
		"!! Nothing is resolved automatically: tell the other members' operators and compare histories.\n" +
		"\nVERSION  HASH              ISSUED                          CHANGE               SIGNED BY\n" +
		"5        1111111111111111  2026-03-14T02:00:00Z (60m ago)  entry update of XBB  XBB\n" +
		"\nOlder versions: pocctl directory history --before 5\n"
	if b.String() != want {
		t.Errorf("history:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestDescribeRule(t *testing.T) {
	r := &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Threshold{Threshold: &pocnetv1.ThresholdRule{States: 5}}, SilencePeriod: durationpb.New(90 * time.Minute)}
	if got, want := describeRule(r), "threshold of 5 state members; observers admitted by silence of 1h30m0s"; got != want {
		t.Errorf("describeRule = %q, want %q", got, want)
	}
	r.SilencePeriod = durationpb.New(72 * time.Hour)
	if got, want := describeRule(r), "threshold of 5 state members; observers admitted by silence of 3d"; got != want {
		t.Errorf("describeRule = %q, want %q", got, want)
	}
}
