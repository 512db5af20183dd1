package identity_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pocnet/pocnet/internal/identity"
)

// handshake runs one TLS handshake over 127.0.0.1 and returns each side's
// error and view of the connection. A client whose certificate the server
// refuses learns it only when it reads (TLS 1.3 completes the client's side
// of the handshake first), so the client reads one byte that the server
// writes once its handshake has succeeded.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error, serverCS, clientCS tls.ConnectionState) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		err error
		cs  tls.ConnectionState
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		// The deadline only turns a hung handshake into a failure; no
		// assertion depends on time.
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		tc := tls.Server(c, server)
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		_, err = tc.Write([]byte{1})
		done <- result{err: err, cs: tc.ConnectionState()}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	tc := tls.Client(c, client)
	clientErr = tc.Handshake()
	if clientErr == nil {
		clientCS = tc.ConnectionState()
		_, clientErr = tc.Read(make([]byte, 1))
	}
	if clientErr != nil {
		c.Close()
	}
	r := <-done
	return r.err, clientErr, r.cs, clientCS
}

// swappable is an identity.Source whose bundle can change between
// handshakes, as when a node loads a new directory.
type swappable struct {
	b atomic.Pointer[identity.Bundle]
}

func (s *swappable) Bundle() *identity.Bundle { return s.b.Load() }

func TestHandshakes(t *testing.T) {
	xaa, xbb, rogue := newCA(t, "XAA CA"), newCA(t, "XBB CA"), newCA(t, "rogue CA")
	src := identity.Static{B: identity.NewBundle(fed, map[string][]*x509.Certificate{"XAA": {xaa.cert}, "XBB": {xbb.cert}})}

	xaaNodeID := identity.Node(fed, "XAA")
	xbbNodeID := identity.Node(fed, "XBB")
	xaaNode := xaa.leaf(t, []string{nodeURI("XAA")})
	xbbNode := xbb.leaf(t, []string{nodeURI("XBB")})
	clientOnly := usages(x509.ExtKeyUsageClientAuth)
	xaaOperator := xaa.leaf(t, []string{operatorURI("XAA", "technical", "duty-officer")}, clientOnly)
	xbbOperator := xbb.leaf(t, []string{operatorURI("XBB", "technical", "duty-officer")}, clientOnly)
	rogueXBB := rogue.leaf(t, []string{nodeURI("XBB")})
	expiredXBB := xbb.leaf(t, []string{nodeURI("XBB")}, validity(t0.Add(-48*time.Hour), t0.Add(-time.Hour)))
	xbbSaysXAAIsXBB := xaa.leaf(t, []string{nodeURI("XBB")}) // XAA's CA naming XBB

	// The server is XAA's node unless a case says otherwise.
	server := func(cert tls.Certificate) *tls.Config {
		return identity.ServerConfig(&cert, src, xaaNodeID, fixedNow)
	}
	client := func(cert tls.Certificate, expect identity.ID) *tls.Config {
		return identity.ClientConfig(&cert, src, expect, fixedNow)
	}
	noClientCert := client(xbbNode, xaaNodeID)
	noClientCert.Certificates = nil
	tls12 := client(xbbNode, xaaNodeID)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	const alertBadCert = "remote error: tls: bad certificate"
	tests := []struct {
		name           string
		server, client *tls.Config
		// serverUntrusted/clientUntrusted: that side verified and refused,
		// with errors.Is(err, ErrUntrusted) and this text.
		serverUntrusted, clientUntrusted string
		// serverErr/clientErr: text of an error that is not ours (the other
		// side's alert, or crypto/tls refusing before our verification).
		serverErr, clientErr string
		serverSees           identity.ID
	}{
		{name: "node of another state accepted", server: server(xaaNode), client: client(xbbNode, xaaNodeID), serverSees: xbbNodeID},
		{name: "node of own state accepted", server: server(xaaNode), client: client(xaaNode, xaaNodeID), serverSees: xaaNodeID},
		{name: "operator of own state accepted", server: server(xaaNode), client: client(xaaOperator, xaaNodeID),
			serverSees: identity.Operator(fed, "XAA", "technical", "duty-officer")},
		{name: "operator of another state refused", server: server(xaaNode), client: client(xbbOperator, xaaNodeID),
			serverUntrusted: "is an operator of XBB; this node serves operators of XAA only", clientErr: alertBadCert},
		{name: "no client certificate refused", server: server(xaaNode), client: noClientCert,
			serverErr: "client didn't provide a certificate", clientErr: "remote error: tls: certificate required"},
		{name: "unknown CA refused", server: server(xaaNode), client: client(rogueXBB, xaaNodeID),
			serverUntrusted: "chain does not verify against the CA of XBB: x509: certificate signed by unknown authority", clientErr: alertBadCert},
		{name: "expired client certificate refused", server: server(xaaNode), client: client(expiredXBB, xaaNodeID),
			serverUntrusted: "certificate has expired or is not yet valid", clientErr: alertBadCert},
		{name: "XAA's CA naming XBB refused by the server", server: server(xaaNode), client: client(xbbSaysXAAIsXBB, xaaNodeID),
			serverUntrusted: "chain does not verify against the CA of XBB", clientErr: alertBadCert},
		{name: "XAA's CA naming XBB refused by the client", server: server(xbbSaysXAAIsXBB), client: client(xbbNode, xbbNodeID),
			clientUntrusted: "chain does not verify against the CA of XBB", serverErr: alertBadCert},
		{name: "server that is not the expected one refused", server: server(xaaNode), client: client(xbbNode, xbbNodeID),
			clientUntrusted: "server is spiffe://pocnet.example/state/XAA/node, expected spiffe://pocnet.example/state/XBB/node", serverErr: alertBadCert},
		{name: "server with an expired certificate refused", server: server(expiredXBB), client: client(xaaNode, xbbNodeID),
			clientUntrusted: "certificate has expired or is not yet valid", serverErr: alertBadCert},
		{name: "operator certificate cannot serve", server: server(xaaOperator), client: client(xbbNode, identity.Operator(fed, "XAA", "technical", "duty-officer")),
			clientUntrusted: "incompatible key usage", serverErr: alertBadCert},
		{name: "TLS 1.2 client refused", server: server(xaaNode), client: tls12,
			serverErr: "client offered only unsupported versions", clientErr: "remote error: tls: protocol version not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sErr, cErr, sCS, cCS := handshake(t, tt.server, tt.client)
			check := func(side string, err error, untrusted, other string) {
				t.Helper()
				switch {
				case untrusted != "":
					if !errors.Is(err, identity.ErrUntrusted) || !strings.Contains(err.Error(), untrusted) {
						t.Errorf("%s: %v; want ErrUntrusted containing %q", side, err, untrusted)
					}
				case other != "":
					if err == nil || errors.Is(err, identity.ErrUntrusted) || !strings.Contains(err.Error(), other) {
						t.Errorf("%s: %v; want an error containing %q", side, err, other)
					}
				default:
					if err != nil {
						t.Errorf("%s: %v", side, err)
					}
				}
			}
			check("server", sErr, tt.serverUntrusted, tt.serverErr)
			check("client", cErr, tt.clientUntrusted, tt.clientErr)
			if tt.serverSees == (identity.ID{}) {
				return
			}
			if sCS.Version != tls.VersionTLS13 {
				t.Errorf("negotiated %s", tls.VersionName(sCS.Version))
			}
			if id, _, err := identity.PeerID(sCS); err != nil || id != tt.serverSees {
				t.Errorf("server's PeerID = %v, %v; want %v", id, err, tt.serverSees)
			}
			if id, _, err := identity.PeerID(cCS); err != nil || id != xaaNodeID {
				t.Errorf("client's PeerID = %v, %v", id, err)
			}
		})
	}
}

