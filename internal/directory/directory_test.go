package directory_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/directory"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

var t0 = time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)

// federation generates a valid three-state federation.
func federation(t testing.TB) *certs.Federation {
	t.Helper()
	f, err := certs.Generate(certs.Options{States: []string{"XCC", "XAA", "XBB"}, BasePort: 7401, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestNewRefusesInvalid(t *testing.T) {
	f := federation(t)
	leafPEM := string(f.State("XAA").Node.CertPEM)
	tests := []struct {
		name   string
		mutate func(*pocnetv1.Directory)
		want   string // the whole message after "invalid directory: "
	}{
		{"bad federation id", func(d *pocnetv1.Directory) { d.FederationId = "Pocnet" },
			`federation_id: "Pocnet" is not a valid federation id`},
		{"empty federation id", func(d *pocnetv1.Directory) { d.FederationId = "" },
			`federation_id: "" is not a valid federation id`},
		{"bad state code", func(d *pocnetv1.Directory) { d.Members[1].State = "xaa" },
			`members[1].state: "xaa" is not an ISO 3166-1 alpha-3 state code`},
		{"duplicate state", func(d *pocnetv1.Directory) { d.Members[2].State = "XCC" },
			"members[2].state: XCC is listed twice"},
		{"kind unspecified", func(d *pocnetv1.Directory) { d.Members[0].Kind = pocnetv1.MemberKind_MEMBER_KIND_UNSPECIFIED },
			"members[0].kind: must be MEMBER_KIND_STATE or MEMBER_KIND_OBSERVER"},
		{"kind out of range", func(d *pocnetv1.Directory) { d.Members[0].Kind = 7 },
			"members[0].kind: must be MEMBER_KIND_STATE or MEMBER_KIND_OBSERVER"},
		{"no CA", func(d *pocnetv1.Directory) { d.Members[1].CaCertificates = nil },
			"members[1].ca_certificates: at least one CA certificate is required"},
		{"non-CA certificate", func(d *pocnetv1.Directory) { d.Members[1].CaCertificates = []string{leafPEM} },
			`members[1].ca_certificates[0]: "CN=XAA node,O=XAA" is not a CA certificate`},
		{"non-CA certificate after a CA", func(d *pocnetv1.Directory) {
			d.Members[1].CaCertificates = append(d.Members[1].CaCertificates, leafPEM)
		}, `members[1].ca_certificates[1]: "CN=XAA node,O=XAA" is not a CA certificate`},
		{"garbage PEM", func(d *pocnetv1.Directory) { d.Members[0].CaCertificates = []string{"not a certificate"} },
			"members[0].ca_certificates[0]: no PEM certificate found"},
		{"garbage in a PEM block", func(d *pocnetv1.Directory) {
			d.Members[0].CaCertificates = []string{"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}
		}, "members[0].ca_certificates[0]: x509: malformed certificate"},
		{"private key instead of a certificate", func(d *pocnetv1.Directory) {
			d.Members[0].CaCertificates = []string{string(f.State("XCC").CA.KeyPEM)}
		}, `members[0].ca_certificates[0]: PEM block "PRIVATE KEY" is not a CERTIFICATE`},
		{"no endpoints", func(d *pocnetv1.Directory) { d.Members[2].Endpoints = nil },
			"members[2].endpoints: at least one host:port is required"},
		{"endpoint without port", func(d *pocnetv1.Directory) { d.Members[2].Endpoints = []string{"127.0.0.1:7403", "127.0.0.1"} },
			`members[2].endpoints[1]: "127.0.0.1" is not host:port`},
		{"endpoint with empty port", func(d *pocnetv1.Directory) { d.Members[2].Endpoints = []string{"node.example:"} },
			`members[2].endpoints[0]: "node.example:" is not host:port`},
		{"bad role", func(d *pocnetv1.Directory) { d.Members[0].PointsOfContact[1].Role = "Policy" },
			`members[0].points_of_contact[1].role: "Policy" is not a valid role`},
		{"empty role", func(d *pocnetv1.Directory) { d.Members[0].PointsOfContact[0].Role = "" },
			`members[0].points_of_contact[0].role: "" is not a valid role`},
		{"admin as role", func(d *pocnetv1.Directory) { d.Members[1].PointsOfContact[2].Role = "admin" },
			`members[1].points_of_contact[2].role: "admin" is reserved for node administrators and cannot be a PoC`},
		{"duplicate role", func(d *pocnetv1.Directory) { d.Members[1].PointsOfContact[2].Role = "technical" },
			`members[1].points_of_contact[2].role: "technical" is listed twice`},
		{"bad language tag", func(d *pocnetv1.Directory) { d.Members[2].PointsOfContact[0].Languages = []string{"en", "english!"} },
			`members[2].points_of_contact[0].languages[1]: "english!" is not a BCP 47 tag`},
		{"unknown kind number 42", func(d *pocnetv1.Directory) {
			d.Members[0].PointsOfContact[2].AcceptedKinds = append(d.Members[0].PointsOfContact[2].AcceptedKinds, 42)
		}, "members[0].points_of_contact[2].accepted_kinds[3]: unknown kind 42"},
		{"kind unspecified accepted", func(d *pocnetv1.Directory) {
			d.Members[0].PointsOfContact[0].AcceptedKinds = []pocnetv1.Kind{pocnetv1.Kind_KIND_UNSPECIFIED}
		}, "members[0].points_of_contact[0].accepted_kinds[0]: unknown kind 0"},
		{"no signing key", func(d *pocnetv1.Directory) { d.Members[1].SigningKeys = nil },
			"members[1].signing_keys: at least one ACTIVE Ed25519 signing key is required"},
		{"only a revoked signing key", func(d *pocnetv1.Directory) {
			d.Members[1].SigningKeys[0].Status = pocnetv1.KeyStatus_KEY_STATUS_REVOKED
		}, "members[1].signing_keys: at least one ACTIVE"},
		{"signing key of the wrong size", func(d *pocnetv1.Directory) { d.Members[0].SigningKeys[0].PublicKey = make([]byte, 31) },
			"members[0].signing_keys[0].public_key: 31 bytes"},
		{"signing key id not derived from the key", func(d *pocnetv1.Directory) {
			d.Members[0].SigningKeys[0].KeyId = d.Members[1].SigningKeys[0].GetKeyId()
		}, "members[0].signing_keys[0].key_id: "},
		{"signing key listed twice", func(d *pocnetv1.Directory) {
			d.Members[0].SigningKeys = append(d.Members[0].SigningKeys, d.Members[0].SigningKeys[0])
		}, "members[0].signing_keys[1].key_id: " + f.Directory.Members[0].SigningKeys[0].GetKeyId() + " is listed twice"},
		{"retired signing key without retired_at", func(d *pocnetv1.Directory) {
			d.Members[0].SigningKeys[0].Status = pocnetv1.KeyStatus_KEY_STATUS_RETIRED
		}, "members[0].signing_keys[0].retired_at: required for a RETIRED key"},
		{"key status unspecified", func(d *pocnetv1.Directory) {
			d.Members[0].SigningKeys[0].Status = pocnetv1.KeyStatus_KEY_STATUS_UNSPECIFIED
		}, "members[0].signing_keys[0].status: must be"},
		{"encryption key of another member", func(d *pocnetv1.Directory) {
			d.Members[2].EncryptionKeys = append(d.Members[2].EncryptionKeys, d.Members[0].EncryptionKeys[0])
		}, "members[2].encryption_keys[1]: " + f.Directory.Members[0].EncryptionKeys[0].GetKeyId() + " is also a key of XCC"},
		{"signing key of another member", func(d *pocnetv1.Directory) {
			d.Members[1].SigningKeys = append(d.Members[1].SigningKeys, d.Members[0].SigningKeys[0])
		}, "members[1].signing_keys[1]: " + f.Directory.Members[0].SigningKeys[0].GetKeyId() + " is also a key of XCC"},
		{"no encryption key", func(d *pocnetv1.Directory) { d.Members[2].EncryptionKeys = nil },
			"members[2].encryption_keys: at least one ACTIVE encryption key is required"},
		{"encryption key garbage", func(d *pocnetv1.Directory) { d.Members[2].EncryptionKeys[0].PublicKey = []byte("not a key") },
			"members[2].encryption_keys[0].public_key: not an ML-KEM-768+X25519 public key"},
		{"encryption key id not derived from the key", func(d *pocnetv1.Directory) {
			d.Members[2].EncryptionKeys[0].KeyId = d.Members[0].EncryptionKeys[0].GetKeyId()
		}, "members[2].encryption_keys[0].key_id: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb := proto.Clone(f.Directory).(*pocnetv1.Directory)
			tt.mutate(pb)
			_, err := directory.New(pb)
			if !errors.Is(err, directory.ErrInvalid) || !strings.HasPrefix(err.Error(), "invalid directory: "+tt.want) {
				t.Fatalf("New = %v\nwant: invalid directory: %s...", err, tt.want)
			}
			// The same directory refused through its JSON form.
			data, err := directory.Marshal(pb)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := directory.Parse(data); !errors.Is(err, directory.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse = %v", err)
			}
		})
	}
}

func TestParseRefusesJSON(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"unknown field", `{"federationId": "pocnet.example", "members": [], "secretariat": "XAA"}`, `unknown field "secretariat"`},
		{"unknown nested field", `{"federationId": "pocnet.example", "members": [{"state": "XAA", "flag": "x"}]}`, `unknown field "flag"`},
		{"not JSON", `federation_id: pocnet.example`, "invalid directory: "},
		{"unknown kind name", `{"federationId": "pocnet.example", "members": [{"state": "XAA", "kind": "MEMBER_KIND_EMPIRE"}]}`, "MEMBER_KIND_EMPIRE"},
		{"CA that is not PEM", `{"federationId":"pocnet.example","members":[{"state":"XAA","kind":"MEMBER_KIND_STATE","caCertificates":["x"]}]}`, "members[0].ca_certificates[0]: no PEM certificate found"},
		{"too large", strings.Repeat(" ", directory.MaxSize+1), "more than"},
	}
	for _, tt := range tests {
		_, err := directory.Parse([]byte(tt.json))
		if !errors.Is(err, directory.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse = %v, want ErrInvalid containing %q", tt.name, err, tt.want)
		}
	}
}

func TestParseKindNumberInJSON(t *testing.T) {
	f := federation(t)
	data, err := directory.Marshal(f.Directory)
	if err != nil {
		t.Fatal(err)
	}
	// A newer peer's kind, written as a number, is refused with its path.
	s := strings.Replace(string(data), `"KIND_OTHER"`, `42`, 1)
	_, err = directory.Parse([]byte(s))
	if !errors.Is(err, directory.ErrInvalid) || !strings.Contains(err.Error(), "members[0].points_of_contact[0].accepted_kinds[4]: unknown kind 42") {
		t.Fatalf("Parse = %v", err)
	}
}

func TestValidDirectory(t *testing.T) {
	f := federation(t)
	dir := t.TempDir()
	if err := f.Write(dir); err != nil {
		t.Fatal(err)
	}
	d, err := directory.Load(filepath.Join(dir, "directory.json"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if d.Federation() != "pocnet.example" || !proto.Equal(d.Proto(), f.Directory) {
		t.Errorf("Federation %q; directory differs", d.Federation())
	}
	if got := d.States(); !slices.Equal(got, []string{"XAA", "XBB", "XCC"}) {
		t.Errorf("States = %v, want sorted", got)
	}
	tests := []struct {
		state, endpoint string
	}{{"XCC", "127.0.0.1:7401"}, {"XAA", "127.0.0.1:7402"}, {"XBB", "127.0.0.1:7403"}}
	for _, tt := range tests {
		m, ok := d.Member(tt.state)
		if !ok || m.GetState() != tt.state {
			t.Errorf("Member(%s) = %v, %v", tt.state, m, ok)
		}
		if got := d.Endpoints(tt.state); !slices.Equal(got, []string{tt.endpoint}) {
			t.Errorf("Endpoints(%s) = %v", tt.state, got)
		}
		p, ok := d.PointOfContact(tt.state, "diplomatic")
		if !ok || p.GetOrganisation() != "Permanent Mission of "+tt.state {
			t.Errorf("PointOfContact(%s, diplomatic) = %v, %v", tt.state, p, ok)
		}
		if !d.Bundle().Has(tt.state) {
			t.Errorf("bundle has no CA for %s", tt.state)
		}
	}
	if _, ok := d.Member("XDD"); ok {
		t.Error("Member(XDD) found")
	}
	if _, ok := d.PointOfContact("XAA", "consular"); ok {
		t.Error("PointOfContact(XAA, consular) found")
	}
	if _, ok := d.PointOfContact("XDD", "technical"); ok {
		t.Error("PointOfContact(XDD, technical) found")
	}
	if got := d.Endpoints("XDD"); got != nil {
		t.Errorf("Endpoints(XDD) = %v", got)
	}
	if d.Bundle().Federation() != "pocnet.example" {
		t.Error("bundle federation")
	}
}

func TestNewCopiesInput(t *testing.T) {
	f := federation(t)
	pb := proto.Clone(f.Directory).(*pocnetv1.Directory)
	d, err := directory.New(pb)
	if err != nil {
		t.Fatal(err)
	}
	// Editing the caller's message afterwards cannot change a validated
	// directory.
	pb.Members[0].Endpoints[0] = "evil.example:1"
	pb.Members[0].State = "ZZZ"
	if got := d.Endpoints("XCC"); !slices.Equal(got, []string{"127.0.0.1:7401"}) {
		t.Errorf("Endpoints(XCC) = %v after editing the input", got)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"federationId": "x_y"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{filepath.Join(dir, "missing.json"), "no such file"},
		{bad, bad + `: invalid directory: federation_id: "x_y"`},
	}
	for _, tt := range tests {
		if _, err := directory.Load(tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%s) = %v, want %q", tt.path, err, tt.want)
		}
	}
}

func TestSource(t *testing.T) {
	f := federation(t)
	d1, err := directory.New(f.Directory)
	if err != nil {
		t.Fatal(err)
	}
	src := directory.NewSource(d1)
	if src.Directory() != d1 || src.Bundle() != d1.Bundle() {
		t.Error("Source does not serve its directory")
	}
}
