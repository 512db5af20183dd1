package certs

import (
	"crypto/ed25519"
	"crypto/hpke"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Defaults of Options, also used by the pocfed command.
const (
	DefaultFederation = "pocnet.example"
	DefaultCount      = 3
	DefaultHost       = "127.0.0.1"
	// DefaultBasePort is the port of the first state's node in the pocfed
	// command. Options.BasePort has no default: its zero value means port 0
	// for every node, which is what tests that listen on 127.0.0.1:0 and fill
	// in the endpoints afterwards want.
	DefaultBasePort = 7401
	DefaultValidity = 90 * 24 * time.Hour
	// CAValidity is the lifetime of every state's root CA.
	CAValidity = 10 * 365 * 24 * time.Hour
	// MaxStates is the number of codes in the user-assigned range X?? that
	// Count can draw from.
	MaxStates = 26 * 26
	// DefaultSupermajority and DefaultSilencePeriod make DefaultRule.
	DefaultSupermajority = 70
	DefaultSilencePeriod = 72 * time.Hour
)

// DefaultRule returns the decision rule of a federation whose Options set
// none: a supermajority of DefaultSupermajority percent of the state
// members, and observers admitted after DefaultSilencePeriod of silence.
func DefaultRule() *pocnetv1.DecisionRule {
	return &pocnetv1.DecisionRule{
		Rule:          &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: DefaultSupermajority}},
		SilencePeriod: durationpb.New(DefaultSilencePeriod),
	}
}

var hostRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// clockSkew backdates every certificate, so that a peer whose clock is
// slightly behind does not refuse a certificate made a moment ago.
const clockSkew = 5 * time.Minute

// Options says what federation Generate creates. The zero value is valid.
type Options struct {
	// Federation is the trust domain; default DefaultFederation.
	Federation string
	// States are the member codes. When empty, Count codes are drawn from
	// the user-assigned range with StateCodes.
	States []string
	// Count is the number of states when States is empty; default 3. When
	// States is set, Count must be 0 or len(States).
	Count int
	// Host is the host part of every node endpoint; default DefaultHost.
	Host string
	// BasePort is the port of the first state's node; state i listens on
	// BasePort+i. Zero means port 0 for every node (see DefaultBasePort).
	BasePort int
	// Validity is the lifetime of node and operator certificates; default
	// DefaultValidity. CAs are valid for CAValidity.
	Validity time.Duration
	// Now gives the issuing time; default time.Now.
	Now func() time.Time
	// Rule is the decision rule the genesis sets; default DefaultRule(). It
	// must pass governance.ValidateRule for the generated states.
	Rule *pocnetv1.DecisionRule
}

// Operator roles and names every generated state gets: an administrator and
// one operator for each PoC role the directory lists.
var operators = []struct{ role, name string }{
	{identity.AdminRole, "duty"},
	{"technical", "duty-officer"},
	{"policy", "desk"},
	{"diplomatic", "desk"},
}

// State is one generated member state.
type State struct {
	Code string
	CA   *CA
	Node *Issued
	// Operators are admin/duty, technical/duty-officer, policy/desk and
	// diplomatic/desk, in that order.
	Operators []*Issued
	// SigningKey signs the state's envelopes, receipts and directory
	// versions; its public half is in the state's directory entry.
	SigningKey ed25519.PrivateKey
	// EncryptionKey opens payloads sealed to the state; its public half is
	// in the state's directory entry.
	EncryptionKey hpke.PrivateKey
}

// Operator returns the state's operator acting for role, or nil.
func (s *State) Operator(role string) *Issued {
	for _, o := range s.Operators {
		if o.ID.Role == role {
			return o
		}
	}
	return nil
}

// Federation is a generated federation: every state's PKI and the directory.
type Federation struct {
	// ID is the federation id (trust domain).
	ID     string
	States []*State
	// Directory lists every state; it passed directory.New. It may be
	// edited (tests fill in endpoints) until the genesis is made from it.
	Directory *pocnetv1.Directory
	opts      Options
}

