package certs_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// t0 is the fixed issuing time of every test federation: no test depends on
// the wall clock.
var t0 = time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

func generate(t *testing.T, opts certs.Options) *certs.Federation {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixedNow
	}
	f, err := certs.Generate(opts)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return f
}

func TestStateCodes(t *testing.T) {
	tests := []struct {
		n         int
		wantFirst []string
		wantLast  string
	}{
		{1, []string{"XAA"}, "XAA"},
		{3, []string{"XAA", "XBB", "XCC"}, "XCC"},
		{26, []string{"XAA", "XBB"}, "XZZ"},
		{27, []string{"XAA"}, "XAB"},
		{28, []string{"XAA"}, "XAC"},
		{certs.MaxStates, []string{"XAA"}, "XZY"},
	}
	for _, tt := range tests {
		got, err := certs.StateCodes(tt.n)
		if err != nil {
			t.Fatalf("StateCodes(%d): %v", tt.n, err)
		}
		if len(got) != tt.n {
			t.Fatalf("StateCodes(%d) gave %d codes", tt.n, len(got))
		}
		if !slices.Equal(got[:len(tt.wantFirst)], tt.wantFirst) || got[len(got)-1] != tt.wantLast {
			t.Errorf("StateCodes(%d) = %v...%s, want %v...%s", tt.n, got[:len(tt.wantFirst)], got[len(got)-1], tt.wantFirst, tt.wantLast)
		}
		seen := map[string]bool{}
		for _, c := range got {
			if err := identity.ValidateState(c); err != nil {
				t.Errorf("StateCodes(%d): %v", tt.n, err)
			}
			if seen[c] {
				t.Errorf("StateCodes(%d): %s twice", tt.n, c)
			}
			seen[c] = true
		}
	}
	for _, n := range []int{0, -1, certs.MaxStates + 1} {
		if _, err := certs.StateCodes(n); err == nil || !strings.Contains(err.Error(), "must be between 1 and 676") {
			t.Errorf("StateCodes(%d) error = %v, want a range error", n, err)
		}
	}
}

func TestGenerateDefaults(t *testing.T) {
	f := generate(t, certs.Options{})
	if f.ID != "pocnet.example" {
		t.Errorf("ID = %q", f.ID)
	}
	var codes []string
	for _, s := range f.States {
		codes = append(codes, s.Code)
	}
	if !slices.Equal(codes, []string{"XAA", "XBB", "XCC"}) {
		t.Errorf("states = %v", codes)
	}
	d, err := directory.New(f.Directory)
	if err != nil {
		t.Fatalf("directory.New: %v", err)
	}
	for _, code := range codes {
		// BasePort's zero value puts every node on port 0.
		if got := d.Endpoints(code); !slices.Equal(got, []string{"127.0.0.1:0"}) {
			t.Errorf("Endpoints(%s) = %v", code, got)
		}
		m, _ := d.Member(code)
		if m.GetName() != "Testland "+code || m.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_STATE {
			t.Errorf("member %s: name %q kind %v", code, m.GetName(), m.GetKind())
		}
		if len(m.GetCaCertificates()) != 1 || m.GetCaCertificates()[0] != string(f.State(code).CA.CertPEM) {
			t.Errorf("member %s: CA certificates do not list the state's CA", code)
		}
	}
	if f.State("XDD") != nil {
		t.Error(`State("XDD") is not nil`)
	}
	o := f.Options()
	if o.Validity != certs.DefaultValidity || o.Host != "127.0.0.1" || o.Count != 3 {
		t.Errorf("Options() = %+v", o)
	}
}

