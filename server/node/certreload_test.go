package node_test

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/config"
	"github.com/pocnet/pocnet/server/node"
)

// TestReloadCertificates: the node presents a reloaded certificate from the
// next handshake on, keeps open connections as they are, and refuses (and
// keeps its certificate on) a pair that does not match or does not name it.
func TestReloadCertificates(t *testing.T) {
	gen, err := certs.Generate(certs.Options{States: []string{"XAA", "XBB"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := gen.Write(dir); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "XAA", "node", "pocnode.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ShutdownTimeout = 5 * time.Second
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(node.Options{Config: cfg, Logger: zaptest.NewLogger(t), Listener: lis})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()

	xaa := gen.State("XAA")
	bundle := identity.NewBundle(gen.ID, map[string][]*x509.Certificate{"XAA": {xaa.CA.Cert}})
	dial := func() *grpc.ClientConn {
		t.Helper()
		tlsCfg := identity.ClientConfig(&xaa.Operator("admin").TLS, identity.Static{B: bundle}, identity.Node(gen.ID, "XAA"), nil)
		cc, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	// served returns the certificate the node presented on cc.
	served := func(cc *grpc.ClientConn) *x509.Certificate {
		t.Helper()
		var p peer.Peer
		if _, err := pocnetv1.NewContactServiceClient(cc).GetNodeStatus(ctx(t), &pocnetv1.GetNodeStatusRequest{}, grpc.Peer(&p)); err != nil {
			t.Fatal(err)
		}
		return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0]
	}
	write := func(iss, keyOf *certs.Issued) {
		t.Helper()
		if err := os.WriteFile(cfg.TLS.Cert, iss.CertPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg.TLS.Key, keyOf.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	issue := func(ca *certs.CA, id identity.ID) *certs.Issued {
		t.Helper()
		iss, err := ca.Issue(id, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}

	before := dial()
	if !served(before).Equal(xaa.Node.Cert) {
		t.Fatal("the node does not present its certificate")
	}
	second := issue(xaa.CA, identity.Node(gen.ID, "XAA"))
	write(second, second)
	if err := n.ReloadCertificates(); err != nil {
		t.Fatal(err)
	}
	if !served(dial()).Equal(second.Cert) {
		t.Error("a new connection was not served the reloaded certificate")
	}
	if !served(before).Equal(xaa.Node.Cert) {
		t.Error("an open connection changed certificate")
	}

	third := issue(xaa.CA, identity.Node(gen.ID, "XAA"))
	refused := []struct {
		name      string
		cert, key *certs.Issued
		want      string
	}{
		{"key of another certificate", third, second, "private key does not match public key"},
		{"names another node", issue(xaa.CA, identity.Node(gen.ID, "XBB")), nil, "chain does not verify against the CA of XBB"},
		{"another state's node", gen.State("XBB").Node, nil, "certificate names spiffe://pocnet.example/state/XBB/node, but this node is spiffe://pocnet.example/state/XAA/node"},
		{"an operator's certificate", xaa.Operator("admin"), nil, "incompatible key usage"},
	}
	for _, r := range refused {
		t.Run(r.name, func(t *testing.T) {
			key := r.key
			if key == nil {
				key = r.cert
			}
			write(r.cert, key)
			err := n.ReloadCertificates()
			if err == nil || !strings.Contains(err.Error(), r.want) {
				t.Fatalf("ReloadCertificates = %v, want %q", err, r.want)
			}
			if !served(dial()).Equal(second.Cert) {
				t.Error("a refused pair replaced the certificate in use")
			}
		})
	}

	// The reload is in the audit log, once.
	entries, err := export(t, pocnetv1.NewAuditServiceClient(before), &pocnetv1.ExportAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("certificate reloaded: sha256:%x", sha256.Sum256(second.Cert.Raw))
	var found int
	for _, r := range decode(t, entries) {
		if strings.HasPrefix(r.GetDetail(), "certificate reloaded") {
			found++
			if !strings.HasPrefix(r.GetDetail(), want) {
				t.Errorf("audit record %q, want %q...", r.GetDetail(), want)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d certificate reloads recorded, want 1", found)
	}
}
