package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
)

// A state may run its own PKI with whatever tools it trusts. These tests
// make a state's CA, an intermediate CA and a node certificate with the
// openssl command line, in the key algorithms and encodings such tools
// produce, and check that pocnet nodes built on package identity work with
// them exactly as with certificates made by this package.

// opensslConf holds the extensions of each certificate openssl makes.
const opensslConf = `[req]
distinguished_name = dn
prompt = no
[dn]
O = XAA
[root]
basicConstraints = critical,CA:TRUE,pathlen:1
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_xaa]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = URI:spiffe://pocnet.example/state/XAA/node
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_xbb]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = URI:spiffe://pocnet.example/state/XBB/node
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`

// Ways openssl writes a new private key.
var (
	rsa3072PKCS1 = []string{"genrsa", "-traditional", "3072"}
	rsa3072PKCS8 = []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"}
	p384SEC1     = []string{"ecparam", "-name", "secp384r1", "-genkey", "-noout"}
	p384PKCS8    = []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"}
	p256SEC1     = []string{"ecparam", "-name", "prime256v1", "-genkey", "-noout"}
	p256PKCS8    = []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}
)

type opensslPKI struct {
	root       *x509.Certificate
	rootPEM    string
	node       tls.Certificate // XAA node: leaf + intermediate
	forged     tls.Certificate // names XBB, signed by XAA's intermediate
	forgedLeaf *x509.Certificate
}

func requireOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("the openssl command is required by this test and was not found on PATH (%v): install it, e.g. `apt-get install -y openssl`", err)
	}
	return path
}

func openssl(t *testing.T, bin, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OPENSSL_CONF="+filepath.Join(dir, "openssl.cnf"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// makeOpenSSLPKI builds XAA's PKI with openssl: root (rootKey), intermediate
// (interKey), node leaf (leafKey) and a forged leaf naming XBB.
func makeOpenSSLPKI(t *testing.T, rootKey, interKey, leafKey []string, wantKeyBlock string) opensslPKI {
	t.Helper()
	bin := requireOpenSSL(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "openssl.cnf"), []byte(opensslConf), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) { t.Helper(); openssl(t, bin, dir, args...) }
	genkey := func(form []string, out string) {
		t.Helper()
		args := append([]string(nil), form...)
		// genrsa takes the size last; the others take -out anywhere.
		if form[0] == "genrsa" {
			args = append([]string{"genrsa", "-traditional", "-out", out}, form[2:]...)
		} else {
			args = append(args, "-out", out)
		}
		run(args...)
	}
	cnf := "openssl.cnf"
	genkey(rootKey, "root.key")
	run("req", "-config", cnf, "-x509", "-new", "-key", "root.key", "-sha256", "-days", "3650",
		"-subj", "/O=XAA/CN=XAA national root CA (openssl)", "-extensions", "root", "-out", "root.pem")
	genkey(interKey, "inter.key")
	run("req", "-config", cnf, "-new", "-key", "inter.key", "-subj", "/O=XAA/CN=XAA issuing CA (openssl)", "-out", "inter.csr")
	run("x509", "-req", "-in", "inter.csr", "-CA", "root.pem", "-CAkey", "root.key", "-set_serial", "0x1001",
		"-sha256", "-days", "1825", "-extfile", cnf, "-extensions", "inter", "-out", "inter.pem")
	genkey(leafKey, "leaf.key")
	for _, l := range []struct{ name, ext string }{{"leaf", "leaf_xaa"}, {"forged", "leaf_xbb"}} {
		run("req", "-config", cnf, "-new", "-key", "leaf.key", "-subj", "/O=XAA/CN=XAA node", "-out", l.name+".csr")
		run("x509", "-req", "-in", l.name+".csr", "-CA", "inter.pem", "-CAkey", "inter.key", "-set_serial", "0x2002",
			"-sha256", "-days", "90", "-extfile", cnf, "-extensions", l.ext, "-out", l.name+".pem")
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	keyPEM := read("leaf.key")
	if blk, _ := pem.Decode(keyPEM); blk == nil || blk.Type != wantKeyBlock {
		t.Fatalf("openssl wrote the leaf key as %v, want a %q block", blk, wantKeyBlock)
	}
	// The leaf files carry the chain up to, not including, the root, as a
	// state's PKI would hand them to its node.
	for _, name := range []string{"leaf", "forged"} {
		chain := append(read(name+".pem"), read("inter.pem")...)
		if err := os.WriteFile(filepath.Join(dir, name+"-chain.pem"), chain, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var pki opensslPKI
	var err error
	if pki.node, err = tls.LoadX509KeyPair(filepath.Join(dir, "leaf-chain.pem"), filepath.Join(dir, "leaf.key")); err != nil {
		t.Fatalf("LoadX509KeyPair(openssl node): %v", err)
	}
	if len(pki.node.Certificate) != 2 {
		t.Fatalf("openssl node chain has %d certificates, want leaf and intermediate", len(pki.node.Certificate))
	}
	if pki.forged, err = tls.LoadX509KeyPair(filepath.Join(dir, "forged-chain.pem"), filepath.Join(dir, "leaf.key")); err != nil {
		t.Fatalf("LoadX509KeyPair(openssl forged): %v", err)
	}
	pki.forgedLeaf = pki.forged.Leaf
	pki.rootPEM = string(read("root.pem"))
	blk, _ := pem.Decode([]byte(pki.rootPEM))
	if pki.root, err = x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatal(err)
	}
	return pki
}

// handshake runs one TLS handshake over 127.0.0.1 and returns each side's
// error. A client whose certificate the server refuses learns it only when
// it reads (TLS 1.3 finishes the client's handshake first), so the client
// reads one byte that the server writes after a successful handshake.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error, serverSaw, clientSaw tls.ConnectionState) {
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
		// A deadline only so that a broken handshake fails the test instead
		// of hanging it; nothing is asserted about time.
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
		clientSaw = tc.ConnectionState()
		_, clientErr = tc.Read(make([]byte, 1))
	}
	if clientErr != nil {
		// Let the server see the client's alert rather than a reset.
		c.Close()
	}
	r := <-done
	return r.err, clientErr, r.cs, clientSaw
}

