package identity

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CertFileOptions says how a CertFile checks and follows its files.
type CertFileOptions struct {
	// Check, if set, must accept a certificate before it is presented: Load
	// fails, and Reload keeps the pair in use, when it returns an error. A
	// node checks that the certificate names it and chains to its state's
	// CA in the directory in force, since peers would refuse anything else.
	Check func(*tls.Certificate) error
	// CheckEvery, if positive, makes Certificate look at the files at most
	// this often and reload them when they changed. Zero leaves reloading
	// to explicit calls of Reload (e.g. on SIGHUP).
	CheckEvery time.Duration
	// OnChange, if set, is called after Certificate saw the files change and
	// reloaded them: err is nil if the new pair is in use, or says why the
	// old one was kept. It runs on the handshake that noticed the change.
	OnChange func(err error)
	// Now is the clock of CheckEvery; default time.Now.
	Now func() time.Time
}

// CertFile is a node's own certificate and private key, loaded from PEM
// files and reloaded without a restart. The pair in use only ever changes to
// a pair that loaded, matched and passed Check: a half-written, mismatched
// or refused pair leaves the previous one in use.
type CertFile struct {
	certPath, keyPath string
	opts              CertFileOptions
	cur               atomic.Pointer[tls.Certificate]
	nextCheck         atomic.Int64 // unix nanoseconds; CheckEvery only

	mu   sync.Mutex // serialises loading
	seen stamp      // of the files at the last attempt to load them
}

// stamp identifies the state of the two files cheaply, without reading
// them: a file replaced (renamed over) or rewritten changes it.
type stamp struct {
	cert, key os.FileInfo
}

func (s stamp) same(o stamp) bool {
	same := func(a, b os.FileInfo) bool {
		return a != nil && b != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
	}
	return same(s.cert, o.cert) && same(s.key, o.key)
}

func stampOf(certPath, keyPath string) (stamp, error) {
	c, err := os.Stat(certPath)
	if err != nil {
		return stamp{}, err
	}
	k, err := os.Stat(keyPath)
	if err != nil {
		return stamp{}, err
	}
	return stamp{cert: c, key: k}, nil
}

// LoadCertFile loads the certificate chain (leaf first) in certPath and its
// private key in keyPath.
func LoadCertFile(certPath, keyPath string, opts CertFileOptions) (*CertFile, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := &CertFile{certPath: certPath, keyPath: keyPath, opts: opts}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.load(); err != nil {
		return nil, err
	}
	f.nextCheck.Store(opts.Now().Add(opts.CheckEvery).UnixNano())
	return f, nil
}

// load reads both files and puts the pair in force if it loads, matches and
// passes Check. It reports whether the pair in force changed. f.mu is held.
func (f *CertFile) load() (bool, error) {
	// The stamp is taken before reading, so that a write racing with the
	// read is seen as a change at the next check.
	st, err := stampOf(f.certPath, f.keyPath)
	if err != nil {
		return false, fmt.Errorf("tls: %w", err)
	}
	f.seen = st
	// LoadX509KeyPair refuses a key that does not match the certificate.
	pair, err := tls.LoadX509KeyPair(f.certPath, f.keyPath)
	if err != nil {
		return false, fmt.Errorf("tls: %s, %s: %w", f.certPath, f.keyPath, err)
	}
	if pair.Leaf == nil {
		// Set by LoadX509KeyPair unless GODEBUG x509keypairleaf=0.
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return false, fmt.Errorf("tls: %s: %w", f.certPath, err)
		}
	}
	if old := f.cur.Load(); old != nil && sameChain(old.Certificate, pair.Certificate) {
		return false, nil
	}
	if f.opts.Check != nil {
		if err := f.opts.Check(&pair); err != nil {
			return false, fmt.Errorf("tls: %s: %w", f.certPath, err)
		}
	}
	f.cur.Store(&pair)
	return true, nil
}

func sameChain(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// Certificate returns the pair in use. With CheckEvery it first looks at the
// files if the last look is older than that, and reloads them if they
// changed. It is a tls.Config's certificate getter (through
// ServerConfigFunc and ClientConfigFunc).
func (f *CertFile) Certificate() *tls.Certificate {
	if f.opts.CheckEvery > 0 {
		f.maybeReload()
	}
	return f.cur.Load()
}

// Leaf returns the parsed leaf of the pair in use.
func (f *CertFile) Leaf() *x509.Certificate { return f.cur.Load().Leaf }

func (f *CertFile) maybeReload() {
	now := f.opts.Now().UnixNano()
	next := f.nextCheck.Load()
	// One handshake claims the check; the others go on with the pair in
	// use rather than wait for the files.
	if now < next || !f.nextCheck.CompareAndSwap(next, now+int64(f.opts.CheckEvery)) {
		return
	}
	if !f.mu.TryLock() {
		return
	}
	defer f.mu.Unlock()
	st, err := stampOf(f.certPath, f.keyPath)
	if err != nil || st.same(f.seen) {
		// A file missing for a moment (being replaced) is looked at again
		// at the next check; the pair in use stays.
		return
	}
	changed, err := f.load()
	if (changed || err != nil) && f.opts.OnChange != nil {
		f.opts.OnChange(err)
	}
}

// Reload reads the files again. It returns nil, and the new pair is
// presented from the next handshake on, if they hold a matching pair that
// passes Check; otherwise it returns why, and the pair in use stays.
// Connections already open keep the certificate they were made with.
func (f *CertFile) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.load()
	return err
}
