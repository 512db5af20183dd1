package identity_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/pocnet/pocnet/internal/identity"
)

func TestParse(t *testing.T) {
	long := "spiffe://" + fed + "/state/XAA/operator/technical/" + strings.Repeat("a", 2048)
	tests := []struct {
		in   string
		want identity.ID
		err  string // substring of the error; empty for a valid identity
	}{
		{in: "spiffe://pocnet.example/state/XAA/node", want: identity.Node(fed, "XAA")},
		{in: "spiffe://pocnet.example/state/XZZ/operator/technical/duty-officer", want: identity.Operator(fed, "XZZ", "technical", "duty-officer")},
		{in: "spiffe://pocnet.example/state/FRA/operator/admin/A.b_c-9", want: identity.Operator(fed, "FRA", "admin", "A.b_c-9")},
		{in: "spiffe://a-b.c0/state/DEU/node", want: identity.Node("a-b.c0", "DEU")},

		{in: "https://pocnet.example/state/XAA/node", err: `scheme must be spiffe, got "https"`},
		{in: "pocnet.example/state/XAA/node", err: `scheme must be spiffe, got ""`},
		{in: "SPIFFE://pocnet.example/state/XAA/node", err: "not in canonical form"},
		{in: "spiffe://pocnet.example/state/XAA/node?x=1", err: "parts a SPIFFE ID may not have"},
		{in: "spiffe://pocnet.example/state/XAA/node#frag", err: "parts a SPIFFE ID may not have"},
		{in: "spiffe://pocnet.example:443/state/XAA/node", err: "parts a SPIFFE ID may not have"},
		{in: "spiffe://user@pocnet.example/state/XAA/node", err: "parts a SPIFFE ID may not have"},
		{in: "spiffe://user:pw@pocnet.example/state/XAA/node", err: "parts a SPIFFE ID may not have"},
		{in: "spiffe:opaque", err: "parts a SPIFFE ID may not have"},
		{in: "spiffe://pocnet.example/state/X%41A/node", err: "parts a SPIFFE ID may not have"},
		{in: "spiffe://pocnet.example/state/xaa/node", err: "state:"},
		{in: "spiffe://pocnet.example/state/XA/node", err: "state:"},
		{in: "spiffe://pocnet.example/state/XAAA/node", err: "state:"},
		{in: "spiffe://pocnet.example/state/X1A/node", err: "state:"},
		{in: "spiffe://pocnet.example/state/XAA/operator/Technical/x", err: "role:"},
		{in: "spiffe://pocnet.example/state/XAA/operator/1st/x", err: "role:"},
		{in: "spiffe://pocnet.example/state/XAA/operator/tech_nical/x", err: "role:"},
		{in: "spiffe://pocnet.example/state/XAA/operator/" + strings.Repeat("r", 33) + "/x", err: "role:"},
		{in: "spiffe://pocnet.example/state/XAA/operator/technical/-x", err: "name:"},
		{in: "spiffe://pocnet.example/state/XAA/operator/technical/" + strings.Repeat("n", 65), err: "name:"},
		{in: "spiffe://pocnet.example/state/XAA/operator/technical/", err: "name:"},
		{in: "spiffe://pocnet.example/state/XAA/node/", err: "is neither /state/<ISO3>/node"},
		{in: "spiffe://pocnet.example//state/XAA/node", err: "is neither /state/<ISO3>/node"},
		{in: "spiffe://pocnet.example/state//XAA/node", err: "is neither /state/<ISO3>/node"},
		{in: "spiffe://pocnet.example/state/XAA/./node", err: "is neither /state/<ISO3>/node"},
		{in: "spiffe://pocnet.example/state/XAA", err: "is neither /state/<ISO3>/node"},
		{in: "spiffe://pocnet.example/states/XAA/node", err: "is neither /state/<ISO3>/node"},
		{in: "spiffe://pocnet.example/state/XAA/operator/technical", err: "is neither /state/<ISO3>/node"},
		{in: "spiffe://pocnet.example/state/XAA/operator/technical/a/b", err: "is neither /state/<ISO3>/node"},
		{in: "spiffe://pocnet.example", err: "is neither /state/<ISO3>/node"},
		{in: "spiffe:///state/XAA/node", err: "federation:"},
		{in: "spiffe://Pocnet.Example/state/XAA/node", err: "federation:"},
		{in: "spiffe://pocnet.example./state/XAA/node", err: "federation:"},
		{in: "spiffe://-pocnet.example/state/XAA/node", err: "federation:"},
		{in: "spiffe://pocnet example/state/XAA/node", err: "invalid identity"},
		{in: "", err: `scheme must be spiffe, got ""`},
		{in: long, err: "longer than 2048 bytes"},
	}
	for _, tt := range tests {
		got, err := identity.Parse(tt.in)
		if tt.err == "" {
			if err != nil || got != tt.want {
				t.Errorf("Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if got.String() != tt.in || got.URL().String() != tt.in {
				t.Errorf("Parse(%q): String %q, URL %q", tt.in, got.String(), got.URL())
			}
			continue
		}
		if !errors.Is(err, identity.ErrInvalidID) || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("Parse(%q) = %v, %v; want ErrInvalidID containing %q", tt.in, got, err, tt.err)
		}
	}
}