// Options returns the options the federation was generated with, defaults
// filled in.
func (f *Federation) Options() Options {
	o := f.opts
	o.States = append([]string(nil), o.States...)
	o.Rule = proto.Clone(o.Rule).(*pocnetv1.DecisionRule)
	return o
}

// Genesis returns version 1 of the federation's directory chain: the
// Directory as it is now and the rule, issued at Options.Now(), signed by
// every state member it lists with that state's SigningKey. It is verified
// with governance.Verify before it is returned, so a Directory edited into
// something the founders could not sign (a state member without a generated
// key, a threshold above the state members) is refused here, with the
// reason.
func (f *Federation) Genesis() (*pocnetv1.SignedVersion, error) {
	now := f.opts.Now()
	v := &pocnetv1.DirectoryVersion{
		Version:   1,
		IssuedAt:  timestamppb.New(now),
		Directory: f.Directory,
		Rule:      f.opts.Rule,
	}
	b, err := governance.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("certs: genesis: %w", err)
	}
	sv := &pocnetv1.SignedVersion{Version: b}
	for _, m := range f.Directory.GetMembers() {
		if m.GetKind() != pocnetv1.MemberKind_MEMBER_KIND_STATE {
			continue // observers never sign decisions
		}
		st := f.State(m.GetState())
		if st == nil {
			return nil, fmt.Errorf("certs: genesis: state member %s was not generated: no signing key", m.GetState())
		}
		sig, err := governance.Sign(st.Code, st.SigningKey, b)
		if err != nil {
			return nil, fmt.Errorf("certs: genesis: %s: %w", st.Code, err)
		}
		sv.Signatures = append(sv.Signatures, sig)
	}
	if _, err := governance.Verify(nil, sv, now); err != nil {
		return nil, fmt.Errorf("certs: genesis: %w", err)
	}
	return sv, nil
}

// State returns the generated state with code, or nil.
func (f *Federation) State(code string) *State {
	for _, s := range f.States {
		if s.Code == code {
			return s
		}
	}
	return nil
}

