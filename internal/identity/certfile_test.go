package identity_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pocnet/pocnet/internal/identity"
)

// pairFiles holds a certificate and key path and the time each write sets
// as their modification time, so that a change never depends on the file
// system's clock resolution.
type pairFiles struct {
	cert, key string
	mtime     time.Time
}

func newPairFiles(t *testing.T) *pairFiles {
	d := t.TempDir()
	return &pairFiles{cert: filepath.Join(d, "node.crt"), key: filepath.Join(d, "node.key"), mtime: t0}
}

func certPEM(c tls.Certificate) []byte {
	var b bytes.Buffer
	for _, der := range c.Certificate {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return b.Bytes()
}

func keyPEM(t *testing.T, c tls.Certificate) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// write writes certData and keyData (nil leaves a file alone), each with a
// new modification time.
func (p *pairFiles) write(t *testing.T, certData, keyData []byte) {
	t.Helper()
	for _, f := range []struct {
		path string
		data []byte
	}{{p.cert, certData}, {p.key, keyData}} {
		if f.data == nil {
			continue
		}
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		p.mtime = p.mtime.Add(time.Second)
		if err := os.Chtimes(f.path, p.mtime, p.mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func (p *pairFiles) writePair(t *testing.T, c tls.Certificate) {
	t.Helper()
	p.write(t, certPEM(c), keyPEM(t, c))
}

// namesXAA is the check a node of XAA makes of its own certificate.
func namesXAA(b *identity.Bundle) func(*tls.Certificate) error {
	return func(c *tls.Certificate) error {
		id, _, err := b.Verify(c.Certificate, x509.ExtKeyUsageServerAuth, t0)
		if err != nil {
			return err
		}
		if id != identity.Node(fed, "XAA") {
			return errors.New("certificate names " + id.String())
		}
		return nil
	}
}

func TestCertFileReload(t *testing.T) {
	xaa, xbb := newCA(t, "XAA CA"), newCA(t, "XBB CA")
	b := identity.NewBundle(fed, map[string][]*x509.Certificate{"XAA": {xaa.cert}, "XBB": {xbb.cert}})
	first, second := xaa.leaf(t, []string{nodeURI("XAA")}), xaa.leaf(t, []string{nodeURI("XAA")})
	p := newPairFiles(t)
	p.writePair(t, first)
	cf, err := identity.LoadCertFile(p.cert, p.key, identity.CertFileOptions{Check: namesXAA(b)})
	if err != nil {
		t.Fatal(err)
	}
	leafIs := func(t *testing.T, want tls.Certificate) {
		t.Helper()
		if got := cf.Certificate(); !bytes.Equal(got.Certificate[0], want.Certificate[0]) || cf.Leaf() == nil || !bytes.Equal(cf.Leaf().Raw, want.Certificate[0]) {
			t.Fatalf("the pair in use is not the expected one")
		}
	}
	leafIs(t, first)

	// Every refused pair leaves the pair in use.
	namesXBB := xaa.leaf(t, []string{nodeURI("XBB")})
	xbbNode := xbb.leaf(t, []string{nodeURI("XBB")})
	rogue := newCA(t, "rogue").leaf(t, []string{nodeURI("XAA")})
	refusals := []struct {
		name       string
		cert, key  []byte
		wantErrSub string
	}{
		{"key of another certificate", certPEM(second), keyPEM(t, first), "private key does not match public key"},
		{"half-written certificate", certPEM(second)[:100], keyPEM(t, second), "failed to find any PEM data in certificate input"},
		{"no key", certPEM(second), []byte{}, "failed to find any PEM data in key input"},
		{"names another node", certPEM(namesXBB), keyPEM(t, namesXBB), "chain does not verify against the CA of XBB"},
		{"another state's node", certPEM(xbbNode), keyPEM(t, xbbNode), "certificate names " + nodeURI("XBB")},
		{"unknown CA", certPEM(rogue), keyPEM(t, rogue), "chain does not verify against the CA of XAA"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			p.write(t, r.cert, r.key)
			err := cf.Reload()
			if err == nil || !strings.Contains(err.Error(), r.wantErrSub) || !strings.Contains(err.Error(), "tls: ") {
				t.Fatalf("Reload = %v, want an error containing %q", err, r.wantErrSub)
			}
			leafIs(t, first)
		})
	}

	// A good pair is taken, and served from the next handshake on.
	p.writePair(t, second)
	if err := cf.Reload(); err != nil {
		t.Fatal(err)
	}
	leafIs(t, second)
	srv := identity.ServerConfigFunc(cf.Certificate, identity.Static{B: b}, identity.Node(fed, "XAA"), fixedNow)
	cli := identity.ClientConfig(ptr(xbb.leaf(t, []string{nodeURI("XBB")})), identity.Static{B: b}, identity.Node(fed, "XAA"), fixedNow)
	sErr, cErr, _, cCS := handshake(t, srv, cli)
	if sErr != nil || cErr != nil || !bytes.Equal(cCS.PeerCertificates[0].Raw, second.Certificate[0]) {
		t.Fatalf("handshake after reload: server %v, client %v", sErr, cErr)
	}
	// The same as a client.
	xbbSrv := identity.ServerConfig(ptr(xbb.leaf(t, []string{nodeURI("XBB")})), identity.Static{B: b}, identity.Node(fed, "XBB"), fixedNow)
	xaaCli := identity.ClientConfigFunc(cf.Certificate, identity.Static{B: b}, identity.Node(fed, "XBB"), fixedNow)
	sErr, cErr, sCS, _ := handshake(t, xbbSrv, xaaCli)
	if sErr != nil || cErr != nil || !bytes.Equal(sCS.PeerCertificates[0].Raw, second.Certificate[0]) {
		t.Fatalf("handshake as a client after reload: server %v, client %v", sErr, cErr)
	}
	// Reloading unchanged files changes nothing.
	if err := cf.Reload(); err != nil {
		t.Fatal(err)
	}
	leafIs(t, second)
}

func ptr[T any](v T) *T { return &v }

func TestLoadCertFileRefuses(t *testing.T) {
	xaa := newCA(t, "XAA CA")
	b := identity.NewBundle(fed, map[string][]*x509.Certificate{"XAA": {xaa.cert}})
	node, other := xaa.leaf(t, []string{nodeURI("XAA")}), xaa.leaf(t, []string{nodeURI("XAA")})
	operator := xaa.leaf(t, []string{operatorURI("XAA", "admin", "duty")})
	tests := []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"missing files", nil, nil, "no such file"},
		{"mismatched pair", certPEM(node), keyPEM(t, other), "private key does not match public key"},
		{"refused by the check", certPEM(operator), keyPEM(t, operator), "certificate names " + operatorURI("XAA", "admin", "duty")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPairFiles(t)
			if tt.cert != nil {
				p.write(t, tt.cert, tt.key)
			}
			if _, err := identity.LoadCertFile(p.cert, p.key, identity.CertFileOptions{Check: namesXAA(b)}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadCertFile = %v, want %q", err, tt.want)
			}
		})
	}
}

