package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Kind says whether an identity is a node or an operator.
type Kind int

const (
	// KindNode is a state's relay node: spiffe://<fed>/state/<ISO3>/node.
	KindNode Kind = iota + 1
	// KindOperator is a person or tool acting for one PoC role of its state:
	// spiffe://<fed>/state/<ISO3>/operator/<role>/<name>.
	KindOperator
)

// AdminRole is the operator role that may see and act on everything of its
// own state. It is not a PoC role and cannot be addressed by other states.
const AdminRole = "admin"

// String returns "node" or "operator".
func (k Kind) String() string {
	switch k {
	case KindNode:
		return "node"
	case KindOperator:
		return "operator"
	default:
		return fmt.Sprintf("kind(%d)", int(k))
	}
}

// ID is a verified or parsed identity.
type ID struct {
	Federation string
	State      string
	Kind       Kind
	// Role and Name are set for operators only.
	Role string
	Name string
}

var (
	stateRE      = regexp.MustCompile(`^[A-Z]{3}$`)
	roleRE       = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	nameRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	federationRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)
)

// ErrInvalidID is returned (wrapped) for any malformed identity.
var ErrInvalidID = errors.New("invalid identity")

// ValidateState checks an ISO 3166-1 alpha-3 code (three upper-case letters).
func ValidateState(s string) error {
	if !stateRE.MatchString(s) {
		return fmt.Errorf("%q is not an ISO 3166-1 alpha-3 state code (three upper-case letters)", s)
	}
	return nil
}

// ValidateRole checks a PoC role name: lower-case letters, digits and '-',
// starting with a letter, at most 32 characters.
func ValidateRole(r string) error {
	if !roleRE.MatchString(r) {
		return fmt.Errorf("%q is not a valid role (lower-case letters, digits and '-', starting with a letter, at most 32)", r)
	}
	return nil
}

// ValidateFederation checks a federation id (a DNS-like trust domain name).
func ValidateFederation(f string) error {
	if !federationRE.MatchString(f) {
		return fmt.Errorf("%q is not a valid federation id (lower-case letters, digits, '.' and '-')", f)
	}
	return nil
}

// Node returns the identity of state's node.
func Node(federation, state string) ID {
	return ID{Federation: federation, State: state, Kind: KindNode}
}

// Operator returns the identity of an operator of state acting for role.
func Operator(federation, state, role, name string) ID {
	return ID{Federation: federation, State: state, Kind: KindOperator, Role: role, Name: name}
}

// String returns the identity as a SPIFFE ID URI.
func (id ID) String() string {
	switch id.Kind {
	case KindNode:
		return "spiffe://" + id.Federation + "/state/" + id.State + "/node"
	case KindOperator:
		return "spiffe://" + id.Federation + "/state/" + id.State + "/operator/" + id.Role + "/" + id.Name
	default:
		return "spiffe://" + id.Federation + "/state/" + id.State + "/?"
	}
}

// URL returns the identity as a URL, for a certificate's URI SAN.
func (id ID) URL() *url.URL {
	u, err := url.Parse(id.String())
	if err != nil {
		// Unreachable for an ID that passed Validate.
		return &url.URL{Scheme: "spiffe", Host: id.Federation}
	}
	return u
}

// IsAdmin reports whether id is an operator acting as admin.
func (id ID) IsAdmin() bool { return id.Kind == KindOperator && id.Role == AdminRole }

// Validate checks every part of id.
func (id ID) Validate() error {
	if err := ValidateFederation(id.Federation); err != nil {
		return fmt.Errorf("%w: federation: %v", ErrInvalidID, err)
	}
	if err := ValidateState(id.State); err != nil {
		return fmt.Errorf("%w: state: %v", ErrInvalidID, err)
	}
	switch id.Kind {
	case KindNode:
		if id.Role != "" || id.Name != "" {
			return fmt.Errorf("%w: a node identity has no role or name", ErrInvalidID)
		}
	case KindOperator:
		if err := ValidateRole(id.Role); err != nil {
			return fmt.Errorf("%w: role: %v", ErrInvalidID, err)
		}
		if !nameRE.MatchString(id.Name) {
			return fmt.Errorf("%w: name: %q is not valid (letters, digits, '.', '_' and '-', at most 64)", ErrInvalidID, id.Name)
		}
	default:
		return fmt.Errorf("%w: unknown kind", ErrInvalidID)
	}
	return nil
}

// Parse reads a SPIFFE ID URI of one of the two forms above.
func Parse(s string) (ID, error) {
	if len(s) > 2048 {
		return ID{}, fmt.Errorf("%w: longer than 2048 bytes", ErrInvalidID)
	}
	u, err := url.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %v", ErrInvalidID, err)
	}
	if u.Scheme != "spiffe" {
		return ID{}, fmt.Errorf("%w: scheme must be spiffe, got %q", ErrInvalidID, u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" || u.Opaque != "" || u.RawPath != "" {
		return ID{}, fmt.Errorf("%w: %q has parts a SPIFFE ID may not have", ErrInvalidID, s)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	var id ID
	switch {
	case len(parts) == 3 && parts[0] == "state" && parts[2] == "node":
		id = Node(u.Host, parts[1])
	case len(parts) == 5 && parts[0] == "state" && parts[2] == "operator":
		id = Operator(u.Host, parts[1], parts[3], parts[4])
	default:
		return ID{}, fmt.Errorf("%w: path %q is neither /state/<ISO3>/node nor /state/<ISO3>/operator/<role>/<name>", ErrInvalidID, u.Path)
	}
	if err := id.Validate(); err != nil {
		return ID{}, err
	}
	if id.String() != s {
		return ID{}, fmt.Errorf("%w: %q is not in canonical form", ErrInvalidID, s)
	}
	return id, nil
}

// FromCertificate reads the identity of a certificate, which must carry
// exactly one URI SAN.
func FromCertificate(c *x509.Certificate) (ID, error) {
	if len(c.URIs) != 1 {
		return ID{}, fmt.Errorf("%w: certificate %q has %d URI SANs, want exactly one", ErrInvalidID, c.Subject.String(), len(c.URIs))
	}
	return Parse(c.URIs[0].String())
}
