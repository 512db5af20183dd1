package pocctl

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/pocnet/pocnet/client/internal/testpki"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/directorysvc"
	"github.com/pocnet/pocnet/server/directorysvc/directorysvctest"
)

// The directory commands run here against the real DirectoryService
// adapter over a chain-backed test manager (directorysvctest), behind real
// mutual TLS: XAA, XBB and XCC found the chain three days before testNow,
// XAA's node answers, and XDD is kept to be proposed. Tests against real
// nodes use the same commands with a testfed operator configuration.

// startDirectoryNode serves DirectoryService for XAA and returns its
// manager and an operator configuration.
func startDirectoryNode(t *testing.T) (*directorysvctest.Directory, string) {
	t.Helper()
	d := directorysvctest.New(t, directorysvctest.Options{Federation: "pocnet.test", Genesis: testNow.Add(-72 * time.Hour)})
	_, cfg := startFakeNode(t, func(s *grpc.Server) {
		directorysvc.Register(s, directorysvc.New(directorysvc.Config{Directory: d}))
	})
	return d, cfg
}

// runOK runs pocctl and fails the test unless it exits 0.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := run(t, "", args...)
	if code != ExitOK {
		t.Fatalf("pocctl %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

func wantIn(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

func hashOf(v *governance.Version) string {
	h := v.Hash()
	return hex.EncodeToString(h[:8])
}

func TestDirectoryShow(t *testing.T) {
	d, cfg := startDirectoryNode(t)
	d.Rename(1)
	out := runOK(t, "--config", cfg, "directory")
	wantIn(t, "directory", out,
		"Federation pocnet.test — 3 member(s)\n",
		"Version      2 (hash "+hashOf(d.Latest())+"), issued 2026-03-11T03:01:00Z (3d ago)\n",
		"Last change  entry update of XAA\n",
		"Rule         consensus (every state member signs); observers admitted by silence of 14d\n",
		"\nXAA  Testland XAA, version 2 (state)\n",
		"XCC  Testland XCC (state)",
		"  technical   National CERT of XBB",
	)

	// JSON is the directory alone, as before the chain.
	out = runOK(t, "--config", cfg, "-o", "json", "directory")
	var dir pocnetv1.Directory
	if err := protojson.Unmarshal([]byte(out), &dir); err != nil || len(dir.GetMembers()) != 3 {
		t.Errorf("directory json: %v\n%s", err, out)
	}
}

// GetDirectory lets the fake node answer as a node that keeps no chain.
func (f *fakeNode) GetDirectory(context.Context, *pocnetv1.GetDirectoryRequest) (*pocnetv1.GetDirectoryResponse, error) {
	return &pocnetv1.GetDirectoryResponse{Directory: &pocnetv1.Directory{FederationId: "pocnet.test", Members: []*pocnetv1.Member{
		{State: "XAA", Kind: pocnetv1.MemberKind_MEMBER_KIND_STATE, Name: "Testland XAA", Endpoints: []string{"127.0.0.1:7401"}},
	}}}, nil
}

func TestDirectoryShowWithoutChain(t *testing.T) {
	_, cfg := startFakeNode(t)
	out := runOK(t, "--config", cfg, "directory")
	want := "Federation pocnet.test — 1 member(s)\n" +
		"Version  unknown: this node serves no signed directory chain\n" +
		"\nXAA  Testland XAA (state)\n" +
		"  endpoints: 127.0.0.1:7401\n" +
		"  (no points of contact listed)\n"
	if out != want {
		t.Errorf("directory:\n%s\nwant:\n%s", out, want)
	}
	// Everything else needs the chain, and says so plainly.
	code, _, errOut := run(t, "", "--config", cfg, "directory", "history")
	if code != ExitError || !strings.HasPrefix(errOut, "pocctl: get directory history: ") || !strings.Contains(errOut, "(Unimplemented)") {
		t.Errorf("history without chain: exit %d, stderr %q", code, errOut)
	}
}

func TestDirectoryHistory(t *testing.T) {
	d, cfg := startDirectoryNode(t)
	d.Rename(3)
	d.Fork()
	code, out, errOut := run(t, "", "--config", cfg, "directory", "history")
	if code != ExitOK {
		t.Fatalf("history: exit %d, stderr %q", code, errOut)
	}
	if errOut != "pocctl: WARNING: 1 fork(s) of the directory chain detected; see the history\n" {
		t.Errorf("stderr %q", errOut)
	}
	v1, _ := d.Version(1)
	f := d.Forks()[0]
	wantIn(t, "history", out,
		"Version 4 in force (hash "+hashOf(d.Latest())+")\n",
		"!! FORK: 1 point(s) where the directory's history has split\n",
		"!!   version 4: this node holds "+hex.EncodeToString(f.Have[:8])+"; it refused another valid version "+hex.EncodeToString(f.Got[:8])+"; signed both: XAA\n",
		"VERSION  HASH              ISSUED                         CHANGE               SIGNED BY\n",
		"4        "+hashOf(d.Latest())+"  2026-03-11T03:03:00Z (3d ago)  entry update of XAA  XAA\n",
		"1        "+hashOf(v1)+"  2026-03-11T03:00:00Z (3d ago)  genesis              XAA, XBB, XCC\n",
	)
	if strings.Contains(out, "Older versions") {
		t.Errorf("a whole history points to older versions:\n%s", out)
	}

	out = runOK(t, "--config", cfg, "directory", "history", "--limit", "2")
	wantIn(t, "history --limit 2", out, "\nOlder versions: pocctl directory history --before 3\n")
	out = runOK(t, "--config", cfg, "directory", "history", "--before", "3")
	if !strings.Contains(out, "\n2        ") || !strings.Contains(out, "\n1        ") || strings.Contains(out, "\n3        ") {
		t.Errorf("history --before 3:\n%s", out)
	}

	out = runOK(t, "--config", cfg, "-o", "json", "directory", "history")
	var h pocnetv1.GetHistoryResponse
	if err := protojson.Unmarshal([]byte(out), &h); err != nil || h.GetHead().GetVersion() != 4 || len(h.GetVersions()) != 4 || len(h.GetForks()) != 1 {
		t.Errorf("history json: %v\n%s", err, out)
	}
}

func TestDirectoryExport(t *testing.T) {
	d, cfg := startDirectoryNode(t)
	d.Rename(1)
	dir := t.TempDir()

	// The directory file is what thread verify --directory loads.
	file := filepath.Join(dir, "directory.json")
	out := runOK(t, "--config", cfg, "directory", "export", "--out", file)
	if want := "Directory of version 2 (hash " + hashOf(d.Latest()) + ") written to " + file + "\n"; out != want {
		t.Errorf("export: %q, want %q", out, want)
	}
	loaded, err := directory.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := loaded.Member("XAA"); m.GetName() != "Testland XAA, version 2" {
		t.Errorf("exported entry of XAA: %v", m)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("exported file mode: %v, %v", st.Mode(), err)
	}

	// To standard output, of an older version.
	out = runOK(t, "--config", cfg, "directory", "export", "--version", "1")
	old, err := directory.Parse([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := old.Member("XAA"); m.GetName() != "Testland XAA" {
		t.Errorf("version 1 entry of XAA: %v", m)
	}

	// As signed: the genesis verifies offline, signatures and all.
	out = runOK(t, "--config", cfg, "directory", "export", "--version", "1", "--signed")
	var sv pocnetv1.SignedVersion
	if err := protojson.Unmarshal([]byte(out), &sv); err != nil {
		t.Fatal(err)
	}
	if _, err := governance.NewChain(&sv, testNow); err != nil {
		t.Errorf("exported genesis does not verify: %v", err)
	}

	code, _, errOut := run(t, "", "--config", cfg, "directory", "export", "--version", "9")
	if code != ExitError || errOut != "pocctl: get directory version 9: version 9 not found: the chain ends at version 2 (NotFound)\n" {
		t.Errorf("export --version 9: exit %d, stderr %q", code, errOut)
	}
}

// writeEntryFile writes a state's generated entry, kind left out, as an admin
// would receive it from the state asking to join.
func writeEntryFile(t *testing.T, d *directorysvctest.Directory, state string) string {
	t.Helper()
	m := d.Entry(state)
	m.Kind = pocnetv1.MemberKind_MEMBER_KIND_UNSPECIFIED
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), strings.ToLower(state)+".json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDirectoryProposals(t *testing.T) {
	d, cfg := startDirectoryNode(t)
	xdd := writeEntryFile(t, d, "XDD")

	out := runOK(t, "--config", cfg, "directory", "status")
	if out != "No proposals.\n" {
		t.Errorf("status with none: %q", out)
	}

	out = runOK(t, "--config", cfg, "directory", "propose", "admit", "--entry", xdd)
	admit := d.Proposals()[0]
	prefix := hex.EncodeToString(admit.GetHash()[:8])
	wantIn(t, "propose admit", out,
		"Proposed "+prefix+": admission of XDD\n",
		"  State     pending: 1 of 3 signatures needed under consensus; signed by XAA; missing: XBB, XCC\n",
		"  Rule      consensus; observers by silence of 336h0m0s\n",
		"  Proposed  2026-03-11T03:01:00Z (3d ago)\n",
		"  Entry     XDD Testland XDD (state), endpoints: ",
		"            points of contact: technical, policy, diplomatic\n",
		"  Hash      "+hex.EncodeToString(admit.GetHash())+"\n",
		"\nNext: it goes to every member's node and takes effect once 2 more of XBB, XCC sign it; their admins run: pocctl directory sign "+prefix+"\n",
	)

	// XBB proposes to remove XCC; signing it by a prefix of its hash makes
	// it a version, and the admission proposed as the same version is
	// superseded.
	removal := d.Offer("XBB", &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Remove{Remove: "XCC"}})
	rprefix := hex.EncodeToString(removal.GetHash()[:4])
	out = runOK(t, "--config", cfg, "directory", "sign", strings.ToUpper(rprefix))
	wantIn(t, "sign", out,
		"Signed "+hex.EncodeToString(removal.GetHash()[:8])+": removal of XCC\n",
		"  State     adopted as version 2\n",
		"\nIt is in force as version 2.\n",
	)
	if _, ok := d.Latest().Directory().Member("XCC"); ok {
		t.Error("XCC still a member after the removal was signed")
	}
	out = runOK(t, "--config", cfg, "directory", "status")
	wantIn(t, "status", out,
		"Proposal "+prefix+": admission of XDD\n  State     superseded by version 2: propose again\n",
		"\n\nProposal "+hex.EncodeToString(removal.GetHash()[:8])+": removal of XCC\n  State     adopted as version 2\n",
	)

	// An observer admission waits out its silence; an objection stops it.
	out = runOK(t, "--config", cfg, "directory", "propose", "observer", "--entry", xdd)
	obs := d.Proposals()[2]
	oprefix := hex.EncodeToString(obs.GetHash()[:8])
	wantIn(t, "propose observer", out,
		"Proposed "+oprefix+": observer admission of XDD\n",
		"  State     observer admission takes effect at 2026-03-25T03:02:00Z (in 11d) unless a state member objects; no objection so far\n",
		"  Entry     XDD Testland XDD (observer)",
		"\nNext: nothing, unless a state member objects before 2026-03-25T03:02:00Z (pocctl directory object "+oprefix+"); otherwise XDD is admitted then.\n",
	)
	out = runOK(t, "--config", cfg, "directory", "object", oprefix)
	wantIn(t, "object", out,
		"Objected to "+oprefix+": observer admission of XDD\n",
		"  State     objected to by XAA: will not take effect\n",
		"\nIt will not take effect: an observer is admitted only if no state member objects.\n",
	)

	// JSON is the proposal.
	out = runOK(t, "--config", cfg, "-o", "json", "directory", "status")
	var list pocnetv1.ListProposalsResponse
	if err := protojson.Unmarshal([]byte(out), &list); err != nil || len(list.GetProposals()) != 3 {
		t.Errorf("status json: %v\n%s", err, out)
	}

	// What the node or the prefix refuses: exit 1, one plain line.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"object", rprefix}, "pocctl: proposal " + hex.EncodeToString(removal.GetHash()[:8]) + " is the removal of XCC: only an observer admission is objected to; a decision is opposed by not signing it\n"},
		{[]string{"sign", "deadbeef"}, "pocctl: no such proposal: none of the 3 proposal(s) the node holds has a hash starting with deadbeef\n"},
		{[]string{"sign", oprefix}, "pocctl: sign proposal " + oprefix + ": the observer admission of XDD is no longer pending (FailedPrecondition)\n"},
		{[]string{"propose", "remove", "xdd"}, "pocctl: propose removal of XDD: XDD is not a member (FailedPrecondition)\n"},
	} {
		code, out, errOut := run(t, "", append([]string{"--config", cfg, "directory"}, tt.args...)...)
		if code != ExitError || out != "" || errOut != tt.want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q, want %q", tt.args, code, out, errOut, tt.want)
		}
	}
}

func TestDirectoryProposeRule(t *testing.T) {
	d, cfg := startDirectoryNode(t)
	// The silence period in force is kept: the same rule is no change.
	code, _, errOut := run(t, "", "--config", cfg, "directory", "propose", "rule", "consensus")
	if code != ExitUsage || !strings.Contains(errOut, "RULE: the rule in force (version 1) is already consensus (every state member signs); observers admitted by silence of 14d") {
		t.Errorf("same rule: exit %d, stderr %q", code, errOut)
	}
	out := runOK(t, "--config", cfg, "directory", "propose", "rule", "supermajority:70%")
	wantIn(t, "propose rule", out, ": rule change\n", "pending: 1 of 3 signatures needed under consensus")
	out = runOK(t, "--config", cfg, "directory", "propose", "rule", "consensus", "--silence-period", "3d")
	wantIn(t, "propose silence", out, ": rule change\n")
	if n := len(d.Proposals()); n != 2 {
		t.Errorf("%d proposals held, want 2", n)
	}
}

// writeCert writes a certificate as PEM.
func writeCert(t *testing.T, c *x509.Certificate) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDirectoryUpdate(t *testing.T) {
	d, cfg := startDirectoryNode(t)
	out := runOK(t, "--config", cfg, "directory", "update", "--endpoint", "xaa.example:7401", "--endpoint", "xaa-2.example:7401",
		"--set-poc-languages", "technical=en,fr,es", "--set-poc-accepts", "policy=rfi,notification",
		"--set-poc-hours", "technical=24/7 (Europe/Vienna)", "--set-poc-hours", "diplomatic=")
	old := d.Entry("XAA")
	wantIn(t, "update", out,
		"Entry of XAA updated: version 2 (hash "+hashOf(d.Latest())+"), issued 2026-03-11T03:01:00Z (3d ago), signed by XAA\n",
		"  endpoints: "+old.GetEndpoints()[0]+" → xaa.example:7401, xaa-2.example:7401\n",
		"  point of contact technical: languages en,fr → en,fr,es; hours 24/7 → 24/7 (Europe/Vienna)\n",
		"  point of contact policy: accepts rfi,consultations,notification,check → rfi,notification\n",
		"  point of contact diplomatic: hours Mon-Fri 09:00-17:00 → -\n",
	)
	m, _ := d.Latest().Directory().Member("XAA")
	if !slices.Equal(m.GetEndpoints(), []string{"xaa.example:7401", "xaa-2.example:7401"}) || m.GetPointsOfContact()[0].GetHours().GetTimeZone() != "Europe/Vienna" {
		t.Errorf("entry in force: %v", m)
	}

	// The same again changes nothing, and nothing is sent.
	out = runOK(t, "--config", cfg, "directory", "update", "--endpoint", "xaa.example:7401", "--endpoint", "xaa-2.example:7401")
	if out != "Nothing to change: the entry of XAA in version 2 already says this.\n" {
		t.Errorf("no change: %q", out)
	}
	if n := d.Latest().Number(); n != 2 {
		t.Errorf("version %d after no change", n)
	}

	// A second CA, then removed again.
	ca := testpki.NewCA(t, "XAA")
	caFile := writeCert(t, ca.Cert)
	fp := sha256.Sum256(ca.Cert.Raw)
	out = runOK(t, "--config", cfg, "directory", "update", "--add-ca", caFile)
	wantIn(t, "add-ca", out, "version 3", "  CA certificate added: \"CN=XAA root CA\", sha256 "+hex.EncodeToString(fp[:8])+"\n")
	out = runOK(t, "--config", cfg, "directory", "update", "--remove-ca", caFile)
	wantIn(t, "remove-ca", out, "version 4", "  CA certificate removed: \"CN=XAA root CA\", sha256 "+hex.EncodeToString(fp[:8])+"\n")

	// A revoked operator certificate, by file and by fingerprint.
	op := ca.Issue(t, identity.Operator("pocnet.test", "XAA", "technical", "mallory"), x509.ExtKeyUsageClientAuth)
	leaf, err := x509.ParseCertificate(op.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	lfp := sha256.Sum256(leaf.Raw)
	other := sha256.Sum256([]byte("a certificate whose file is lost"))
	out = runOK(t, "--config", cfg, "directory", "update", "--revoke-cert", writeCert(t, leaf), "--revoke-cert", hex.EncodeToString(other[:]), "--reason", "laptop stolen")
	wantIn(t, "revoke", out,
		"version 5",
		"  certificate revoked: sha256 "+hex.EncodeToString(lfp[:])+" at 2026-03-14T03:00:00Z: laptop stolen\n",
		"  certificate revoked: sha256 "+hex.EncodeToString(other[:])+" at 2026-03-14T03:00:00Z: laptop stolen\n",
	)
	m, _ = d.Latest().Directory().Member("XAA")
	if rs := m.GetRevokedCertificates(); len(rs) != 2 || string(rs[0].GetSha256()) != string(lfp[:]) || rs[0].GetReason() != "laptop stolen" ||
		!rs[0].GetRevokedAt().AsTime().Equal(testNow) {
		t.Errorf("revocations in force: %v", rs)
	}

	// The whole entry, as JSON.
	entry := d.Entry("XAA")
	entry.Name = "Republic of Testland"
	b, _ := protojson.Marshal(entry)
	file := filepath.Join(t.TempDir(), "xaa.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out = runOK(t, "--config", cfg, "-o", "json", "directory", "update", "--entry", file)
	var v pocnetv1.VersionSummary
	if err := protojson.Unmarshal([]byte(out), &v); err != nil || v.GetVersion() != 6 || v.GetDescription() != "entry update of XAA" {
		t.Errorf("update json: %v\n%s", err, out)
	}
	if m, _ := d.Latest().Directory().Member("XAA"); m.GetName() != "Republic of Testland" || len(m.GetRevokedCertificates()) != 0 {
		t.Errorf("entry in force after --entry: %v", m)
	}

	// Edits that do not fit the entry are refused before anything is sent.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--set-poc-languages", "desk=en"}, `--set-poc-languages: XAA lists no point of contact "desk" (it lists: technical, policy, diplomatic)`},
		{[]string{"--remove-ca", writeCert(t, testpki.NewCA(t, "XAA").Cert)}, `--remove-ca: `},
		{[]string{"--entry", writeEntryFile(t, d, "XBB")}, "--entry: the entry is of XBB, not of your state XAA"},
	} {
		code, _, errOut := run(t, "", append([]string{"--config", cfg, "directory", "update"}, tt.args...)...)
		if code != ExitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("update %v: exit %d, stderr %q, want %q", tt.args, code, errOut, tt.want)
		}
	}
	if n := d.Latest().Number(); n != 6 {
		t.Errorf("version %d after refused edits, want 6", n)
	}
}

func TestDirectoryRotateKeys(t *testing.T) {
	d, cfg := startDirectoryNode(t)
	out := runOK(t, "--config", cfg, "directory", "rotate-keys", "--signing", "--encryption")
	m, _ := d.Latest().Directory().Member("XAA")
	sk := m.GetSigningKeys()[len(m.GetSigningKeys())-1].GetKeyId()
	ek := m.GetEncryptionKeys()[len(m.GetEncryptionKeys())-1].GetKeyId()
	want := "New keys of XAA published in version 2 (hash " + hashOf(d.Latest()) + "), issued 2026-03-11T03:01:00Z (3d ago)\n" +
		"  signing key     " + sk + ": the node signs with it from this version on; the old key is retired and still verifies what it signed before\n" +
		"  encryption key  " + ek + ": senders seal to it from this version on; the old key is retired and kept for what is in flight\n"
	if out != want {
		t.Errorf("rotate-keys:\n%s\nwant:\n%s", out, want)
	}
	out = runOK(t, "--config", cfg, "-o", "json", "directory", "rotate-keys", "--encryption")
	var r struct {
		SigningKeyID    string `json:"signingKeyId"`
		EncryptionKeyID string `json:"encryptionKeyId"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.SigningKeyID != "" || !strings.HasPrefix(r.EncryptionKeyID, "mlkem768x25519:") {
		t.Errorf("rotate-keys json: %v\n%s", err, out)
	}
}
