package identity

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
)

// ServerConfig returns the TLS configuration of state self's node. It
// requires a client certificate and accepts only
//   - the node of any member state, verified against that state's CA, and
//   - operators of the node's own state, verified against its own CA.
//
// Everything else is refused during the handshake, before any RPC runs.
func ServerConfig(cert *tls.Certificate, src Source, self ID, now func() time.Time) *tls.Config {
	c := serverConfig(src, self, now)
	c.Certificates = []tls.Certificate{*cert}
	return c
}

// ServerConfigFunc is ServerConfig for a certificate that may change: cert
// is called at each handshake (e.g. CertFile.Certificate), so a reloaded
// certificate is presented from the next handshake on.
func ServerConfigFunc(cert func() *tls.Certificate, src Source, self ID, now func() time.Time) *tls.Config {
	c := serverConfig(src, self, now)
	c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert(), nil }
	return c
}

func serverConfig(src Source, self ID, now func() time.Time) *tls.Config {
	if now == nil {
		now = time.Now
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Verification is ours (VerifyConnection): the trust anchor depends on
		// the identity the client claims, which crypto/tls cannot express.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := VerifyClient(cs.PeerCertificates, src.Bundle(), self, now())
			return err
		},
	}
}

// VerifyClient is the check ServerConfig makes of a client's chain (leaf
// first): it verifies against b and must be acceptable to self's node. A
// server calls it again on an open connection when the directory changes.
func VerifyClient(certs []*x509.Certificate, b *Bundle, self ID, now time.Time) (ID, error) {
	id, _, err := b.VerifyChain(certs, x509.ExtKeyUsageClientAuth, now)
	if err != nil {
		return ID{}, err
	}
	if err := AcceptableClient(id, self); err != nil {
		return ID{}, err
	}
	return id, nil
}

// AcceptableClient reports whether a verified identity may connect to self's
// node: any member's node, or an operator of self's own state.
func AcceptableClient(id, self ID) error {
	switch id.Kind {
	case KindNode:
		return nil
	case KindOperator:
		if id.State != self.State {
			return fmt.Errorf("%w: %s is an operator of %s; this node serves operators of %s only", ErrUntrusted, id, id.State, self.State)
		}
		return nil
	default:
		return fmt.Errorf("%w: %s", ErrUntrusted, id)
	}
}

// ClientConfig returns a TLS configuration that presents cert and accepts
// only a server whose identity is exactly expect, verified against the CA of
// expect's state.
func ClientConfig(cert *tls.Certificate, src Source, expect ID, now func() time.Time) *tls.Config {
	c := clientConfig(src, expect, now)
	c.Certificates = []tls.Certificate{*cert}
	return c
}

// ClientConfigFunc is ClientConfig for a certificate that may change: cert
// is called at each handshake.
func ClientConfigFunc(cert func() *tls.Certificate, src Source, expect ID, now func() time.Time) *tls.Config {
	c := clientConfig(src, expect, now)
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert(), nil }
	return c
}

func clientConfig(src Source, expect ID, now func() time.Time) *tls.Config {
	if now == nil {
		now = time.Now
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Host names mean nothing here: the server is identified by its SPIFFE
		// ID, checked in VerifyConnection against its own state's CA. The
		// standard verification is skipped only because it cannot do that.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return VerifyServer(cs.PeerCertificates, src.Bundle(), expect, now())
		},
	}
}

// VerifyServer is the check ClientConfig makes of a server's chain (leaf
// first): it verifies against b and names exactly expect. A client calls it
// again on an open connection when the directory changes.
func VerifyServer(certs []*x509.Certificate, b *Bundle, expect ID, now time.Time) error {
	id, _, err := b.VerifyChain(certs, x509.ExtKeyUsageServerAuth, now)
	if err != nil {
		return err
	}
	if id != expect {
		return fmt.Errorf("%w: server is %s, expected %s", ErrUntrusted, id, expect)
	}
	return nil
}

// PeerID returns the identity of the verified peer of a completed handshake.
// It re-reads the leaf the handshake already verified; callers use it once
// per connection or call, never to make trust decisions on unverified input.
func PeerID(cs tls.ConnectionState) (ID, *x509.Certificate, error) {
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return ID{}, nil, fmt.Errorf("%w: no verified peer certificate", ErrUntrusted)
	}
	id, err := FromCertificate(cs.PeerCertificates[0])
	if err != nil {
		return ID{}, nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	return id, cs.PeerCertificates[0], nil
}
