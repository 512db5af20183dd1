package pocctl

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/client/internal/testpki"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// The directory commands run here against real nodes of a test federation
// (internal/testfed): real mutual TLS, real Pebble stores, each node's own
// directory manager signing with its state's key and gossiping with the
// others. pocctl reads the real clock: times the nodes set are shown
// relative to it.

// operator runs pocctl with the configuration of one operator of a test
// federation.
type operator struct {
	t   *testing.T
	cfg string
	// now is pocctl's clock; nil means time.Now.
	now func() time.Time
}

// as is the operator of state acting for role.
func as(t *testing.T, f *testfed.Federation, state, role string) *operator {
	return &operator{t: t, cfg: f.OperatorConfigFile(state, role)}
}

// run runs pocctl in-process and returns the exit code, stdout and stderr.
func (o *operator) run(args ...string) (int, string, string) {
	o.t.Helper()
	now := o.now
	if now == nil {
		now = time.Now
	}
	var out, errOut bytes.Buffer
	code := Run(context.Background(), append([]string{"--config", o.cfg}, args...), Env{
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errOut,
		Getenv: func(string) string { return "" },
		Now:    now,
	})
	return code, out.String(), errOut.String()
}

// ok runs pocctl and fails the test unless it exits 0 with nothing on
// standard error.
func (o *operator) ok(args ...string) string {
	o.t.Helper()
	code, out, errOut := o.run(args...)
	if code != ExitOK || errOut != "" {
		o.t.Fatalf("pocctl %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fails runs pocctl and checks that it fails with code and one line on
// standard error, want, and nothing on standard output.
func (o *operator) fails(code int, want string, args ...string) {
	o.t.Helper()
	got, out, errOut := o.run(args...)
	if got != code || out != "" || errOut != want {
		o.t.Errorf("pocctl %s: exit %d, stdout %q, stderr %q; want exit %d, stderr %q", strings.Join(args, " "), got, out, errOut, code, want)
	}
}

// failsWith is fails for a message checked by its parts: it starts with
// prefix and contains each of parts.
func (o *operator) failsWith(code int, prefix string, parts []string, args ...string) {
	o.t.Helper()
	got, out, errOut := o.run(args...)
	if got != code || out != "" || !strings.HasPrefix(errOut, prefix) || strings.Count(errOut, "\n") != 1 || !strings.HasSuffix(errOut, "\n") {
		o.t.Errorf("pocctl %s: exit %d, stdout %q, stderr %q; want exit %d and one line starting %q", strings.Join(args, " "), got, out, errOut, code, prefix)
		return
	}
	for _, p := range parts {
		if !strings.Contains(errOut, p) {
			o.t.Errorf("pocctl %s: stderr %q lacks %q", strings.Join(args, " "), errOut, p)
		}
	}
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

// at is a time as pocctl shows it now.
func at(ts *timestamppb.Timestamp) string { return when(ts, time.Now()) }

// startFed starts one real node per state, XAA first, under rule (nil: the
// default, a 70% supermajority).
func startFed(t *testing.T, states int, rule *pocnetv1.DecisionRule) *testfed.Federation {
	t.Helper()
	return testfed.Start(t, testfed.Options{States: states, Rule: rule})
}

func ruleWith(r *pocnetv1.DecisionRule, silence time.Duration) *pocnetv1.DecisionRule {
	r.SilencePeriod = durationpb.New(silence)
	return r
}

// latest is the version in force at state's node.
func latest(f *testfed.Federation, state string) *governance.Version {
	return f.Node(state).Directory().Latest()
}

// entryAt is state's entry in the version in force at its own node.
func entryAt(t *testing.T, f *testfed.Federation, state string) *pocnetv1.Member {
	t.Helper()
	m, ok := latest(f, state).Directory().Member(state)
	if !ok {
		t.Fatalf("%s is not a member at its own node", state)
	}
	return proto.Clone(m).(*pocnetv1.Member)
}

// converged waits until every node of states has version n in force, the
// same one.
func converged(t *testing.T, f *testfed.Federation, n uint64, states ...string) {
	t.Helper()
	testfed.WaitFor(t, fmt.Sprintf("version %d at %v", n, states), func() bool {
		for _, s := range states {
			if latest(f, s).Number() != n {
				return false
			}
		}
		return true
	})
	for _, s := range states[1:] {
		if latest(f, s).Hash() != latest(f, states[0]).Hash() {
			t.Fatalf("%s and %s hold different versions %d", s, states[0], n)
		}
	}
}

// proposal waits until state's node holds a proposal for which ok is true,
// and returns it.
func proposal(t *testing.T, f *testfed.Federation, state, what string, ok func(*pocnetv1.Proposal) bool) *pocnetv1.Proposal {
	t.Helper()
	var found *pocnetv1.Proposal
	testfed.WaitFor(t, fmt.Sprintf("%s holds %s", state, what), func() bool {
		for _, p := range f.Node(state).Directory().Proposals() {
			if ok(p) {
				found = p
				return true
			}
		}
		return false
	})
	return found
}

// signedBy matches the proposal named by hash once it carries n signatures.
func signedBy(hash []byte, n int) func(*pocnetv1.Proposal) bool {
	return func(p *pocnetv1.Proposal) bool { return bytes.Equal(p.GetHash(), hash) && len(p.GetSigned()) >= n }
}

// about matches the first proposal of the change described.
func about(desc string) func(*pocnetv1.Proposal) bool {
	return func(p *pocnetv1.Proposal) bool { return p.GetDescription() == desc }
}

// writeEntryFile writes an entry with its kind left out, as an admin
// receives it from the participant asking to join.
func writeEntryFile(t *testing.T, m *pocnetv1.Member) string {
	t.Helper()
	m = proto.Clone(m).(*pocnetv1.Member)
	m.Kind = pocnetv1.MemberKind_MEMBER_KIND_UNSPECIFIED
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), strings.ToLower(m.GetState())+".json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeCert writes a certificate as PEM.
func writeCert(t *testing.T, c *x509.Certificate) string {
	t.Helper()
	return writePEM(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// writePEM writes PEM bytes to a file.
func writePEM(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDirectoryShowOnNodes: any operator reads the directory in force at
// its node, with the version, its hash and the rule; a change one state
// makes on its node is what another state's operator sees at theirs.
func TestDirectoryShowOnNodes(t *testing.T) {
	f := startFed(t, 3, nil)
	tech := as(t, f, "XAA", "technical")
	v := latest(f, "XAA")
	out := tech.ok("directory")
	wantIn(t, "directory", out,
		"Federation pocnet.example — 3 member(s)\n",
		"Version      1 (hash "+hashOf(v)+"), issued "+at(timestamppb.New(v.IssuedAt()))+"\n",
		"Last change  genesis\n",
		"Rule         supermajority of 70% of the state members; observers admitted by silence of 3d\n",
		"\nXAA  Testland XAA (state)\n  endpoints: "+f.Node("XAA").Addr+"\n",
		"\nXCC  Testland XCC (state)\n",
		"  technical   National CERT of XBB ",
	)

	// XBB's admin changes XBB's entry at XBB's node; XAA's operator sees it
	// at XAA's.
	as(t, f, "XBB", "admin").ok("directory", "update", "--set-poc-languages", "technical=en,de")
	converged(t, f, 2, "XAA", "XBB", "XCC")
	v = latest(f, "XAA")
	out = tech.ok("directory")
	wantIn(t, "directory after XBB's update", out,
		"Version      2 (hash "+hashOf(v)+"), issued "+at(timestamppb.New(v.IssuedAt()))+"\n",
		"Last change  entry update of XBB\n",
	)
	if !regexp.MustCompile(`technical +National CERT of XBB +Duty officer +en,de `).MatchString(out) {
		t.Errorf("XBB's new languages not shown at XAA:\n%s", out)
	}

	// JSON is the directory alone, as before the chain.
	out = tech.ok("-o", "json", "directory")
	var dir pocnetv1.Directory
	if err := protojson.Unmarshal([]byte(out), &dir); err != nil || !proto.Equal(&dir, v.Directory().Proto()) {
		t.Errorf("directory json is not the directory in force: %v\n%s", err, out)
	}
}

// TestDirectoryReadOnlyOperator: an operator who is not an admin reads the
// chain, the proposals and the exported versions, and every change it asks
// for is refused by the node, on one line with exit code 1, with nothing
// changed.
func TestDirectoryReadOnlyOperator(t *testing.T) {
	f := startFed(t, 2, nil)
	obs := f.NewMember("XOO", true)
	as(t, f, "XBB", "admin").ok("directory", "propose", "observer", "--entry", writeEntryFile(t, obs.Entry))
	p := proposal(t, f, "XAA", "the observer admission", about("observer admission of XOO"))
	prefix := shortHex(p.GetHash())

	tech := as(t, f, "XAA", "technical")
	tech.ok("directory")
	tech.ok("directory", "history")
	tech.ok("directory", "export", "--signed")
	wantIn(t, "status", tech.ok("directory", "status"), "Proposal "+prefix+": observer admission of XOO\n")

	refused := func(method string) []string {
		return []string{
			": spiffe://pocnet.example/state/XAA/operator/technical/", " is not an admin; changing the directory is a decision of XAA, and only its admin operators may call /pocnet.v1.DirectoryService/" + method,
			"(PermissionDenied)",
		}
	}
	for _, tt := range []struct {
		args   []string
		op     string
		method string
	}{
		{[]string{"update", "--set-poc-languages", "technical=en"}, "update the entry of XAA (edited from version 1)", "UpdateEntry"},
		{[]string{"rotate-keys", "--signing"}, "rotate signing keys", "RotateKeys"},
		{[]string{"propose", "remove", "XBB"}, "propose removal of XBB", "Propose"},
		{[]string{"propose", "rule", "consensus"}, "propose rule change", "Propose"},
		{[]string{"sign", prefix}, "sign proposal " + prefix, "Sign"},
		{[]string{"object", prefix}, "object to proposal " + prefix, "Object"},
	} {
		tech.failsWith(ExitError, "pocctl: "+tt.op+": ", refused(tt.method), append([]string{"directory"}, tt.args...)...)
	}
	if n := latest(f, "XAA").Number(); n != 1 {
		t.Errorf("version %d in force after refused changes, want 1", n)
	}
	p = proposal(t, f, "XAA", "the observer admission", about("observer admission of XOO"))
	if len(p.GetObjected()) != 0 || !slices.Equal(p.GetSigned(), []string{"XBB"}) {
		t.Errorf("the observer admission changed: signed %v, objected %v", p.GetSigned(), p.GetObjected())
	}
}

// TestDirectoryHistoryOnNode: history lists the versions the nodes made,
// newest first, pages, and names no fork where there is none; export
// writes the directory file thread verification loads, and the signed
// version, which verifies offline.
func TestDirectoryHistoryOnNode(t *testing.T) {
	f := startFed(t, 3, nil)
	admin := as(t, f, "XAA", "admin")
	admin.ok("directory", "update", "--set-poc-hours", "policy=Mon-Fri 09:00-17:00 (Europe/Vienna)")
	admin.ok("directory", "update", "--set-poc-languages", "policy=en,fr")
	converged(t, f, 3, "XAA", "XBB")
	as(t, f, "XBB", "admin").ok("directory", "update", "--set-poc-languages", "technical=en,de")
	converged(t, f, 4, "XAA", "XBB", "XCC")
	v1, _ := f.Node("XAA").Directory().Version(1)
	v4 := latest(f, "XAA")

	tech := as(t, f, "XAA", "technical")
	out := tech.ok("directory", "history")
	row := func(v *governance.Version, change, signers string) string {
		return fmt.Sprintf("%d        %s  %s  %-19s  %s\n", v.Number(), hashOf(v), at(timestamppb.New(v.IssuedAt())), change, signers)
	}
	v3, _ := f.Node("XAA").Directory().Version(3)
	wantIn(t, "history", out,
		"Version 4 in force (hash "+hashOf(v4)+")\n\n",
		"VERSION  HASH              ISSUED                           CHANGE               SIGNED BY\n",
		row(v4, "entry update of XBB", "XBB"),
		row(v3, "entry update of XAA", "XAA"),
		row(v1, "genesis", "XAA, XBB, XCC"),
	)
	if strings.Contains(out, "FORK") || strings.Contains(out, "Older versions") {
		t.Errorf("history of a whole, unforked chain:\n%s", out)
	}

	out = tech.ok("directory", "history", "--limit", "2")
	wantIn(t, "history --limit 2", out, "\nOlder versions: pocctl directory history --before 3\n")
	out = tech.ok("directory", "history", "--before", "3")
	if !strings.Contains(out, "\n2        ") || !strings.Contains(out, "\n1        ") || strings.Contains(out, "\n3        ") {
		t.Errorf("history --before 3:\n%s", out)
	}
	out = tech.ok("-o", "json", "directory", "history")
	var h pocnetv1.GetHistoryResponse
	if err := protojson.Unmarshal([]byte(out), &h); err != nil || h.GetHead().GetVersion() != 4 || len(h.GetVersions()) != 4 || len(h.GetForks()) != 0 {
		t.Errorf("history json: %v\n%s", err, out)
	}

	// The directory file is what thread verify --directory loads.
	file := filepath.Join(t.TempDir(), "directory.json")
	out = tech.ok("directory", "export", "--out", file)
	if want := "Directory of version 4 (hash " + hashOf(v4) + ") written to " + file + "\n"; out != want {
		t.Errorf("export: %q, want %q", out, want)
	}
	loaded, err := directory.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(loaded.Proto(), v4.Directory().Proto()) {
		t.Error("the exported directory is not the one in force")
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("exported file mode: %v, %v", st.Mode(), err)
	}
	// To standard output, of an older version.
	out = tech.ok("directory", "export", "--version", "1")
	old, err := directory.Parse([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(old.Proto(), f.Certs.Directory) {
		t.Error("the exported version 1 is not the genesis's directory")
	}
	// As signed: the genesis verifies offline as a trust anchor, and the
	// version in force as the child of its parent.
	out = tech.ok("directory", "export", "--version", "1", "--signed")
	var genesis pocnetv1.SignedVersion
	if err := protojson.Unmarshal([]byte(out), &genesis); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&genesis, f.Genesis) {
		t.Error("the exported signed version 1 is not the genesis")
	}
	if _, err := governance.NewChain(&genesis, time.Now()); err != nil {
		t.Errorf("the exported genesis does not verify: %v", err)
	}
	file = filepath.Join(t.TempDir(), "v4.json")
	out = tech.ok("directory", "export", "--signed", "--out", file)
	if want := "Signed version of version 4 (hash " + hashOf(v4) + ") written to " + file + "\n"; out != want {
		t.Errorf("export --signed: %q, want %q", out, want)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var sv pocnetv1.SignedVersion
	if err := protojson.Unmarshal(b, &sv); err != nil {
		t.Fatal(err)
	}
	if _, err := governance.Verify(v3, &sv, time.Now()); err != nil {
		t.Errorf("the exported version 4 does not verify as the child of version 3: %v", err)
	}

	tech.fails(ExitError, "pocctl: get directory version 9: version 9 not found: the chain ends at version 4 (NotFound)\n", "directory", "export", "--version", "9")
}

// TestDirectoryForkOnNodes: XAA and XBB each change their own entry while
// the other's node is down; once both run, each node refuses the other's
// version 2, and history says so loudly, on standard error too.
func TestDirectoryForkOnNodes(t *testing.T) {
	f := startFed(t, 2, nil)
	f.Stop("XBB")
	as(t, f, "XAA", "admin").ok("directory", "update", "--set-poc-languages", "technical=en,de")
	f.Stop("XAA")
	f.Restart("XBB")
	as(t, f, "XBB", "admin").ok("directory", "update", "--set-poc-languages", "technical=en,nl")
	f.Restart("XAA")
	testfed.WaitFor(t, "the fork reported by both nodes", func() bool {
		return len(f.Node("XAA").Directory().Forks()) > 0 && len(f.Node("XBB").Directory().Forks()) > 0
	})
	a, b := latest(f, "XAA"), latest(f, "XBB")
	if a.Number() != 2 || b.Number() != 2 || a.Hash() == b.Hash() {
		t.Fatalf("XAA at %d %s, XBB at %d %s: want two versions 2", a.Number(), hashOf(a), b.Number(), hashOf(b))
	}
	for _, tt := range []struct {
		state     string
		have, got *governance.Version
	}{{"XAA", a, b}, {"XBB", b, a}} {
		code, out, errOut := as(t, f, tt.state, "technical").run("directory", "history")
		if code != ExitOK || errOut != "pocctl: WARNING: 1 fork(s) of the directory chain detected; see the history\n" {
			t.Errorf("history at %s: exit %d, stderr %q", tt.state, code, errOut)
		}
		wantIn(t, "history at "+tt.state, out,
			"Version 2 in force (hash "+hashOf(tt.have)+")\n",
			"\n!! FORK: 1 point(s) where the directory's history has split\n",
			"!!   version 2: this node holds "+hashOf(tt.have)+"; it refused another valid version "+hashOf(tt.got)+" (no state signed both: changes made at the same time)\n",
			"!! Nothing is resolved automatically: tell the other members' operators and compare histories.\n",
			"\n2        "+hashOf(tt.have)+"  ",
		)
		code, out, _ = as(t, f, tt.state, "technical").run("-o", "json", "directory", "history")
		var h pocnetv1.GetHistoryResponse
		if err := protojson.Unmarshal([]byte(out), &h); code != ExitOK || err != nil || len(h.GetForks()) != 1 || h.GetForks()[0].GetVersion() != 2 {
			t.Errorf("history json at %s: exit %d, %v\n%s", tt.state, code, err, out)
		}
	}
}

// TestDirectoryDecisionsOnNodes: a state member is admitted by proposals
// and signatures made with pocctl at three nodes, and its node then joins;
// a proposal overtaken by another version is shown superseded and can no
// longer be signed; a state signs one decision per version; what the
// nodes refuse is one line with exit code 1.
func TestDirectoryDecisionsOnNodes(t *testing.T) {
	f := startFed(t, 3, nil)
	xaa, xbb, xcc := as(t, f, "XAA", "admin"), as(t, f, "XBB", "admin"), as(t, f, "XCC", "admin")
	if out := xaa.ok("directory", "status"); out != "No proposals.\n" {
		t.Errorf("status with none: %q", out)
	}

	// XAA proposes to admit XDD: 70% of three states is all three.
	xdd := f.NewMember("XDD", false)
	out := xaa.ok("directory", "propose", "admit", "--entry", writeEntryFile(t, xdd.Entry))
	admit := proposal(t, f, "XAA", "the admission", about("admission of XDD"))
	prefix := shortHex(admit.GetHash())
	wantIn(t, "propose admit", out,
		"Proposed "+prefix+": admission of XDD\n",
		"  State     pending: 1 of 3 signatures needed under supermajority of 70%; signed by XAA; missing: XBB, XCC\n",
		"  Rule      supermajority of 70%; observers by silence of 72h0m0s\n",
		"  Proposed  "+at(admit.GetIssuedAt())+"\n",
		"  Entry     XDD Testland XDD (state), endpoints: "+f.Node("XDD").Addr+"\n",
		"            points of contact: technical, policy, diplomatic\n",
		"  Hash      "+hex.EncodeToString(admit.GetHash())+"\n",
		"\nNext: it goes to every member's node and takes effect once 2 more of XBB, XCC sign it; their admins run: pocctl directory sign "+prefix+"\n",
	)

	// XBB signs at its node, naming the proposal by a prefix of its hash in
	// capitals, as read out over the phone.
	proposal(t, f, "XBB", "the admission", signedBy(admit.GetHash(), 1))
	out = xbb.ok("directory", "sign", strings.ToUpper(prefix))
	wantIn(t, "sign at XBB", out,
		"Signed "+prefix+": admission of XDD\n",
		"  State     pending: 2 of 3 signatures needed under supermajority of 70%; signed by XAA, XBB; missing: XCC\n",
		"\nNext: it goes to every member's node and takes effect once 1 more of XCC sign it; their admins run: pocctl directory sign "+prefix+"\n",
	)
	// XCC's signature, once its node holds XBB's, completes it.
	proposal(t, f, "XCC", "the admission signed by XAA and XBB", signedBy(admit.GetHash(), 2))
	wantIn(t, "status at XCC", xcc.ok("directory", "status"),
		"Proposal "+prefix+": admission of XDD\n  State     pending: 2 of 3 signatures needed under supermajority of 70%; signed by XAA, XBB; missing: XCC\n")
	out = xcc.ok("directory", "sign", prefix)
	wantIn(t, "sign at XCC", out,
		"Signed "+prefix+": admission of XDD\n",
		"  State     adopted as version 2\n",
		"\nIt is in force as version 2.\n",
	)
	// XDD's node, started from the genesis alone, is let in and catches up.
	if err := f.StartMember("XDD"); err != nil {
		t.Fatalf("XDD's node after its admission: %v", err)
	}
	wantIn(t, "directory at XDD", as(t, f, "XDD", "technical").ok("directory"),
		"Federation pocnet.example — 4 member(s)\n", "Last change  admission of XDD\n")
	converged(t, f, 2, "XAA", "XBB", "XCC", "XDD")
	wantIn(t, "status at XAA", xaa.ok("directory", "status"),
		"Proposal "+prefix+": admission of XDD\n  State     adopted as version 2\n")

	// A rule change XAA proposes is overtaken by XCC's entry update, made
	// as the same version 3.
	out = xaa.ok("directory", "propose", "rule", "supermajority:51")
	rule := proposal(t, f, "XAA", "the rule change", about("rule change"))
	rprefix := shortHex(rule.GetHash())
	wantIn(t, "propose rule", out,
		"Proposed "+rprefix+": rule change\n",
		"  State     pending: 1 of 3 signatures needed under supermajority of 70%; signed by XAA; missing: XBB, XCC, XDD\n",
	)
	xcc.ok("directory", "update", "--set-poc-languages", "technical=en")
	converged(t, f, 3, "XAA", "XCC")
	wantIn(t, "status after the entry update", xaa.ok("directory", "status"),
		"Proposal "+rprefix+": rule change\n  State     superseded by version 3: propose again\n",
		"Proposal "+prefix+": admission of XDD\n  State     adopted as version 2\n",
	)
	xaa.fails(ExitError, "pocctl: sign proposal "+rprefix+": proposal "+rprefix+" is superseded by another version; propose it again on the version in force (FailedPrecondition)\n",
		"directory", "sign", rprefix)

	// XAA proposes the rule change again, on version 3; XBB proposes to
	// remove XDD. XAA, having signed one decision on version 3, may not
	// sign another.
	xaa.ok("directory", "propose", "rule", "supermajority:51")
	rule = proposal(t, f, "XAA", "the rule change on version 3", func(p *pocnetv1.Proposal) bool {
		return p.GetDescription() == "rule change" && p.GetVersion() == 4 && p.GetState() == pocnetv1.ProposalState_PROPOSAL_STATE_PENDING
	})
	converged(t, f, 3, "XBB", "XAA")
	xbb.ok("directory", "propose", "remove", "xdd")
	removal := proposal(t, f, "XAA", "the removal", about("removal of XDD"))
	dprefix := shortHex(removal.GetHash())
	xaa.fails(ExitError, "pocctl: sign proposal "+dprefix+": XAA already signed proposal "+shortHex(rule.GetHash())+" (rule change) on version 3; a state signs one decision per version, "+
		"so that two decisions can never both reach the quorum and split the federation. Sign this one after that one is decided, on the version then in force (FailedPrecondition)\n",
		"directory", "sign", dprefix)

	// What pocctl or the node refuses: one line, exit 1.
	xaa.fails(ExitError, "pocctl: proposal "+dprefix+" is the removal of XDD: only an observer admission is objected to; a decision is opposed by not signing it\n",
		"directory", "object", dprefix)
	n := len(f.Node("XAA").Directory().Proposals())
	xaa.fails(ExitError, fmt.Sprintf("pocctl: no such proposal: none of the %d proposal(s) the node holds has a hash starting with deadbeef\n", n),
		"directory", "sign", "deadbeef")
	xaa.fails(ExitError, "pocctl: propose removal of XZZ: invalid directory version: removal: \"XZZ\" is not a member (InvalidArgument)\n",
		"directory", "propose", "remove", "XZZ")
	// The same rule is no change: refused before anything is sent.
	code, _, errOut := xaa.run("directory", "propose", "rule", "supermajority:70")
	if code != ExitUsage || !strings.Contains(errOut, "RULE: the rule in force (version 3) is already supermajority of 70% of the state members; observers admitted by silence of 3d") {
		t.Errorf("same rule: exit %d, stderr %q", code, errOut)
	}
	if v := latest(f, "XAA"); v.Number() != 3 {
		t.Errorf("version %d in force after refused changes, want 3", v.Number())
	}
}

// TestDirectoryObserversOnNodes: an observer admission waits out the
// silence period and one state member's objection stops it; a rule change
// signed at two nodes (threshold 2) shortens the silence period; the next
// observer admission takes effect by silence alone, on every node.
func TestDirectoryObserversOnNodes(t *testing.T) {
	threshold2 := &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Threshold{Threshold: &pocnetv1.ThresholdRule{States: 2}}}
	f := startFed(t, 3, ruleWith(threshold2, time.Hour))
	xaa, xbb, xcc := as(t, f, "XAA", "admin"), as(t, f, "XBB", "admin"), as(t, f, "XCC", "admin")

	xoo := f.NewMember("XOO", true)
	out := xbb.ok("directory", "propose", "observer", "--entry", writeEntryFile(t, xoo.Entry))
	obs := proposal(t, f, "XBB", "the observer admission", about("observer admission of XOO"))
	oprefix := shortHex(obs.GetHash())
	wantIn(t, "propose observer", out,
		"Proposed "+oprefix+": observer admission of XOO\n",
		"  State     observer admission takes effect at "+at(obs.GetSilenceDeadline())+" unless a state member objects; no objection so far\n",
		"  Entry     XOO Testland XOO (observer), endpoints: "+f.Node("XOO").Addr+"\n",
		"\nNext: nothing, unless a state member objects before "+utc(obs.GetSilenceDeadline())+" (pocctl directory object "+oprefix+"); otherwise XOO is admitted then.\n",
	)
	if d := obs.GetSilenceDeadline().AsTime().Sub(obs.GetIssuedAt().AsTime()); d != time.Hour {
		t.Errorf("silence period %v, want the rule's hour", d)
	}
	proposal(t, f, "XAA", "the observer admission", signedBy(obs.GetHash(), 1))
	wantIn(t, "status at XAA", xaa.ok("directory", "status"),
		"Proposal "+oprefix+": observer admission of XOO\n  State     observer admission takes effect at "+at(obs.GetSilenceDeadline())+" unless a state member objects; no objection so far\n")

	out = xaa.ok("directory", "object", oprefix)
	wantIn(t, "object", out,
		"Objected to "+oprefix+": observer admission of XOO\n",
		"  State     objected to by XAA: will not take effect\n",
		"\nIt will not take effect: an observer is admitted only if no state member objects.\n",
	)
	// The objection reaches the proposer's node.
	proposal(t, f, "XBB", "the objection", func(p *pocnetv1.Proposal) bool {
		return bytes.Equal(p.GetHash(), obs.GetHash()) && slices.Contains(p.GetObjected(), "XAA")
	})
	wantIn(t, "status at XBB", xbb.ok("directory", "status"),
		"Proposal "+oprefix+": observer admission of XOO\n  State     objected to by XAA: will not take effect\n")

	// The silence period goes down to two seconds: XAA proposes, XCC signs.
	// XBB, having made a decision on version 1 (the observer admission), is
	// not needed under a threshold of 2.
	out = xaa.ok("directory", "propose", "rule", "threshold:2", "--silence-period", "2s")
	rule := proposal(t, f, "XAA", "the rule change", about("rule change"))
	wantIn(t, "propose rule", out, "  State     pending: 1 of 2 signatures needed under threshold of 2 states; signed by XAA; missing: XBB, XCC\n")
	proposal(t, f, "XCC", "the rule change", signedBy(rule.GetHash(), 1))
	wantIn(t, "sign rule", xcc.ok("directory", "sign", shortHex(rule.GetHash())), "  State     adopted as version 2\n")
	converged(t, f, 2, "XAA", "XBB", "XCC")
	wantIn(t, "status at XBB", xbb.ok("directory", "status"),
		"Proposal "+oprefix+": observer admission of XOO\n  State     superseded by version 2: propose again\n")
	wantIn(t, "directory", xbb.ok("directory"), "Rule         threshold of 2 state members; observers admitted by silence of 2s\n")

	// XPP's admission takes effect when the two seconds pass without an
	// objection: every node adopts it by itself.
	xpp := f.NewMember("XPP", true)
	xaa.ok("directory", "propose", "observer", "--entry", writeEntryFile(t, xpp.Entry))
	pp := proposal(t, f, "XAA", "the observer admission of XPP", about("observer admission of XPP"))
	if d := pp.GetSilenceDeadline().AsTime().Sub(pp.GetIssuedAt().AsTime()); d != 2*time.Second {
		t.Errorf("silence period %v, want 2s", d)
	}
	converged(t, f, 3, "XAA", "XBB", "XCC")
	if latest(f, "XAA").Hash() != [32]byte(pp.GetHash()) {
		t.Fatalf("version 3 is not the observer admission of XPP")
	}
	wantIn(t, "status after the silence", xaa.ok("directory", "status"),
		"Proposal "+shortHex(pp.GetHash())+": observer admission of XPP\n  State     adopted as version 3\n")
	wantIn(t, "directory after the silence", xcc.ok("directory"),
		"Last change  observer admission of XPP\n", "\nXPP  Testland XPP (observer)\n")
}

// TestDirectoryUpdateOnNode: an admin edits the state's own entry at its
// node: endpoints, CAs, revoked certificates, points of contact, or the
// whole entry; the new version reaches the other node; a revoked operator
// certificate is refused at once; an entry changed by someone else since
// it was read is not overwritten; edits that do not fit are refused before
// anything is sent.
func TestDirectoryUpdateOnNode(t *testing.T) {
	f := startFed(t, 2, nil)
	admin := as(t, f, "XAA", "admin")
	addr := f.Node("XAA").Addr
	out := admin.ok("directory", "update", "--endpoint", addr, "--endpoint", "xaa-2.example:7401",
		"--set-poc-languages", "technical=en,fr,es", "--set-poc-accepts", "policy=rfi,notification",
		"--set-poc-hours", "technical=24/7 (Europe/Vienna)", "--set-poc-hours", "diplomatic=")
	v := latest(f, "XAA")
	wantIn(t, "update", out,
		"Entry of XAA updated: version 2 (hash "+hashOf(v)+"), issued "+at(timestamppb.New(v.IssuedAt()))+", signed by XAA\n",
		"  endpoints: "+addr+" → "+addr+", xaa-2.example:7401\n",
		"  point of contact technical: languages en,fr → en,fr,es; hours 24/7 → 24/7 (Europe/Vienna)\n",
		"  point of contact policy: accepts rfi,consultations,notification,check → rfi,notification\n",
		"  point of contact diplomatic: hours Mon-Fri 09:00-17:00 → -\n",
	)
	converged(t, f, 2, "XAA", "XBB")
	m := entryAt(t, f, "XAA")
	if got, _ := latest(f, "XBB").Directory().Member("XAA"); !proto.Equal(got, m) {
		t.Errorf("XBB holds another entry of XAA:\n%v\nwant\n%v", got, m)
	}
	if !slices.Equal(m.GetEndpoints(), []string{addr, "xaa-2.example:7401"}) || m.GetPointsOfContact()[0].GetHours().GetTimeZone() != "Europe/Vienna" {
		t.Errorf("entry in force: %v", m)
	}

	// The same again changes nothing, and nothing is sent.
	if out := admin.ok("directory", "update", "--endpoint", addr, "--endpoint", "xaa-2.example:7401"); out != "Nothing to change: the entry of XAA in version 2 already says this.\n" {
		t.Errorf("no change: %q", out)
	}

	// A second CA, then removed again.
	ca := testpki.NewCA(t, "XAA")
	caFile := writeCert(t, ca.Cert)
	fp := sha256.Sum256(ca.Cert.Raw)
	wantIn(t, "add-ca", admin.ok("directory", "update", "--add-ca", caFile), "version 3",
		"  CA certificate added: \"CN=XAA root CA\", sha256 "+hex.EncodeToString(fp[:8])+"\n")
	wantIn(t, "remove-ca", admin.ok("directory", "update", "--remove-ca", caFile), "version 4",
		"  CA certificate removed: \"CN=XAA root CA\", sha256 "+hex.EncodeToString(fp[:8])+"\n")

	// XAA's policy operator certificate is revoked by file, another by
	// fingerprint; the node refuses the revoked certificate from then on.
	policy := as(t, f, "XAA", "policy")
	policy.ok("status")
	cert := f.Certs.State("XAA").Operator("policy")
	pfp := sha256.Sum256(cert.Cert.Raw)
	other := sha256.Sum256([]byte("a certificate whose file is lost"))
	revokedAt := time.Now().UTC().Truncate(time.Second)
	admin.now = func() time.Time { return revokedAt }
	out = admin.ok("directory", "update", "--revoke-cert", writePEM(t, cert.CertPEM), "--revoke-cert", hex.EncodeToString(other[:]), "--reason", "laptop stolen")
	admin.now = nil
	wantIn(t, "revoke", out, "version 5",
		"  certificate revoked: sha256 "+hex.EncodeToString(pfp[:])+" at "+revokedAt.Format(time.RFC3339)+": laptop stolen\n",
		"  certificate revoked: sha256 "+hex.EncodeToString(other[:])+" at "+revokedAt.Format(time.RFC3339)+": laptop stolen\n",
	)
	if rs := entryAt(t, f, "XAA").GetRevokedCertificates(); len(rs) != 2 || !bytes.Equal(rs[0].GetSha256(), pfp[:]) || rs[0].GetReason() != "laptop stolen" ||
		!rs[0].GetRevokedAt().AsTime().Equal(revokedAt) {
		t.Errorf("revocations in force: %v", rs)
	}
	code, _, errOut := policy.run("status")
	// The handshake fails; how the client sees it (bad certificate, broken
	// pipe) depends on timing.
	if code != ExitError || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "pocctl: cannot reach node ") || !strings.Contains(errOut, "(Unavailable)") {
		t.Errorf("the revoked operator: exit %d, stderr %q", code, errOut)
	}

	// The whole entry, as JSON.
	entry := entryAt(t, f, "XAA")
	entry.Name = "Republic of Testland"
	b, err := protojson.Marshal(entry)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "xaa.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out = admin.ok("-o", "json", "directory", "update", "--entry", file)
	var sum pocnetv1.VersionSummary
	if err := protojson.Unmarshal([]byte(out), &sum); err != nil || sum.GetVersion() != 6 || sum.GetDescription() != "entry update of XAA" {
		t.Errorf("update json: %v\n%s", err, out)
	}
	if got := entryAt(t, f, "XAA"); !proto.Equal(got, entry) {
		t.Errorf("entry in force after --entry:\n%v\nwant\n%v", got, entry)
	}

	// Another admin changes the entry after pocctl read it and before it
	// sends the edit (pocctl reads its clock in between, to date the edit):
	// the node refuses the edit rather than overwrite the other change.
	var once sync.Once
	admin.now = func() time.Time {
		once.Do(func() {
			m := entryAt(t, f, "XAA")
			m.Name = "Testland XAA, renamed meanwhile"
			if _, err := f.Node("XAA").Directory().UpdateEntry(context.Background(), m, 0); err != nil {
				t.Errorf("the other admin's update: %v", err)
			}
		})
		return time.Now()
	}
	admin.fails(ExitError, "pocctl: update the entry of XAA (edited from version 6): the entry of XAA changed after version 6 (now version 7); read it again and reapply the edit (FailedPrecondition)\n",
		"directory", "update", "--set-poc-languages", "technical=en")
	admin.now = nil
	if got := entryAt(t, f, "XAA"); got.GetName() != "Testland XAA, renamed meanwhile" || !slices.Equal(got.GetPointsOfContact()[0].GetLanguages(), []string{"en", "fr", "es"}) {
		t.Errorf("entry in force after the refused edit: %v", got)
	}

	// Edits that do not fit the entry are refused before anything is sent.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--set-poc-languages", "desk=en"}, `--set-poc-languages: XAA lists no point of contact "desk" (it lists: technical, policy, diplomatic)`},
		{[]string{"--remove-ca", writeCert(t, testpki.NewCA(t, "XAA").Cert)}, `--remove-ca: `},
		{[]string{"--entry", writeEntryFile(t, entryAt(t, f, "XBB"))}, "--entry: the entry is of XBB, not of your state XAA"},
	} {
		code, _, errOut := admin.run(append([]string{"directory", "update"}, tt.args...)...)
		if code != ExitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("update %v: exit %d, stderr %q, want %q", tt.args, code, errOut, tt.want)
		}
	}
	if n := latest(f, "XAA").Number(); n != 7 {
		t.Errorf("version %d after refused edits, want 7", n)
	}
}

// TestDirectoryRotateKeysOnNode: the node makes new keys, publishes them,
// and signs the next version with the new signing key, which the other
// node accepts.
func TestDirectoryRotateKeysOnNode(t *testing.T) {
	f := startFed(t, 2, nil)
	admin := as(t, f, "XAA", "admin")
	oldKeys := entryAt(t, f, "XAA").GetSigningKeys()
	out := admin.ok("directory", "rotate-keys", "--signing", "--encryption")
	v := latest(f, "XAA")
	m := entryAt(t, f, "XAA")
	sk := m.GetSigningKeys()[len(m.GetSigningKeys())-1]
	ek := m.GetEncryptionKeys()[len(m.GetEncryptionKeys())-1]
	want := "New keys of XAA published in version 2 (hash " + hashOf(v) + "), issued " + at(timestamppb.New(v.IssuedAt())) + "\n" +
		"  signing key     " + sk.GetKeyId() + ": the node signs with it from this version on; the old key is retired and still verifies what it signed before\n" +
		"  encryption key  " + ek.GetKeyId() + ": senders seal to it from this version on; the old key is retired and kept for what is in flight\n"
	if out != want {
		t.Errorf("rotate-keys:\n%s\nwant:\n%s", out, want)
	}
	if sk.GetStatus() != pocnetv1.KeyStatus_KEY_STATUS_ACTIVE || slices.ContainsFunc(oldKeys, func(k *pocnetv1.SigningKey) bool { return k.GetKeyId() == sk.GetKeyId() }) {
		t.Errorf("new signing key %v", sk)
	}
	if k, ok := v.Directory().SealingKey("XAA"); !ok || k.GetKeyId() != ek.GetKeyId() {
		t.Errorf("senders seal to %v, want %s", k, ek.GetKeyId())
	}

	// The next version is signed with the new key, and XBB's node takes it.
	admin.ok("directory", "update", "--set-poc-languages", "technical=en")
	converged(t, f, 3, "XAA", "XBB")
	v3 := latest(f, "XBB")
	if sigs := v3.Signed().GetSignatures(); len(sigs) != 1 || sigs[0].GetState() != "XAA" || sigs[0].GetKeyId() != sk.GetKeyId() {
		t.Errorf("version 3 is not signed by XAA's new key %s: %v", sk.GetKeyId(), sigs)
	}

	out = admin.ok("-o", "json", "directory", "rotate-keys", "--encryption")
	var r struct {
		SigningKeyID    string `json:"signingKeyId"`
		EncryptionKeyID string `json:"encryptionKeyId"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.SigningKeyID != "" || !strings.HasPrefix(r.EncryptionKeyID, "mlkem768x25519:") {
		t.Errorf("rotate-keys json: %v\n%s", err, out)
	}
}

// GetDirectory lets the fake node answer as a node that keeps no chain.
func (f *fakeNode) GetDirectory(context.Context, *pocnetv1.GetDirectoryRequest) (*pocnetv1.GetDirectoryResponse, error) {
	return &pocnetv1.GetDirectoryResponse{Directory: &pocnetv1.Directory{FederationId: "pocnet.test", Members: []*pocnetv1.Member{
		{State: "XAA", Kind: pocnetv1.MemberKind_MEMBER_KIND_STATE, Name: "Testland XAA", Endpoints: []string{"127.0.0.1:7401"}},
	}}}, nil
}

// TestDirectoryShowWithoutChain: a node that serves no DirectoryService
// (every node of this version serves it, so this is the fake node) still
// shows its directory, and the commands that need the chain say so.
func TestDirectoryShowWithoutChain(t *testing.T) {
	_, cfg := startFakeNode(t)
	code, out, errOut := run(t, "", "--config", cfg, "directory")
	want := "Federation pocnet.test — 1 member(s)\n" +
		"Version  unknown: this node serves no signed directory chain\n" +
		"\nXAA  Testland XAA (state)\n" +
		"  endpoints: 127.0.0.1:7401\n" +
		"  (no points of contact listed)\n"
	if code != ExitOK || out != want {
		t.Errorf("directory: exit %d, stderr %q\n%s\nwant:\n%s", code, errOut, out, want)
	}
	code, _, errOut = run(t, "", "--config", cfg, "directory", "history")
	if code != ExitError || !strings.HasPrefix(errOut, "pocctl: get directory history: ") || !strings.Contains(errOut, "(Unimplemented)") {
		t.Errorf("history without chain: exit %d, stderr %q", code, errOut)
	}
}
