package identity_test

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pocnet/pocnet/internal/identity"
)

func revocation(c *x509.Certificate, reason string) identity.Revocation {
	return identity.Revocation{SHA256: sha256.Sum256(c.Raw), At: t0.Add(-time.Minute), Reason: reason}
}

func TestVerifyRefusesRevoked(t *testing.T) {
	xaa, xbb := newCA(t, "XAA CA"), newCA(t, "XBB CA")
	xaaInter := xaa.intermediate(t, "XAA issuing CA")
	xaaNext := newCA(t, "XAA CA 2") // listed, then revoked while still listed
	node := xaa.leaf(t, []string{nodeURI("XAA")})
	other := xaa.leaf(t, []string{nodeURI("XAA")})
	viaInter := chain(xaaInter.leaf(t, []string{nodeURI("XAA")}), xaaInter)
	viaNext := xaaNext.leaf(t, []string{nodeURI("XAA")})
	xbbNode := xbb.leaf(t, []string{nodeURI("XBB")})
	cas := map[string][]*x509.Certificate{"XAA": {xaa.cert, xaaNext.cert}, "XBB": {xbb.cert}}
	b := identity.NewBundle(fed, cas,
		identity.WithRevoked("XAA", revocation(node.Leaf, "key compromise"), revocation(xaaInter.cert, "issuing CA retired"), revocation(xaaNext.cert, "")),
		// XBB listing XAA's certificate changes nothing: only XAA can
		// withdraw XAA's certificates.
		identity.WithRevoked("XBB", revocation(other.Leaf, "XBB says so")),
		identity.WithRevoked("XCC"),
	)
	at := t0.Add(-time.Minute).UTC().Format(time.RFC3339)
	tests := []struct {
		name    string
		certs   []*x509.Certificate
		subject string // of the revoked certificate; empty when the chain must verify
		reason  string
	}{
		{"revoked leaf", parsed(t, node), "CN=leaf", "key compromise"},
		{"revoked intermediate", parsed(t, viaInter), "CN=XAA issuing CA", "issuing CA retired"},
		{"revoked root still listed", parsed(t, viaNext), "CN=XAA CA 2", "no reason given"},
		{"another leaf of the same CA", parsed(t, other), "", ""},
		{"another state", parsed(t, xbbNode), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // the second time from the bundle's cache, if it held
				id, leaf, err := b.VerifyChain(tt.certs, x509.ExtKeyUsageClientAuth, t0)
				if tt.subject == "" {
					if err != nil || leaf != tt.certs[0] {
						t.Fatalf("VerifyChain = %v, %v", id, err)
					}
					continue
				}
				var re *identity.RevokedError
				if !errors.As(err, &re) || !errors.Is(err, identity.ErrUntrusted) {
					t.Fatalf("VerifyChain = %v, want a RevokedError", err)
				}
				want := "untrusted peer: " + nodeURI("XAA") + `: certificate "` + tt.subject + `" (sha256:`
				if msg := err.Error(); !strings.HasPrefix(msg, want) || !strings.HasSuffix(msg, ") was revoked by XAA at "+at+": "+tt.reason) {
					t.Fatalf("error %q\nwant %s...) was revoked by XAA at %s: %s", msg, want, at, tt.reason)
				}
				if id != (identity.ID{}) || leaf != nil {
					t.Errorf("a refused chain returned %v, %v", id, leaf)
				}
				// Verify (raw DER) refuses it the same way.
				raw := make([][]byte, len(tt.certs))
				for i, c := range tt.certs {
					raw[i] = c.Raw
				}
				if _, _, err := b.Verify(raw, x509.ExtKeyUsageServerAuth, t0); !errors.As(err, &re) {
					t.Errorf("Verify = %v", err)
				}
			}
		})
	}
}

// TestRevocationIsPerBundle: a chain verified (and cached) by one bundle is
// refused by the next one that revokes it, and trusted again by one that
// does not.
func TestRevocationIsPerBundle(t *testing.T) {
	xaa := newCA(t, "XAA CA")
	node := parsed(t, xaa.leaf(t, []string{nodeURI("XAA")}))
	cas := map[string][]*x509.Certificate{"XAA": {xaa.cert}}
	before := identity.NewBundle(fed, cas)
	if _, _, err := before.VerifyChain(node, x509.ExtKeyUsageClientAuth, t0); err != nil {
		t.Fatal(err)
	}
	after := identity.NewBundle(fed, cas, identity.WithRevoked("XAA", revocation(node[0], "key compromise")))
	if _, _, err := after.VerifyChain(node, x509.ExtKeyUsageClientAuth, t0); !errors.Is(err, identity.ErrUntrusted) {
		t.Fatalf("after revocation: %v", err)
	}
	if _, _, err := before.VerifyChain(node, x509.ExtKeyUsageClientAuth, t0); err != nil {
		t.Errorf("the older bundle changed: %v", err)
	}
}

func TestRevokedLeafRefusedAtHandshake(t *testing.T) {
	xaa, xbb := newCA(t, "XAA CA"), newCA(t, "XBB CA")
	xaaNode, xbbNode := xaa.leaf(t, []string{nodeURI("XAA")}), xbb.leaf(t, []string{nodeURI("XBB")})
	cas := map[string][]*x509.Certificate{"XAA": {xaa.cert}, "XBB": {xbb.cert}}
	src := &swappable{}
	src.b.Store(identity.NewBundle(fed, cas))
	srv := identity.ServerConfig(&xaaNode, src, identity.Node(fed, "XAA"), fixedNow)
	cli := identity.ClientConfig(&xbbNode, src, identity.Node(fed, "XAA"), fixedNow)
	if sErr, cErr, _, _ := handshake(t, srv, cli); sErr != nil || cErr != nil {
		t.Fatalf("before: server %v, client %v", sErr, cErr)
	}

	// XBB revokes its node's certificate: XAA's node refuses it.
	src.b.Store(identity.NewBundle(fed, cas, identity.WithRevoked("XBB", revocation(xbbNode.Leaf, "key compromise"))))
	sErr, cErr, _, _ := handshake(t, srv, cli)
	var re *identity.RevokedError
	if !errors.As(sErr, &re) || re.ID != identity.Node(fed, "XBB") || !strings.Contains(sErr.Error(), "was revoked by XBB") {
		t.Errorf("server: %v", sErr)
	}
	if cErr == nil || !strings.Contains(cErr.Error(), "bad certificate") {
		t.Errorf("client: %v", cErr)
	}

	// XAA revokes its node's certificate: XBB's node refuses to talk to it.
	src.b.Store(identity.NewBundle(fed, cas, identity.WithRevoked("XAA", revocation(xaaNode.Leaf, "superseded"))))
	_, cErr, _, _ = handshake(t, srv, cli)
	if !errors.As(cErr, &re) || re.ID != identity.Node(fed, "XAA") || !strings.Contains(cErr.Error(), "was revoked by XAA") || !strings.HasSuffix(cErr.Error(), ": superseded") {
		t.Errorf("client: %v", cErr)
	}
}