func TestOpenSSLCompatibility(t *testing.T) {
	tests := []struct {
		name                     string
		rootKey, interKey, leaf  []string
		leafKeyBlock             string
		rootAlgorithm, leafAlgor x509.PublicKeyAlgorithm
	}{
		{"RSA 3072 root, PKCS#1 RSA leaf key", rsa3072PKCS1, p256PKCS8, rsa3072PKCS1, "RSA PRIVATE KEY", x509.RSA, x509.RSA},
		{"ECDSA P-384 root, SEC1 EC leaf key", p384SEC1, rsa3072PKCS8, p256SEC1, "EC PRIVATE KEY", x509.ECDSA, x509.ECDSA},
		{"ECDSA P-384 root, PKCS#8 EC leaf key", p384PKCS8, p256SEC1, p384PKCS8, "PRIVATE KEY", x509.ECDSA, x509.ECDSA},
		{"RSA 3072 root, PKCS#8 RSA leaf key", rsa3072PKCS8, p384SEC1, rsa3072PKCS8, "PRIVATE KEY", x509.RSA, x509.RSA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pki := makeOpenSSLPKI(t, tt.rootKey, tt.interKey, tt.leaf, tt.leafKeyBlock)
			if pki.root.PublicKeyAlgorithm != tt.rootAlgorithm || pki.node.Leaf.PublicKeyAlgorithm != tt.leafAlgor {
				t.Fatalf("root %v leaf %v", pki.root.PublicKeyAlgorithm, pki.node.Leaf.PublicKeyAlgorithm)
			}

			// XBB is made by pocfed; XAA's directory entry lists the
			// openssl-made root instead of a generated one.
			fed := generate(t, certs.Options{States: []string{"XAA", "XBB"}, Now: time.Now})
			fed.Directory.Members[0].CaCertificates = []string{pki.rootPEM}
			d, err := directory.New(fed.Directory)
			if err != nil {
				t.Fatalf("directory with the openssl root: %v", err)
			}
			src := directory.NewSource(d)
			now := time.Now // openssl dates its certificates from the clock
			xaa := identity.Node("pocnet.example", "XAA")
			xbb := fed.State("XBB").Node

			// The openssl-made XAA node connects to the pocfed-made XBB node.
			sErr, cErr, sCS, _ := handshake(t,
				identity.ServerConfig(&xbb.TLS, src, xbb.ID, now),
				identity.ClientConfig(&pki.node, src, xbb.ID, now))
			if sErr != nil || cErr != nil {
				t.Fatalf("openssl XAA -> pocfed XBB: server %v, client %v", sErr, cErr)
			}
			if sCS.Version != tls.VersionTLS13 {
				t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(sCS.Version))
			}
			if id, _, err := identity.PeerID(sCS); err != nil || id != xaa {
				t.Errorf("XBB saw %v, %v; want %v", id, err, xaa)
			}

			// And the other way round: the openssl-made node serves.
			sErr, cErr, _, cCS := handshake(t,
				identity.ServerConfig(&pki.node, src, xaa, now),
				identity.ClientConfig(&xbb.TLS, src, xaa, now))
			if sErr != nil || cErr != nil {
				t.Fatalf("pocfed XBB -> openssl XAA: server %v, client %v", sErr, cErr)
			}
			if id, _, err := identity.PeerID(cCS); err != nil || id != xaa {
				t.Errorf("XBB connected to %v, %v; want %v", id, err, xaa)
			}

			// A certificate naming XBB signed by XAA's PKI is refused: as a
			// chain, by a server, and by a client expecting XBB.
			_, _, err = d.Bundle().VerifyChain([]*x509.Certificate{pki.forgedLeaf}, x509.ExtKeyUsageClientAuth, time.Now())
			if !errors.Is(err, identity.ErrUntrusted) || !strings.Contains(err.Error(), "does not verify against the CA of XBB") {
				t.Errorf("VerifyChain(forged) = %v", err)
			}
			sErr, cErr, _, _ = handshake(t,
				identity.ServerConfig(&xbb.TLS, src, xbb.ID, now),
				identity.ClientConfig(&pki.forged, src, xbb.ID, now))
			if !errors.Is(sErr, identity.ErrUntrusted) || !strings.Contains(sErr.Error(), "does not verify against the CA of XBB") {
				t.Errorf("server accepting a forged XBB client: %v", sErr)
			}
			if cErr == nil || !strings.Contains(cErr.Error(), "bad certificate") {
				t.Errorf("forged client: %v, want the server's bad certificate alert", cErr)
			}
			sErr, cErr, _, _ = handshake(t,
				identity.ServerConfig(&pki.forged, src, xaa, now),
				identity.ClientConfig(&xbb.TLS, src, xbb.ID, now))
			if !errors.Is(cErr, identity.ErrUntrusted) || !strings.Contains(cErr.Error(), "does not verify against the CA of XBB") {
				t.Errorf("client accepting a forged XBB server: %v", cErr)
			}
			if sErr == nil || !strings.Contains(sErr.Error(), "bad certificate") {
				t.Errorf("forged server: %v, want the client's bad certificate alert", sErr)
			}
		})
	}
}
