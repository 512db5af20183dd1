package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// MemberFile is the name of a joining participant's directory entry, at the
// top of its folder: what the existing members propose to admit.
const MemberFile = "member.json"

// MemberOptions say what NewMember makes.
type MemberOptions struct {
	// Federation is the id of the federation joined; required.
	Federation string
	// State is the joining participant's code; required.
	State string
	// Observer makes an entry of kind MEMBER_KIND_OBSERVER, admitted by the
	// silence procedure; otherwise it is a state member.
	Observer bool
	// Name is the entry's name; default "Testland <State>".
	Name string
	// Endpoint is the host:port of the participant's node; required.
	Endpoint string
	// Validity is the lifetime of node and operator certificates; default
	// DefaultValidity.
	Validity time.Duration
	// Now gives the issuing time; default time.Now.
	Now func() time.Time
}

// Member is the material of one participant joining an existing
// federation: its own PKI and keys, as every generated state has, and the
// directory entry the members admit.
type Member struct {
	*State
	// Entry is the participant's directory entry, kind STATE or OBSERVER,
	// with its CA, endpoint, keys and points of contact. It passed
	// directory.New.
	Entry *pocnetv1.Member
	now   func() time.Time
}

// NewMember makes a joining participant's root CA, node and operator
// certificates (admin and the PoC roles), signing and encryption keys, and
// directory entry. It does not look at the federation joined: Write checks
// the entry against its genesis.
func NewMember(o MemberOptions) (*Member, error) {
	if err := identity.ValidateFederation(o.Federation); err != nil {
		return nil, fmt.Errorf("certs: Federation: %v", err)
	}
	if err := identity.ValidateState(o.State); err != nil {
		return nil, fmt.Errorf("certs: State: %v", err)
	}
	if o.Endpoint == "" {
		return nil, errors.New("certs: Endpoint: is required (host:port)")
	}
	if o.Validity == 0 {
		o.Validity = DefaultValidity
	}
	if o.Validity < 0 || o.Validity > CAValidity {
		return nil, fmt.Errorf("certs: Validity %s is not between 0 and the CA's %s", o.Validity, CAValidity)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	now := o.Now()
	st, err := newState(o.Federation, o.State, now.Add(-clockSkew), now.Add(CAValidity), now.Add(o.Validity))
	if err != nil {
		return nil, err
	}
	e := st.entry(o.Endpoint)
	if o.Name != "" {
		e.Name = o.Name
	}
	if o.Observer {
		e.Kind = pocnetv1.MemberKind_MEMBER_KIND_OBSERVER
	}
	// Alone in a directory of its own, the entry must already validate.
	if _, err := directory.New(&pocnetv1.Directory{FederationId: o.Federation, Members: []*pocnetv1.Member{e}}); err != nil {
		return nil, fmt.Errorf("certs: entry of %s: %w", o.State, err)
	}
	return &Member{State: st, Entry: e, now: o.Now}, nil
}

// Write writes the participant's material into dir, a new or empty folder:
//
//	dir/member.json            its directory entry (protobuf JSON)
//	dir/genesis.json           a copy of the federation's genesis
//	dir/ca.pem, ca-key.pem
//	dir/node/node.pem, node-key.pem, signing-key.pem, encryption-key.pem,
//	         data.key, pocnode.yaml (genesis: ../genesis.json)
//	dir/operators/<role>-<name>/cert.pem, key.pem, pocctl.yaml
//
// It first verifies genesis with governance.NewChain, the participant's
// trust anchor, and refuses an entry that does not fit the federation it
// founds: another federation id, a state already listed, or a directory
// that would not validate with the entry added. It writes nothing outside
// dir, and refuses a dir that is not empty, so that no existing member's
// files are ever touched.
func (m *Member) Write(dir string, genesis *pocnetv1.SignedVersion) error {
	chain, err := governance.NewChain(genesis, m.now())
	if err != nil {
		return fmt.Errorf("certs: genesis: %w", err)
	}
	d := chain.Latest().Directory()
	fedID := m.Node.ID.Federation
	if d.Federation() != fedID {
		return fmt.Errorf("certs: %s is made for federation %q, but the genesis founds %q", m.Code, fedID, d.Federation())
	}
	if _, ok := d.Member(m.Code); ok {
		return fmt.Errorf("certs: %s is already a member of the federation %s", m.Code, fedID)
	}
	joined := proto.Clone(d.Proto()).(*pocnetv1.Directory)
	joined.Members = append(joined.Members, m.Entry)
	if _, err := directory.New(joined); err != nil {
		return fmt.Errorf("certs: entry of %s does not fit the federation: %w", m.Code, err)
	}
	entryJSON, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m.Entry)
	if err != nil {
		return fmt.Errorf("certs: encode entry: %w", err)
	}
	genesisJSON, err := governance.MarshalSigned(genesis)
	if err != nil {
		return fmt.Errorf("certs: encode genesis: %w", err)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("certs: %s is not empty: a participant's material goes into a new folder", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("certs: %w", err)
	}
	if err := writeState(dir, m.State, m.Entry.GetEndpoints()[0], "../"+GenesisFile); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, GenesisFile), genesisJSON, publicMode); err != nil {
		return err
	}
	// Last: its presence says the material is complete.
	return writeFile(filepath.Join(dir, MemberFile), append(entryJSON, '\n'), publicMode)
}

// LoadMember reads a participant's directory entry as Write writes it
// (member.json). Unknown fields are errors. The entry is not validated
// here: it is, with the whole directory, in the version that admits it.
func LoadMember(path string) (*pocnetv1.Member, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if len(data) > directory.MaxSize {
		return nil, fmt.Errorf("certs: %s: %d bytes, more than %d", path, len(data), directory.MaxSize)
	}
	m := &pocnetv1.Member{}
	if err := protojson.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("certs: %s: %w", path, err)
	}
	return m, nil
}
