package identity_test

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pocnet/pocnet/internal/identity"
)

func TestVerifyChain(t *testing.T) {
	xaa, xbb, rogue := newCA(t, "XAA CA"), newCA(t, "XBB CA"), newCA(t, "rogue CA")
	xaaInter := xaa.intermediate(t, "XAA issuing CA")
	b := identity.NewBundle(fed, map[string][]*x509.Certificate{"XAA": {xaa.cert}, "XBB": {xbb.cert}})

	node := xaa.leaf(t, []string{nodeURI("XAA")})
	tests := []struct {
		name  string
		certs []*x509.Certificate
		usage x509.ExtKeyUsage
		now   time.Time
		want  identity.ID
		err   string // substring; empty when the chain must verify
	}{
		{"node of XAA", parsed(t, node), x509.ExtKeyUsageServerAuth, t0, identity.Node(fed, "XAA"), ""},
		{"operator of XBB", parsed(t, xbb.leaf(t, []string{operatorURI("XBB", "policy", "desk")}, usages(x509.ExtKeyUsageClientAuth))),
			x509.ExtKeyUsageClientAuth, t0, identity.Operator(fed, "XBB", "policy", "desk"), ""},
		{"through an intermediate", parsed(t, chain(xaaInter.leaf(t, []string{nodeURI("XAA")}), xaaInter)),
			x509.ExtKeyUsageClientAuth, t0, identity.Node(fed, "XAA"), ""},

		{"no certificate", nil, x509.ExtKeyUsageClientAuth, t0, identity.ID{}, "no certificate presented"},
		{"intermediate missing", parsed(t, xaaInter.leaf(t, []string{nodeURI("XAA")})), x509.ExtKeyUsageClientAuth, t0, identity.ID{},
			"chain does not verify against the CA of XAA: x509: certificate signed by unknown authority"},
		{"unknown state", parsed(t, xaa.leaf(t, []string{nodeURI("XQQ")})), x509.ExtKeyUsageClientAuth, t0, identity.ID{},
			"state XQQ is not a member of the directory"},
		{"expired", parsed(t, node), x509.ExtKeyUsageClientAuth, t0.Add(25 * time.Hour), identity.ID{},
			"certificate has expired or is not yet valid"},
		{"expired by its own dates", parsed(t, xaa.leaf(t, []string{nodeURI("XAA")}, validity(t0.Add(-48*time.Hour), t0.Add(-time.Hour)))),
			x509.ExtKeyUsageClientAuth, t0, identity.ID{}, "certificate has expired or is not yet valid"},
		{"not yet valid", parsed(t, xaa.leaf(t, []string{nodeURI("XAA")}, validity(t0.Add(time.Hour), t0.Add(48*time.Hour)))),
			x509.ExtKeyUsageClientAuth, t0, identity.ID{}, "certificate has expired or is not yet valid"},
		{"wrong federation", parsed(t, xaa.leaf(t, []string{"spiffe://other.example/state/XAA/node"})), x509.ExtKeyUsageClientAuth, t0, identity.ID{},
			`belongs to federation "other.example", not "pocnet.example"`},
		{"XBB's CA naming XAA", parsed(t, xbb.leaf(t, []string{nodeURI("XAA")})), x509.ExtKeyUsageClientAuth, t0, identity.ID{},
			"chain does not verify against the CA of XAA"},
		{"XAA's intermediate naming XBB", parsed(t, chain(xaaInter.leaf(t, []string{nodeURI("XBB")}), xaaInter)), x509.ExtKeyUsageClientAuth, t0, identity.ID{},
			"chain does not verify against the CA of XBB"},
		{"unknown CA", parsed(t, rogue.leaf(t, []string{nodeURI("XAA")})), x509.ExtKeyUsageClientAuth, t0, identity.ID{},
			"chain does not verify against the CA of XAA: x509: certificate signed by unknown authority"},
		{"client-only certificate used to serve", parsed(t, xaa.leaf(t, []string{nodeURI("XAA")}, usages(x509.ExtKeyUsageClientAuth))),
			x509.ExtKeyUsageServerAuth, t0, identity.ID{}, "incompatible key usage"},
		{"two URI SANs", parsed(t, xaa.leaf(t, []string{nodeURI("XAA"), operatorURI("XAA", "admin", "x")})), x509.ExtKeyUsageClientAuth, t0, identity.ID{},
			"has 2 URI SANs"},
		{"no URI SAN", parsed(t, xaa.leaf(t, nil)), x509.ExtKeyUsageClientAuth, t0, identity.ID{}, "has 0 URI SANs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, leaf, err := b.VerifyChain(tt.certs, tt.usage, tt.now)
			if tt.err == "" {
				if err != nil || id != tt.want || leaf != tt.certs[0] {
					t.Fatalf("VerifyChain = %v, %v", id, err)
				}
				return
			}
			if !errors.Is(err, identity.ErrUntrusted) || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("VerifyChain = %v, want ErrUntrusted containing %q", err, tt.err)
			}
			if id != (identity.ID{}) || leaf != nil {
				t.Errorf("a refused chain returned %v, %v", id, leaf)
			}
		})
	}
}

func TestVerifyRaw(t *testing.T) {
	xaa := newCA(t, "XAA CA")
	b := identity.NewBundle(fed, map[string][]*x509.Certificate{"XAA": {xaa.cert}})
	good := xaa.leaf(t, []string{nodeURI("XAA")})
	if id, _, err := b.Verify(good.Certificate, x509.ExtKeyUsageClientAuth, t0); err != nil || id != identity.Node(fed, "XAA") {
		t.Errorf("Verify = %v, %v", id, err)
	}
	tests := []struct {
		name string
		raw  [][]byte
		err  string
	}{
		{"nothing", nil, "no certificate presented"},
		{"garbage leaf", [][]byte{[]byte("not DER")}, "certificate 0:"},
		{"garbage intermediate", [][]byte{good.Certificate[0], {0x30, 0x00}}, "certificate 1:"},
	}
	for _, tt := range tests {
		if _, _, err := b.Verify(tt.raw, x509.ExtKeyUsageClientAuth, t0); !errors.Is(err, identity.ErrUntrusted) || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: Verify = %v, want %q", tt.name, err, tt.err)
		}
	}
}

func TestBundleAccessors(t *testing.T) {
	xaa := newCA(t, "XAA CA")
	b := identity.NewBundle(fed, map[string][]*x509.Certificate{"XAA": {xaa.cert}})
	if b.Federation() != fed || !b.Has("XAA") || b.Has("XBB") {
		t.Errorf("Federation %q, Has(XAA) %v, Has(XBB) %v", b.Federation(), b.Has("XAA"), b.Has("XBB"))
	}
	if (identity.Static{B: b}).Bundle() != b {
		t.Error("Static.Bundle")
	}
	// Several CAs for one state (a CA rollover) are all trusted.
	next := newCA(t, "XAA CA 2")
	b2 := identity.NewBundle(fed, map[string][]*x509.Certificate{"XAA": {xaa.cert, next.cert}})
	for _, ca := range []*testCA{xaa, next} {
		if _, _, err := b2.VerifyChain(parsed(t, ca.leaf(t, []string{nodeURI("XAA")})), x509.ExtKeyUsageClientAuth, t0); err != nil {
			t.Errorf("%s: %v", ca.cert.Subject.CommonName, err)
		}
	}
}