// StateCodes returns the first n codes of the user-assigned range: XAA, XBB,
// ..., XZZ, then XAB, XAC, ..., XZY. n must be between 1 and MaxStates.
func StateCodes(n int) ([]string, error) {
	if n < 1 || n > MaxStates {
		return nil, fmt.Errorf("certs: %d states: must be between 1 and %d", n, MaxStates)
	}
	out := make([]string, 0, n)
	for c := 'A'; c <= 'Z' && len(out) < n; c++ {
		out = append(out, "X"+string(c)+string(c))
	}
	for a := 'A'; a <= 'Z' && len(out) < n; a++ {
		for b := 'A'; b <= 'Z' && len(out) < n; b++ {
			if a != b {
				out = append(out, "X"+string(a)+string(b))
			}
		}
	}
	return out, nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Federation == "" {
		o.Federation = DefaultFederation
	}
	if err := identity.ValidateFederation(o.Federation); err != nil {
		return o, fmt.Errorf("certs: Federation: %v", err)
	}
	if len(o.States) == 0 {
		if o.Count == 0 {
			o.Count = DefaultCount
		}
		codes, err := StateCodes(o.Count)
		if err != nil {
			return o, fmt.Errorf("certs: Count: %v", err)
		}
		o.States = codes
	} else {
		if o.Count != 0 && o.Count != len(o.States) {
			return o, fmt.Errorf("certs: Count is %d but States lists %d codes", o.Count, len(o.States))
		}
		seen := make(map[string]bool, len(o.States))
		for i, s := range o.States {
			if err := identity.ValidateState(s); err != nil {
				return o, fmt.Errorf("certs: States[%d]: %v", i, err)
			}
			if seen[s] {
				return o, fmt.Errorf("certs: States[%d]: %s is listed twice", i, s)
			}
			seen[s] = true
		}
		o.States = append([]string(nil), o.States...)
		o.Count = len(o.States)
	}
	if o.Host == "" {
		o.Host = DefaultHost
	}
	if err := ValidateHost(o.Host); err != nil {
		return o, fmt.Errorf("certs: Host: %v", err)
	}
	if o.BasePort < 0 || o.BasePort > 65535 || (o.BasePort != 0 && o.BasePort+len(o.States)-1 > 65535) {
		return o, fmt.Errorf("certs: BasePort %d: ports %d..%d are not all between 0 and 65535", o.BasePort, o.BasePort, o.BasePort+len(o.States)-1)
	}
	if o.Validity == 0 {
		o.Validity = DefaultValidity
	}
	if o.Validity < 0 {
		return o, fmt.Errorf("certs: Validity %s is negative", o.Validity)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rule == nil {
		o.Rule = DefaultRule()
	} else {
		o.Rule = proto.Clone(o.Rule).(*pocnetv1.DecisionRule)
	}
	// Every generated member is a state member.
	if err := governance.ValidateRule(o.Rule, len(o.States)); err != nil {
		return o, fmt.Errorf("certs: Rule: %v", err)
	}
	return o, nil
}

// ValidateHost checks the host part of a node endpoint: an IP address or a
// DNS name.
func ValidateHost(h string) error {
	if net.ParseIP(h) == nil && !hostRE.MatchString(h) {
		return fmt.Errorf("%q is neither an IP address nor a DNS name", h)
	}
	return nil
}

// endpoint returns the host:port of the node of the i-th state.
func (o Options) endpoint(i int) string {
	port := 0
	if o.BasePort != 0 {
		port = o.BasePort + i
	}
	return net.JoinHostPort(o.Host, strconv.Itoa(port))
}

// Generate creates a federation: for each state a root CA, a node
// certificate, the operator certificates and a directory entry. The
// directory is validated with directory.New before Generate returns.
func Generate(opts Options) (*Federation, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	now := o.Now()
	notBefore := now.Add(-clockSkew)
	caNotAfter := now.Add(CAValidity)
	leafNotAfter := now.Add(o.Validity)
	if leafNotAfter.After(caNotAfter) {
		// A leaf outliving its CA would fail verification from the day the CA
		// expires; say so now rather than then.
		return nil, fmt.Errorf("certs: Validity %s is longer than the CA's %s", o.Validity, CAValidity)
	}
	f := &Federation{
		ID:        o.Federation,
		Directory: &pocnetv1.Directory{FederationId: o.Federation},
		opts:      o,
	}
	for i, code := range o.States {
		st, err := newState(o.Federation, code, notBefore, caNotAfter, leafNotAfter)
		if err != nil {
			return nil, err
		}
		f.States = append(f.States, st)
		f.Directory.Members = append(f.Directory.Members, st.entry(o.endpoint(i)))
	}
	if _, err := directory.New(f.Directory); err != nil {
		return nil, fmt.Errorf("certs: generated directory does not validate: %w", err)
	}
	return f, nil
}

// newState makes one state's PKI and keys: its root CA, node and operator
// certificates, signing and encryption keys.
func newState(federation, code string, notBefore, caNotAfter, leafNotAfter time.Time) (*State, error) {
	ca, err := NewCA(federation, code, notBefore, caNotAfter)
	if err != nil {
		return nil, err
	}
	node, err := ca.Issue(identity.Node(federation, code), notBefore, leafNotAfter)
	if err != nil {
		return nil, err
	}
	st := &State{Code: code, CA: ca, Node: node}
	if st.SigningKey, err = envelope.GenerateSigningKey(); err != nil {
		return nil, err
	}
	if st.EncryptionKey, err = envelope.GenerateEncryptionKey(); err != nil {
		return nil, err
	}
	for _, op := range operators {
		iss, err := ca.Issue(identity.Operator(federation, code, op.role, op.name), notBefore, leafNotAfter)
		if err != nil {
			return nil, err
		}
		st.Operators = append(st.Operators, iss)
	}
	return st, nil
}

// entry returns the state's directory entry, a state member whose node is
// at endpoint.
func (st *State) entry(endpoint string) *pocnetv1.Member {
	m := member(st.Code, string(st.CA.CertPEM), endpoint)
	m.SigningKeys = []*pocnetv1.SigningKey{PublishSigningKey(st.SigningKey)}
	m.EncryptionKeys = []*pocnetv1.EncryptionKey{PublishEncryptionKey(st.EncryptionKey)}
	return m
}

// PublishSigningKey returns the directory form of k's public key, active.
func PublishSigningKey(k ed25519.PrivateKey) *pocnetv1.SigningKey {
	pub := k.Public().(ed25519.PublicKey)
	return &pocnetv1.SigningKey{KeyId: directory.SigningKeyID(pub), PublicKey: pub, Status: pocnetv1.KeyStatus_KEY_STATUS_ACTIVE}
}

// PublishEncryptionKey returns the directory form of k's public key, active.
func PublishEncryptionKey(k hpke.PrivateKey) *pocnetv1.EncryptionKey {
	pub := k.PublicKey().Bytes()
	return &pocnetv1.EncryptionKey{KeyId: directory.EncryptionKeyID(pub), PublicKey: pub, Status: pocnetv1.KeyStatus_KEY_STATUS_ACTIVE}
}

// member is the directory entry of a generated state. The technical PoC
// deliberately does not accept requests for consultations: that is a
// diplomatic matter, and the demonstration relies on the node refusing it.
func member(code, caPEM, endpoint string) *pocnetv1.Member {
	return &pocnetv1.Member{
		State:          code,
		Kind:           pocnetv1.MemberKind_MEMBER_KIND_STATE,
		Name:           "Testland " + code,
		CaCertificates: []string{caPEM},
		Endpoints:      []string{endpoint},
		PointsOfContact: []*pocnetv1.PointOfContact{
			{
				Role:         "technical",
				Organisation: "National CERT of " + code,
				Position:     "Duty officer",
				Languages:    []string{"en", "fr"},
				Hours:        &pocnetv1.Hours{AroundTheClock: true},
				AcceptedKinds: []pocnetv1.Kind{
					pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION,
					pocnetv1.Kind_KIND_REQUEST_FOR_ASSISTANCE,
					pocnetv1.Kind_KIND_NOTIFICATION,
					pocnetv1.Kind_KIND_COMMUNICATION_CHECK,
					pocnetv1.Kind_KIND_OTHER,
				},
			},
			{
				Role:         "policy",
				Organisation: "Ministry of Foreign Affairs of " + code,
				Position:     "Cyber policy desk",
				Languages:    []string{"en"},
				Hours:        &pocnetv1.Hours{Description: "Mon-Fri 08:00-18:00", TimeZone: "UTC"},
				AcceptedKinds: []pocnetv1.Kind{
					pocnetv1.Kind_KIND_REQUEST_FOR_INFORMATION,
					pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS,
					pocnetv1.Kind_KIND_NOTIFICATION,
					pocnetv1.Kind_KIND_COMMUNICATION_CHECK,
				},
			},
			{
				Role:         "diplomatic",
				Organisation: "Permanent Mission of " + code,
				Languages:    []string{"en", "fr"},
				Hours:        &pocnetv1.Hours{Description: "Mon-Fri 09:00-17:00"},
				AcceptedKinds: []pocnetv1.Kind{
					pocnetv1.Kind_KIND_NOTIFICATION,
					pocnetv1.Kind_KIND_REQUEST_FOR_CONSULTATIONS,
					pocnetv1.Kind_KIND_COMMUNICATION_CHECK,
				},
			},
		},
	}
}
