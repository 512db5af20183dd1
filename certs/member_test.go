package certs_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func newMember(t *testing.T, o certs.MemberOptions) *certs.Member {
	t.Helper()
	if o.Federation == "" {
		o.Federation = certs.DefaultFederation
	}
	if o.Endpoint == "" {
		o.Endpoint = "127.0.0.1:7404"
	}
	if o.Now == nil {
		o.Now = fixedNow
	}
	m, err := certs.NewMember(o)
	if err != nil {
		t.Fatalf("NewMember: %v", err)
	}
	return m
}

// TestMemberJoins: a joining state's material is written into its own
// folder, and the entry it publishes is what an admission needs: a version
// admitting it, signed under the rule, verifies as the genesis's child.
func TestMemberJoins(t *testing.T) {
	f := generate(t, certs.Options{Count: 3, BasePort: 7401})
	genesis, err := f.Genesis()
	if err != nil {
		t.Fatal(err)
	}
	m := newMember(t, certs.MemberOptions{State: "XDD", Name: "Republic of XDD"})
	if e := m.Entry; e.GetState() != "XDD" || e.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_STATE || e.GetName() != "Republic of XDD" ||
		len(e.GetPointsOfContact()) != 3 || e.GetEndpoints()[0] != "127.0.0.1:7404" || e.GetCaCertificates()[0] != string(m.CA.CertPEM) {
		t.Fatalf("entry = %v", e)
	}
	if len(m.Operators) != 4 || m.Operator("admin") == nil || m.Operator("diplomatic") == nil || m.Node.ID != identity.Node(certs.DefaultFederation, "XDD") {
		t.Fatalf("operators %d, node %v", len(m.Operators), m.Node.ID)
	}

	dir := filepath.Join(t.TempDir(), "XDD")
	if err := m.Write(dir, genesis); err != nil {
		t.Fatalf("Write: %v", err)
	}
	for _, p := range []string{"member.json", "genesis.json", "ca.pem", "ca-key.pem", "node/node.pem", "node/node-key.pem",
		"node/signing-key.pem", "node/encryption-key.pem", "node/data.key", "node/pocnode.yaml",
		"operators/admin-duty/pocctl.yaml", "operators/technical-duty-officer/key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	entry, err := certs.LoadMember(filepath.Join(dir, certs.MemberFile))
	if err != nil || !proto.Equal(entry, m.Entry) {
		t.Fatalf("member.json read back: %v", err)
	}
	copied, err := governance.LoadGenesis(filepath.Join(dir, certs.GenesisFile))
	if err != nil || !proto.Equal(copied, genesis) {
		t.Fatalf("genesis.json copy: %v", err)
	}
	nodeYAML, _ := os.ReadFile(filepath.Join(dir, "node", "pocnode.yaml"))
	if !strings.Contains(string(nodeYAML), "state: XDD\nlisten: 127.0.0.1:7404\n") || !strings.Contains(string(nodeYAML), "\ngenesis: ../genesis.json\n") {
		t.Errorf("pocnode.yaml:\n%s", nodeYAML)
	}
	if sk, err := envelope.LoadSigningKey(filepath.Join(dir, "node", "signing-key.pem")); err != nil || !sk.Equal(m.SigningKey) {
		t.Errorf("signing key: %v", err)
	}

	// The federation admits it: a supermajority of 70% of three is three.
	chain, err := governance.NewChain(genesis, t0)
	if err != nil {
		t.Fatal(err)
	}
	h := chain.Latest().Hash()
	d := proto.Clone(f.Directory).(*pocnetv1.Directory)
	d.Members = append(d.Members, entry)
	b, err := governance.Marshal(&pocnetv1.DirectoryVersion{
		Version: 2, ParentHash: h[:], IssuedAt: timestamppb.New(t0.Add(time.Hour)), Directory: d, Rule: f.Options().Rule,
		Change: &pocnetv1.Change{Change: &pocnetv1.Change_Admission{Admission: &pocnetv1.Admission{State: "XDD"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	sv := &pocnetv1.SignedVersion{Version: b}
	for _, st := range f.States {
		sig, err := governance.Sign(st.Code, st.SigningKey, b)
		if err != nil {
			t.Fatal(err)
		}
		sv.Signatures = append(sv.Signatures, sig)
	}
	v, err := chain.Add(sv, t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("admission of the written entry: %v", err)
	}
	if _, ok := v.Directory().Member("XDD"); !ok {
		t.Fatal("XDD is not a member after its admission")
	}
}

// TestObserverJoins: an observer's entry is admitted by the silence
// procedure.
func TestObserverJoins(t *testing.T) {
	f := generate(t, certs.Options{Count: 2})
	genesis, err := f.Genesis()
	if err != nil {
		t.Fatal(err)
	}
	m := newMember(t, certs.MemberOptions{State: "XOO", Observer: true})
	if m.Entry.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_OBSERVER || m.Entry.GetName() != "Testland XOO" {
		t.Fatalf("entry = %v", m.Entry)
	}
	if err := m.Write(t.TempDir(), genesis); err != nil {
		t.Fatal(err)
	}
	chain, _ := governance.NewChain(genesis, t0)
	h := chain.Latest().Hash()
	d := proto.Clone(f.Directory).(*pocnetv1.Directory)
	d.Members = append(d.Members, m.Entry)
	deadline := t0.Add(certs.DefaultSilencePeriod)
	b, _ := governance.Marshal(&pocnetv1.DirectoryVersion{
		Version: 2, ParentHash: h[:], IssuedAt: timestamppb.New(t0), Directory: d, Rule: f.Options().Rule,
		Change: &pocnetv1.Change{Change: &pocnetv1.Change_ObserverAdmission{ObserverAdmission: &pocnetv1.ObserverAdmission{State: "XOO", SilenceDeadline: timestamppb.New(deadline)}}},
	})
	sig, _ := governance.Sign("XAA", f.States[0].SigningKey, b)
	if _, err := chain.Add(&pocnetv1.SignedVersion{Version: b, Signatures: []*pocnetv1.VersionSignature{sig}}, deadline); err != nil {
		t.Fatalf("observer admission after the silence period: %v", err)
	}
}

func TestMemberRefusals(t *testing.T) {
	f := generate(t, certs.Options{Count: 2})
	genesis, err := f.Genesis()
	if err != nil {
		t.Fatal(err)
	}
	write := func(m *certs.Member, dir string) error { return m.Write(dir, genesis) }

	if err := write(newMember(t, certs.MemberOptions{State: "XAA"}), t.TempDir()); err == nil || !strings.Contains(err.Error(), "XAA is already a member of the federation pocnet.example") {
		t.Errorf("an existing state: %v", err)
	}
	if err := write(newMember(t, certs.MemberOptions{State: "XDD", Federation: "other.example"}), t.TempDir()); err == nil || !strings.Contains(err.Error(), `made for federation "other.example", but the genesis founds "pocnet.example"`) {
		t.Errorf("another federation: %v", err)
	}
	// A folder already holding something is never written into.
	full := t.TempDir()
	keep := filepath.Join(full, "ca-key.pem")
	if err := os.WriteFile(keep, []byte("an existing key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := write(newMember(t, certs.MemberOptions{State: "XDD"}), full); err == nil || !strings.Contains(err.Error(), full+" is not empty") {
		t.Errorf("a folder not empty: %v", err)
	}
	if b, _ := os.ReadFile(keep); string(b) != "an existing key" {
		t.Error("a refused Write replaced a file")
	}
	// A genesis that does not verify is not installed.
	unsigned := proto.Clone(genesis).(*pocnetv1.SignedVersion)
	unsigned.Signatures = unsigned.Signatures[:1]
	empty := filepath.Join(t.TempDir(), "XDD")
	if err := newMember(t, certs.MemberOptions{State: "XDD"}).Write(empty, unsigned); !errors.Is(err, governance.ErrUnauthorized) || !strings.Contains(err.Error(), "certs: genesis:") {
		t.Errorf("an unverified genesis: %v", err)
	}
	if _, err := os.Stat(empty); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a refused Write created the folder")
	}

	for _, tt := range []struct {
		o    certs.MemberOptions
		want string
	}{
		{certs.MemberOptions{Federation: "Bad", State: "XDD", Endpoint: "127.0.0.1:1"}, "certs: Federation:"},
		{certs.MemberOptions{Federation: "pocnet.example", State: "xdd", Endpoint: "127.0.0.1:1"}, "certs: State:"},
		{certs.MemberOptions{Federation: "pocnet.example", State: "XDD"}, "certs: Endpoint: is required"},
		{certs.MemberOptions{Federation: "pocnet.example", State: "XDD", Endpoint: "nowhere"}, `endpoints[0]: "nowhere" is not host:port`},
		{certs.MemberOptions{Federation: "pocnet.example", State: "XDD", Endpoint: "127.0.0.1:1", Validity: -time.Hour}, "certs: Validity"},
	} {
		if _, err := certs.NewMember(tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewMember(%+v) = %v, want %q", tt.o, err, tt.want)
		}
	}
	if _, err := certs.LoadMember(filepath.Join(t.TempDir(), "member.json")); err == nil {
		t.Error("LoadMember of a missing file succeeded")
	}
	bad := filepath.Join(t.TempDir(), "member.json")
	os.WriteFile(bad, []byte(`{"state": "XDD", "colour": "blue"}`), 0o644)
	if _, err := certs.LoadMember(bad); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Errorf("LoadMember with an unknown field = %v", err)
	}
}