func TestGenerateEndpoints(t *testing.T) {
	tests := []struct {
		opts certs.Options
		want map[string]string
	}{
		{certs.Options{BasePort: 7401}, map[string]string{"XAA": "127.0.0.1:7401", "XBB": "127.0.0.1:7402", "XCC": "127.0.0.1:7403"}},
		{certs.Options{States: []string{"FRA", "DEU"}, Host: "localhost", BasePort: 9000}, map[string]string{"FRA": "localhost:9000", "DEU": "localhost:9001"}},
		{certs.Options{Count: 2, Host: "::1", BasePort: 65534}, map[string]string{"XAA": "[::1]:65534", "XBB": "[::1]:65535"}},
	}
	for _, tt := range tests {
		f := generate(t, tt.opts)
		d, err := directory.New(f.Directory)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.States()) != len(tt.want) {
			t.Errorf("%+v: states %v", tt.opts, d.States())
		}
		for code, ep := range tt.want {
			if got := d.Endpoints(code); !slices.Equal(got, []string{ep}) {
				t.Errorf("%+v: Endpoints(%s) = %v, want %s", tt.opts, code, got, ep)
			}
		}
	}
}

func TestGenerateOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opts certs.Options
		want string
	}{
		{"bad federation", certs.Options{Federation: "Pocnet.Example"}, "Federation"},
		{"bad state", certs.Options{States: []string{"XAA", "xbb"}}, "States[1]"},
		{"two-letter state", certs.Options{States: []string{"XA"}}, "States[0]"},
		{"duplicate state", certs.Options{States: []string{"XAA", "XBB", "XAA"}}, "States[2]: XAA is listed twice"},
		{"count mismatch", certs.Options{States: []string{"XAA"}, Count: 2}, "Count is 2 but States lists 1"},
		{"count too large", certs.Options{Count: certs.MaxStates + 1}, "Count"},
		{"count negative", certs.Options{Count: -1}, "Count"},
		{"negative port", certs.Options{BasePort: -1}, "BasePort -1"},
		{"port overflow", certs.Options{BasePort: 65534}, "BasePort 65534"},
		{"bad host", certs.Options{Host: "a b"}, "Host"},
		{"negative validity", certs.Options{Validity: -time.Hour}, "Validity"},
		{"validity beyond CA", certs.Options{Validity: certs.CAValidity + time.Hour}, "longer than the CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Now = fixedNow
			_, err := certs.Generate(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Generate error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestDirectoryPointsOfContact(t *testing.T) {
	f := generate(t, certs.Options{Count: 1})
	d, err := directory.New(f.Directory)
	if err != nil {
		t.Fatal(err)
	}
	k := func(ks ...pocnetv1.Kind) []pocnetv1.Kind { return ks }
	tests := []struct {
		role, org, position, hours, tz string
		allDay                         bool
		langs                          []string
		kinds                          []pocnetv1.Kind
	}{
		{"technical", "National CERT of XAA", "Duty officer", "", "", true, []string{"en", "fr"},
			k(pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, pocnetv1.Kind_KIND_REQUEST_FOR_ASSISTANCE, pocnetv1.Kind_KIND_NOTIFICATION, pocnetv1.Kind_KIND_COMMUNICATION_CHECK, pocnetv1.Kind_KIND_OTHER)},
		{"policy", "Ministry of Foreign Affairs of XAA", "Cyber policy desk", "Mon-Fri 08:00-18:00", "UTC", false, []string{"en"},
			k(pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION, pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS, pocnetv1.Kind_KIND_NOTIFICATION, pocnetv1.Kind_KIND_COMMUNICATION_CHECK)},
		{"diplomatic", "Permanent Mission of XAA", "", "Mon-Fri 09:00-17:00", "", false, []string{"en", "fr"},
			k(pocnetv1.Kind_KIND_NOTIFICATION, pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS, pocnetv1.Kind_KIND_COMMUNICATION_CHECK)},
	}
	m, _ := d.Member("XAA")
	if len(m.GetPointsOfContact()) != len(tests) {
		t.Fatalf("%d PoCs, want %d", len(m.GetPointsOfContact()), len(tests))
	}
	for _, tt := range tests {
		p, ok := d.PointOfContact("XAA", tt.role)
		if !ok {
			t.Fatalf("no %s PoC", tt.role)
		}
		if p.GetOrganisation() != tt.org || p.GetPosition() != tt.position || !slices.Equal(p.GetLanguages(), tt.langs) ||
			p.GetHours().GetAroundTheClock() != tt.allDay || p.GetHours().GetDescription() != tt.hours || p.GetHours().GetTimeZone() != tt.tz ||
			!slices.Equal(p.GetAcceptedKinds(), tt.kinds) {
			t.Errorf("%s PoC = %v", tt.role, p)
		}
	}
	// The demonstration relies on the technical PoC refusing consultations.
	p, _ := d.PointOfContact("XAA", "technical")
	if slices.Contains(p.GetAcceptedKinds(), pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS) {
		t.Error("technical PoC accepts requests for consultations")
	}
}

func TestCA(t *testing.T) {
	f := generate(t, certs.Options{Count: 2})
	for _, s := range f.States {
		c := s.CA.Cert
		if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 1 || c.MaxPathLenZero {
			t.Errorf("%s CA: IsCA %v MaxPathLen %d", s.Code, c.IsCA, c.MaxPathLen)
		}
		if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
			t.Errorf("%s CA: key usage %v", s.Code, c.KeyUsage)
		}
		if c.Subject.CommonName != s.Code+" pocnet root CA" || !slices.Equal(c.Subject.Organization, []string{s.Code}) {
			t.Errorf("%s CA: subject %v", s.Code, c.Subject)
		}
		if err := c.CheckSignatureFrom(c); err != nil {
			t.Errorf("%s CA is not self-signed: %v", s.Code, err)
		}
		if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s CA key is %T, want ECDSA P-256", s.Code, c.PublicKey)
		}
		if !c.NotBefore.Before(t0) || !c.NotAfter.Equal(t0.Add(certs.CAValidity).Truncate(time.Second)) {
			t.Errorf("%s CA valid %s..%s", s.Code, c.NotBefore, c.NotAfter)
		}
		if !slices.Equal(c.PermittedURIDomains, []string{"pocnet.example"}) {
			t.Errorf("%s CA permitted URI domains %v", s.Code, c.PermittedURIDomains)
		}
	}
	if _, err := certs.NewCA("pocnet.example", "XAA", t0, t0); err == nil {
		t.Error("NewCA accepted notAfter == notBefore")
	}
	if _, err := certs.NewCA("pocnet.example", "XAAA", t0, t0.Add(time.Hour)); err == nil {
		t.Error("NewCA accepted state XAAA")
	}
}

func TestIssuedCertificates(t *testing.T) {
	f := generate(t, certs.Options{Count: 3})
	d, err := directory.New(f.Directory)
	if err != nil {
		t.Fatal(err)
	}
	b := d.Bundle()
	serials := map[string]bool{}
	for _, s := range f.States {
		all := append([]*certs.Issued{s.Node}, s.Operators...)
		var roles []string
		for _, op := range s.Operators {
			roles = append(roles, op.ID.Role+"/"+op.ID.Name)
		}
		if !slices.Equal(roles, []string{"admin/duty", "technical/duty-officer", "policy/desk", "diplomatic/desk"}) {
			t.Errorf("%s operators = %v", s.Code, roles)
		}
		if s.Operator("policy") != s.Operators[2] || s.Operator("consular") != nil {
			t.Errorf("%s: Operator lookup", s.Code)
		}
		for _, iss := range all {
			c := iss.Cert
			if len(c.URIs) != 1 || c.URIs[0].String() != iss.ID.String() {
				t.Errorf("%s: URI SANs %v", iss.ID, c.URIs)
			}
			id, err := identity.FromCertificate(c)
			if err != nil || id != iss.ID {
				t.Errorf("%s: FromCertificate = %v, %v", iss.ID, id, err)
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature || c.IsCA {
				t.Errorf("%s: key usage %v, IsCA %v", iss.ID, c.KeyUsage, c.IsCA)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 || serials[c.SerialNumber.String()] {
				t.Errorf("%s: serial %v", iss.ID, c.SerialNumber)
			}
			serials[c.SerialNumber.String()] = true
			if !c.NotAfter.Equal(t0.Add(certs.DefaultValidity).Truncate(time.Second)) || !c.NotBefore.Before(t0) {
				t.Errorf("%s: valid %s..%s", iss.ID, c.NotBefore, c.NotAfter)
			}
			if iss.TLS.Leaf != c || len(iss.TLS.Certificate) != 1 || iss.TLS.PrivateKey != iss.Key {
				t.Errorf("%s: TLS certificate not built from the leaf and key", iss.ID)
			}
			// Verified against its own state's CA, for what it may do.
			got, _, err := b.VerifyChain([]*x509.Certificate{c}, x509.ExtKeyUsageClientAuth, t0)
			if err != nil || got != iss.ID {
				t.Errorf("%s: VerifyChain(ClientAuth) = %v, %v", iss.ID, got, err)
			}
			_, _, err = b.VerifyChain([]*x509.Certificate{c}, x509.ExtKeyUsageServerAuth, t0)
			switch iss.ID.Kind {
			case identity.KindNode:
				if err != nil {
					t.Errorf("%s: VerifyChain(ServerAuth): %v", iss.ID, err)
				}
				if !slices.Equal(c.DNSNames, []string{"localhost"}) || len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
					t.Errorf("%s: DNS %v IP %v", iss.ID, c.DNSNames, c.IPAddresses)
				}
			case identity.KindOperator:
				// An operator never serves.
				if !errors.Is(err, identity.ErrUntrusted) || !strings.Contains(err.Error(), "incompatible key usage") {
					t.Errorf("%s: VerifyChain(ServerAuth) = %v, want incompatible key usage", iss.ID, err)
				}
				if len(c.DNSNames) != 0 || len(c.IPAddresses) != 0 || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
					t.Errorf("%s: DNS %v IP %v EKU %v", iss.ID, c.DNSNames, c.IPAddresses, c.ExtKeyUsage)
				}
			}
			// Never against another state's CA.
			for _, other := range f.States {
				if other == s {
					continue
				}
				roots := x509.NewCertPool()
				roots.AddCert(other.CA.Cert)
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
					t.Errorf("%s verifies against the CA of %s", iss.ID, other.Code)
				}
			}
		}
	}
}

