package node

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
)

// certCheckEvery is how often a handshake looks at tls.cert and tls.key
// for a new pair; a stat of two files, so a change is in force within
// seconds without a signal.
const certCheckEvery = 5 * time.Second

// loadCertificate loads the node's certificate files. A pair is refused,
// at start and at every reload, unless it names self and chains to self's
// CA in the directory in force, for both serving and connecting: peers
// would refuse anything else, and a node presenting it would cut itself
// off. A refused reload keeps the pair in use.
func loadCertificate(certPath, keyPath string, dir *directory.Source, self identity.ID, now func() time.Time, onChange func(error)) (*identity.CertFile, error) {
	check := func(c *tls.Certificate) error {
		b := dir.Bundle()
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			id, _, err := b.Verify(c.Certificate, usage, now())
			if err != nil {
				return err
			}
			if id != self {
				return fmt.Errorf("certificate names %s, but this node is %s", id, self)
			}
		}
		return nil
	}
	return identity.LoadCertFile(certPath, keyPath, identity.CertFileOptions{
		Check: check, CheckEvery: certCheckEvery, OnChange: onChange, Now: now,
	})
}

// ReloadCertificates reads tls.cert and tls.key again and presents the new
// certificate from the next handshake on, to operators and peers alike,
// without a restart; pocnode calls it on SIGHUP (the node also notices new
// files by itself within seconds). Connections already open keep the
// certificate they were made with. A pair that does not load, whose key
// does not match, or that does not name this node and chain to its
// state's CA in the directory in force, is refused, and the certificate in
// use stays.
func (n *Node) ReloadCertificates() error {
	before := n.certs.Leaf()
	err := n.certs.Reload()
	if err != nil || n.certs.Leaf() != before {
		n.certificateChanged(err)
	}
	return err
}

// certificateChanged logs, and records in the audit log, the outcome of
// loading new certificate files.
func (n *Node) certificateChanged(err error) {
	if err != nil {
		n.log.Warn("new certificate files refused; the certificate in use stays", zap.Error(err))
		return
	}
	leaf := n.certs.Leaf()
	n.log.Info("certificate reloaded", zap.String("sha256", fmt.Sprintf("%x", sha256.Sum256(leaf.Raw))), zap.Time("not_after", leaf.NotAfter))
	n.recordAdmin(fmt.Sprintf("certificate reloaded: sha256:%x, valid until %s", sha256.Sum256(leaf.Raw), leaf.NotAfter.UTC().Format(time.RFC3339)))
}
