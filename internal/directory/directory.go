package directory

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/text/language"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// MaxSize bounds a directory file, so that a bad path cannot exhaust memory.
const MaxSize = 16 << 20

// ErrInvalid is returned (wrapped) for a directory that does not validate.
var ErrInvalid = errors.New("invalid directory")

// Directory is a validated, immutable directory with indexes.
type Directory struct {
	pb      *pocnetv1.Directory
	members map[string]*pocnetv1.Member
	bundle  *identity.Bundle
}

// Load reads and validates a directory file in protobuf JSON form. Unknown
// fields are errors.
func Load(path string) (*Directory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	if st.Size() > MaxSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrInvalid, path, st.Size(), MaxSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	d, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// Parse reads and validates a directory in protobuf JSON form.
func Parse(data []byte) (*Directory, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(data), MaxSize)
	}
	var pb pocnetv1.Directory
	if err := (protojson.UnmarshalOptions{}).Unmarshal(data, &pb); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return New(&pb)
}

// Marshal returns d in the indented protobuf JSON form Load reads.
func Marshal(pb *pocnetv1.Directory) ([]byte, error) {
	return protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(pb)
}

// New validates pb and builds a Directory from a private copy of it.
func New(pb *pocnetv1.Directory) (*Directory, error) {
	pb = proto.Clone(pb).(*pocnetv1.Directory)
	if err := identity.ValidateFederation(pb.GetFederationId()); err != nil {
		return nil, fmt.Errorf("%w: federation_id: %v", ErrInvalid, err)
	}
	d := &Directory{pb: pb, members: make(map[string]*pocnetv1.Member, len(pb.GetMembers()))}
	cas := make(map[string][]*x509.Certificate, len(pb.GetMembers()))
	var revoked []identity.BundleOption
	keyOwner := map[string]string{}
	for i, m := range pb.GetMembers() {
		field := "members[" + strconv.Itoa(i) + "]"
		if err := identity.ValidateState(m.GetState()); err != nil {
			return nil, fmt.Errorf("%w: %s.state: %v", ErrInvalid, field, err)
		}
		if _, dup := d.members[m.GetState()]; dup {
			return nil, fmt.Errorf("%w: %s.state: %s is listed twice", ErrInvalid, field, m.GetState())
		}
		if _, ok := pocnetv1.MemberKind_name[int32(m.GetKind())]; !ok || m.GetKind() == pocnetv1.MemberKind_MEMBER_KIND_UNSPECIFIED {
			return nil, fmt.Errorf("%w: %s.kind: must be MEMBER_KIND_STATE or MEMBER_KIND_OBSERVER", ErrInvalid, field)
		}
		certs, err := parseCAs(m.GetCaCertificates())
		if err != nil {
			return nil, fmt.Errorf("%w: %s.ca_certificates%v", ErrInvalid, field, err)
		}
		cas[m.GetState()] = certs
		rs, err := revocations(m.GetRevokedCertificates())
		if err != nil {
			return nil, fmt.Errorf("%w: %s.revoked_certificates%v", ErrInvalid, field, err)
		}
		revoked = append(revoked, identity.WithRevoked(m.GetState(), rs...))
		if len(m.GetEndpoints()) == 0 {
			return nil, fmt.Errorf("%w: %s.endpoints: at least one host:port is required", ErrInvalid, field)
		}
		for j, ep := range m.GetEndpoints() {
			if _, port, err := net.SplitHostPort(ep); err != nil || port == "" {
				return nil, fmt.Errorf("%w: %s.endpoints[%d]: %q is not host:port", ErrInvalid, field, j, ep)
			}
		}
		if err := validatePoCs(m.GetPointsOfContact()); err != nil {
			return nil, fmt.Errorf("%w: %s.points_of_contact%v", ErrInvalid, field, err)
		}
		if err := validateKeys(m); err != nil {
			return nil, fmt.Errorf("%w: %s%v", ErrInvalid, field, err)
		}
		// A key belongs to one member: a key listed by two states would let
		// one speak, or be read, as the other.
		for j, k := range m.GetSigningKeys() {
			if other, dup := keyOwner[k.GetKeyId()]; dup {
				return nil, fmt.Errorf("%w: %s.signing_keys[%d]: %s is also a key of %s", ErrInvalid, field, j, k.GetKeyId(), other)
			}
			keyOwner[k.GetKeyId()] = m.GetState()
		}
		for j, k := range m.GetEncryptionKeys() {
			if other, dup := keyOwner[k.GetKeyId()]; dup {
				return nil, fmt.Errorf("%w: %s.encryption_keys[%d]: %s is also a key of %s", ErrInvalid, field, j, k.GetKeyId(), other)
			}
			keyOwner[k.GetKeyId()] = m.GetState()
		}
		d.members[m.GetState()] = m
	}
	d.bundle = identity.NewBundle(pb.GetFederationId(), cas, revoked...)
	return d, nil
}