// fakeClock is a clock tests advance by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestCertFileFollowsFiles(t *testing.T) {
	xaa := newCA(t, "XAA CA")
	b := identity.NewBundle(fed, map[string][]*x509.Certificate{"XAA": {xaa.cert}})
	first, second, third := xaa.leaf(t, []string{nodeURI("XAA")}), xaa.leaf(t, []string{nodeURI("XAA")}), xaa.leaf(t, []string{nodeURI("XAA")})
	p := newPairFiles(t)
	p.writePair(t, first)
	clock := &fakeClock{now: t0}
	var changes []error
	cf, err := identity.LoadCertFile(p.cert, p.key, identity.CertFileOptions{
		Check: namesXAA(b), CheckEvery: 5 * time.Second, Now: clock.Now,
		OnChange: func(err error) { changes = append(changes, err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	inUse := func() []byte { return cf.Certificate().Certificate[0] }

	p.writePair(t, second)
	if !bytes.Equal(inUse(), first.Certificate[0]) {
		t.Fatal("the files were looked at before CheckEvery passed")
	}
	clock.Advance(5 * time.Second)
	if !bytes.Equal(inUse(), second.Certificate[0]) || len(changes) != 1 || changes[0] != nil {
		t.Fatalf("after CheckEvery: changes %v", changes)
	}

	// A new certificate whose key is not written yet is refused and
	// reported once; the key written next is picked up at the next check.
	p.write(t, certPEM(third), nil)
	clock.Advance(5 * time.Second)
	if !bytes.Equal(inUse(), second.Certificate[0]) || len(changes) != 2 || changes[1] == nil || !strings.Contains(changes[1].Error(), "private key does not match") {
		t.Fatalf("half-written pair: changes %v", changes)
	}
	clock.Advance(5 * time.Second)
	if inUse(); len(changes) != 2 {
		t.Fatalf("unchanged files reported again: %v", changes)
	}
	p.write(t, nil, keyPEM(t, third))
	clock.Advance(5 * time.Second)
	if !bytes.Equal(inUse(), third.Certificate[0]) || len(changes) != 3 || changes[2] != nil {
		t.Fatalf("completed pair: changes %v", changes)
	}
}