func TestValidateAndKinds(t *testing.T) {
	tests := []struct {
		id   identity.ID
		err  string
		kind string
	}{
		{identity.Node(fed, "XAA"), "", "node"},
		{identity.Operator(fed, "XAA", "admin", "duty"), "", "operator"},
		{identity.ID{Federation: fed, State: "XAA", Kind: identity.KindNode, Role: "technical"}, "a node identity has no role or name", "node"},
		{identity.ID{Federation: fed, State: "XAA"}, "unknown kind", "kind(0)"},
	}
	for _, tt := range tests {
		err := tt.id.Validate()
		if tt.err == "" && err != nil || tt.err != "" && (!errors.Is(err, identity.ErrInvalidID) || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%#v.Validate() = %v, want %q", tt.id, err, tt.err)
		}
		if tt.id.Kind.String() != tt.kind {
			t.Errorf("Kind.String() = %q, want %q", tt.id.Kind.String(), tt.kind)
		}
	}
	if !identity.Operator(fed, "XAA", "admin", "duty").IsAdmin() || identity.Operator(fed, "XAA", "technical", "duty").IsAdmin() || identity.Node(fed, "XAA").IsAdmin() {
		t.Error("IsAdmin is wrong")
	}
}

func TestFromCertificate(t *testing.T) {
	ca := newCA(t, "XAA CA")
	tests := []struct {
		name string
		uris []string
		want identity.ID
		err  string
	}{
		{"one node SAN", []string{nodeURI("XAA")}, identity.Node(fed, "XAA"), ""},
		{"one operator SAN", []string{operatorURI("XAA", "policy", "desk")}, identity.Operator(fed, "XAA", "policy", "desk"), ""},
		{"no URI SAN", nil, identity.ID{}, "has 0 URI SANs, want exactly one"},
		{"two URI SANs", []string{nodeURI("XAA"), nodeURI("XBB")}, identity.ID{}, "has 2 URI SANs, want exactly one"},
		{"one bad URI SAN", []string{"spiffe://pocnet.example/state/XAA/node?x"}, identity.ID{}, "parts a SPIFFE ID may not have"},
	}
	for _, tt := range tests {
		c := ca.leaf(t, tt.uris).Leaf
		got, err := identity.FromCertificate(c)
		if tt.err == "" {
			if err != nil || got != tt.want {
				t.Errorf("%s: FromCertificate = %v, %v", tt.name, got, err)
			}
			continue
		}
		if !errors.Is(err, identity.ErrInvalidID) || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: FromCertificate = %v, want %q", tt.name, err, tt.err)
		}
	}
	// A URL that never went through Parse, such as one set by hand.
	c := &x509.Certificate{URIs: []*url.URL{{Scheme: "spiffe", Host: fed, Path: "/state/XAA/node/"}}}
	if _, err := identity.FromCertificate(c); !errors.Is(err, identity.ErrInvalidID) {
		t.Errorf("FromCertificate(trailing slash) = %v", err)
	}
}

func TestContext(t *testing.T) {
	if _, ok := identity.FromContext(context.Background()); ok {
		t.Error("identity in an empty context")
	}
	id := identity.Operator(fed, "XAA", "technical", "duty-officer")
	got, ok := identity.FromContext(identity.NewContext(context.Background(), id))
	if !ok || got != id {
		t.Errorf("FromContext = %v, %v", got, ok)
	}
}
