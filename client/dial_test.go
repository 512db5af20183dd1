package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/pocnet/pocnet/client/internal/testpki"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

const testFed = "pocnet.test"

// statusServer answers GetNodeStatus only, which is all Dial needs.
type statusServer struct {
	pocnetv1.UnimplementedContactServiceServer
	state string
}

func (s statusServer) GetNodeStatus(context.Context, *pocnetv1.GetNodeStatusRequest) (*pocnetv1.GetNodeStatusResponse, error) {
	return &pocnetv1.GetNodeStatusResponse{FederationId: testFed, State: s.state}, nil
}

// serve starts a gRPC server presenting serverCert that accepts operators of
// state verified against cas.
func serve(t *testing.T, serverCert tls.Certificate, self identity.ID, cas map[string][]*x509.Certificate) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := identity.NewBundle(testFed, cas)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(identity.ServerConfig(&serverCert, identity.Static{B: b}, self, nil))))
	pocnetv1.RegisterContactServiceServer(srv, statusServer{state: self.State})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestDial(t *testing.T) {
	xaa, xbb := testpki.NewCA(t, "XAA"), testpki.NewCA(t, "XBB")
	op := identity.Operator(testFed, "XAA", "technical", "alice")
	opCert := xaa.Issue(t, op, x509.ExtKeyUsageClientAuth)
	cas := map[string][]*x509.Certificate{"XAA": {xaa.Cert}, "XBB": {xbb.Cert}}

	good := serve(t, xaa.Issue(t, identity.Node(testFed, "XAA"), x509.ExtKeyUsageServerAuth), identity.Node(testFed, "XAA"), cas)
	// XBB's node: a valid node, but not the operator's own.
	otherNode := serve(t, xbb.Issue(t, identity.Node(testFed, "XBB"), x509.ExtKeyUsageServerAuth), identity.Node(testFed, "XBB"), cas)
	// XBB's CA issuing a certificate that claims to be XAA's node.
	forged := serve(t, xbb.Issue(t, identity.Node(testFed, "XAA"), x509.ExtKeyUsageServerAuth), identity.Node(testFed, "XAA"), cas)
	closed := func() string {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close()
		return addr
	}()

	tests := []struct {
		name     string
		addr     string
		cert     tls.Certificate
		wantCode codes.Code
		wantErr  []string
	}{
		{name: "own node", addr: good, cert: opCert},
		{name: "another state's node", addr: otherNode, cert: opCert, wantCode: codes.Unavailable,
			wantErr: []string{"cannot reach node spiffe://pocnet.test/state/XAA/node at " + otherNode, "server is spiffe://pocnet.test/state/XBB/node, expected spiffe://pocnet.test/state/XAA/node"}},
		{name: "forged by another state's CA", addr: forged, cert: opCert, wantCode: codes.Unavailable,
			wantErr: []string{"chain does not verify against the CA of XAA"}},
		{name: "nothing listening", addr: closed, cert: opCert, wantCode: codes.Unavailable,
			wantErr: []string{"cannot reach node", closed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cert := tt.cert
			c, err := Dial(ctx, Config{Address: tt.addr, Certificate: &cert, CAs: []*x509.Certificate{xaa.Cert}})
			if tt.wantCode == codes.OK {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.Close()
				if c.Identity() != op {
					t.Errorf("Identity = %v, want %v", c.Identity(), op)
				}
				st, err := c.Status(ctx)
				if err != nil || st.GetState() != "XAA" {
					t.Fatalf("Status = %v, %v", st, err)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded, want an error")
			}
			if status.Code(err) != tt.wantCode {
				t.Errorf("code %v, want %v (%v)", status.Code(err), tt.wantCode, err)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestDialFromFiles(t *testing.T) {
	xaa := testpki.NewCA(t, "XAA")
	op := identity.Operator(testFed, "XAA", "admin", "ops")
	opCert := xaa.Issue(t, op, x509.ExtKeyUsageClientAuth)
	addr := serve(t, xaa.Issue(t, identity.Node(testFed, "XAA"), x509.ExtKeyUsageServerAuth), identity.Node(testFed, "XAA"),
		map[string][]*x509.Certificate{"XAA": {xaa.Cert}})

	dir := t.TempDir()
	cfgPath := testpki.WriteConfig(t, dir, addr, opCert, xaa)
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	c.Close()
	if c.Identity() != op {
		t.Errorf("Identity = %v, want %v", c.Identity(), op)
	}

	// A missing CA file is named.
	cfg.CAFile = filepath.Join(dir, "missing.pem")
	if _, err := Dial(ctx, cfg); err == nil || !strings.Contains(err.Error(), "ca: ") || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("Dial with missing CA = %v, want an error naming ca and the file", err)
	}
	// A node certificate is not an operator certificate.
	nodeCert := xaa.Issue(t, identity.Node(testFed, "XAA"), x509.ExtKeyUsageClientAuth)
	if _, err := Dial(ctx, Config{Address: addr, Certificate: &nodeCert, CAs: []*x509.Certificate{xaa.Cert}}); err == nil || !strings.Contains(err.Error(), "is not an operator identity") {
		t.Errorf("Dial with a node certificate = %v, want 'is not an operator identity'", err)
	}
}