func TestCrossStateRefused(t *testing.T) {
	f := generate(t, certs.Options{Count: 2})
	d, err := directory.New(f.Directory)
	if err != nil {
		t.Fatal(err)
	}
	xaa := f.State("XAA")
	tests := []struct {
		name string
		id   identity.ID
	}{
		{"node of XBB", identity.Node("pocnet.example", "XBB")},
		{"operator of XBB", identity.Operator("pocnet.example", "XBB", "technical", "duty-officer")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forged, err := xaa.CA.Issue(tt.id, t0.Add(-time.Hour), t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = d.Bundle().VerifyChain([]*x509.Certificate{forged.Cert}, x509.ExtKeyUsageClientAuth, t0)
			if !errors.Is(err, identity.ErrUntrusted) || !strings.Contains(err.Error(), "does not verify against the CA of XBB") {
				t.Fatalf("VerifyChain = %v, want ErrUntrusted naming the CA of XBB", err)
			}
		})
	}
}

func TestNameConstraintKeepsCAInFederation(t *testing.T) {
	ca, err := certs.NewCA("pocnet.example", "XAA", t0.Add(-time.Hour), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	tests := []struct {
		fed string
		ok  bool
	}{
		{"pocnet.example", true},
		{"other.example", false},
	}
	for _, tt := range tests {
		iss, err := ca.Issue(identity.Node(tt.fed, "XAA"), t0.Add(-time.Hour), t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		_, err = iss.Cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		var cie x509.CertificateInvalidError
		if tt.ok && err != nil || !tt.ok && (!errors.As(err, &cie) || cie.Reason != x509.CANotAuthorizedForThisName) {
			t.Errorf("federation %s: Verify = %v, want ok=%v", tt.fed, err, tt.ok)
		}
	}
}

func TestIssueErrors(t *testing.T) {
	ca, err := certs.NewCA("pocnet.example", "XAA", t0.Add(-time.Hour), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		id     identity.ID
		nb, na time.Time
		want   string
	}{
		{"invalid id", identity.Operator("pocnet.example", "XAA", "Bad Role", "x"), t0, t0.Add(time.Hour), "role"},
		{"empty validity", identity.Node("pocnet.example", "XAA"), t0, t0, "not after"},
	}
	for _, tt := range tests {
		if _, err := ca.Issue(tt.id, tt.nb, tt.na); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Issue error = %v, want %q", tt.name, err, tt.want)
		}
	}
}