func parseCAs(pems []string) ([]*x509.Certificate, error) {
	if len(pems) == 0 {
		return nil, errors.New(": at least one CA certificate is required")
	}
	var out []*x509.Certificate
	for i, s := range pems {
		rest := []byte(s)
		n := 0
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				return nil, fmt.Errorf("[%d]: PEM block %q is not a CERTIFICATE", i, b.Type)
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %v", i, err)
			}
			if !c.IsCA {
				return nil, fmt.Errorf("[%d]: %q is not a CA certificate", i, c.Subject.String())
			}
			out = append(out, c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("[%d]: no PEM certificate found", i)
		}
	}
	return out, nil
}

func validatePoCs(pocs []*pocnetv1.PointOfContact) error {
	seen := map[string]bool{}
	for i, p := range pocs {
		if err := identity.ValidateRole(p.GetRole()); err != nil {
			return fmt.Errorf("[%d].role: %v", i, err)
		}
		if p.GetRole() == identity.AdminRole {
			return fmt.Errorf("[%d].role: %q is reserved for node administrators and cannot be a PoC", i, identity.AdminRole)
		}
		if seen[p.GetRole()] {
			return fmt.Errorf("[%d].role: %q is listed twice", i, p.GetRole())
		}
		seen[p.GetRole()] = true
		for j, l := range p.GetLanguages() {
			if _, err := language.Parse(l); err != nil {
				return fmt.Errorf("[%d].languages[%d]: %q is not a BCP 47 tag", i, j, l)
			}
		}
		for j, k := range p.GetAcceptedKinds() {
			if _, ok := pocnetv1.Kind_name[int32(k)]; !ok || k == pocnetv1.Kind_KIND_UNSPECIFIED {
				return fmt.Errorf("[%d].accepted_kinds[%d]: unknown kind %d", i, j, int32(k))
			}
		}
	}
	return nil
}

// Proto returns the directory message. Callers must not modify it.
func (d *Directory) Proto() *pocnetv1.Directory { return d.pb }

// Federation returns the federation id.
func (d *Directory) Federation() string { return d.pb.GetFederationId() }

// Bundle returns the per-state trust bundle built from the CA certificates
// and the certificates each member revoked.
func (d *Directory) Bundle() *identity.Bundle { return d.bundle }

// Member returns the entry of state. Callers must not modify it.
func (d *Directory) Member(state string) (*pocnetv1.Member, bool) {
	m, ok := d.members[state]
	return m, ok
}

// PointOfContact returns the PoC of state listed under role.
func (d *Directory) PointOfContact(state, role string) (*pocnetv1.PointOfContact, bool) {
	m, ok := d.members[state]
	if !ok {
		return nil, false
	}
	for _, p := range m.GetPointsOfContact() {
		if p.GetRole() == role {
			return p, true
		}
	}
	return nil, false
}

// Endpoints returns the node endpoints of state.
func (d *Directory) Endpoints(state string) []string {
	return d.members[state].GetEndpoints()
}

// States returns the member state codes, sorted.
func (d *Directory) States() []string {
	out := make([]string, 0, len(d.members))
	for s := range d.members {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Source holds the directory in force. Every reader takes the current
// version once per decision, so a newer verified directory can be swapped in
// while the node runs; components that hold state derived from it (open
// connections, running streams, keys) wait on Changed.
type Source struct {
	d       atomic.Pointer[Directory]
	mu      sync.Mutex
	changed chan struct{}
}

// NewSource returns a Source serving d.
func NewSource(d *Directory) *Source {
	s := &Source{changed: make(chan struct{})}
	s.d.Store(d)
	return s
}

// Directory returns the directory in force.
func (s *Source) Directory() *Directory { return s.d.Load() }

// Bundle returns the trust bundle of the directory in force; Source is an
// identity.Source.
func (s *Source) Bundle() *identity.Bundle { return s.d.Load().Bundle() }

// Set puts d in force and wakes everyone waiting on Changed. The caller has
// verified d (the governance chain does).
func (s *Source) Set(d *Directory) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d.Store(d)
	close(s.changed)
	s.changed = make(chan struct{})
}

// Changed returns a channel closed at the next Set. Take it before reading
// Directory, so that a change between the two is not missed.
func (s *Source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}