func TestServerFollowsSource(t *testing.T) {
	xaa, xbb := newCA(t, "XAA CA"), newCA(t, "XBB CA")
	src := &swappable{}
	src.b.Store(identity.NewBundle(fed, map[string][]*x509.Certificate{"XAA": {xaa.cert}, "XBB": {xbb.cert}}))
	xaaNode, xbbNode := xaa.leaf(t, []string{nodeURI("XAA")}), xbb.leaf(t, []string{nodeURI("XBB")})
	srv := identity.ServerConfig(&xaaNode, src, identity.Node(fed, "XAA"), fixedNow)
	cli := identity.ClientConfig(&xbbNode, src, identity.Node(fed, "XAA"), fixedNow)
	if sErr, cErr, _, _ := handshake(t, srv, cli); sErr != nil || cErr != nil {
		t.Fatalf("before: server %v, client %v", sErr, cErr)
	}
	// XBB leaves the directory: the same configurations now refuse it.
	src.b.Store(identity.NewBundle(fed, map[string][]*x509.Certificate{"XAA": {xaa.cert}}))
	sErr, _, _, _ := handshake(t, srv, cli)
	if !errors.Is(sErr, identity.ErrUntrusted) || !strings.Contains(sErr.Error(), "state XBB is not a member of the directory") {
		t.Fatalf("after: server %v", sErr)
	}
}

func TestPeerIDNeedsHandshake(t *testing.T) {
	if _, _, err := identity.PeerID(tls.ConnectionState{}); !errors.Is(err, identity.ErrUntrusted) {
		t.Errorf("PeerID of no handshake = %v", err)
	}
}

func TestAcceptableClient(t *testing.T) {
	self := identity.Node(fed, "XAA")
	tests := []struct {
		id identity.ID
		ok bool
	}{
		{identity.Node(fed, "XBB"), true},
		{identity.Operator(fed, "XAA", "admin", "duty"), true},
		{identity.Operator(fed, "XBB", "admin", "duty"), false},
		{identity.ID{Federation: fed, State: "XAA"}, false},
	}
	for _, tt := range tests {
		err := identity.AcceptableClient(tt.id, self)
		if tt.ok != (err == nil) || !tt.ok && !errors.Is(err, identity.ErrUntrusted) {
			t.Errorf("AcceptableClient(%v) = %v", tt.id, err)
		}
	}
}
