// Package dirsync keeps a node's signed directory: the version chain,
// verified from the genesis the operator installed and persisted in the
// store; the proposals the node has collected, with their signatures; the
// exchange of both with every peer over FederationService; the directory in
// force (directory.Source), swapped live as versions are adopted; and the
// state's own keys, switched when the state rotates them.
//
// Distribution is push and pull, without a centre. A node that adopts a
// version or changes a proposal offers its head and a summary of its
// proposals to every peer at once; every interval it also offers them to a
// few peers chosen at random (anti-entropy), so a node that was down or
// missed a push catches up. An offer's answer carries the callee's head and
// summary: whichever side is behind pulls the versions it lacks
// (GetVersions) from the other and verifies each against its own chain
// before adopting it, and whichever side lacks a proposal fetches it, or
// only its signatures when it holds it with others (GetProposals). A
// summary names each proposal and the signatures held for it by their
// hashes, so an offer is a few hundred bytes while a proposal carries a
// whole directory version (half a megabyte for 200 members): a proposal
// crosses a link once, and a new signature travels without it. Nothing
// received is trusted for being received: a version is adopted only if it
// verifies as the next version of the node's own chain, a proposal is kept
// only if it is a valid child of the version in force, and only the
// signatures that verify and may count are merged into it.
//
// Decisions are safe against honest forks: this node's state signs at most
// one decision (admission, removal, rule change, observer admission) on
// each version, so that under a supermajority rule two decisions on one
// version cannot both reach their quorum. An entry update needs no quorum:
// two states updating their entries on the same version at the same moment
// make two valid versions with one parent, which every node refuses and
// reports as a fork (governance.ForkError) rather than choose. The states
// concerned see it in `pocctl directory history` and the audit log.
package dirsync

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/domainerr"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/store"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Error kinds (package domainerr), with the reason; server/rpcerr maps
// them to codes.
var (
	ErrInvalidArgument    = domainerr.InvalidArgument
	ErrNotFound           = domainerr.NotFound
	ErrFailedPrecondition = domainerr.FailedPrecondition
	ErrPermissionDenied   = domainerr.PermissionDenied
	ErrUnavailable        = domainerr.Unavailable
)

// Error is an error of one of the kinds above, with a message that does
// not repeat the kind: operators read it as it is.
type Error = domainerr.Error

func errorf(kind error, format string, args ...any) error {
	return domainerr.New(kind, format, args...)
}

// Limits.
const (
	// MaxProposals bounds the proposals a node holds; an offer beyond it is
	// dropped with a log line, never stored.
	MaxProposals = 64
	// RetireGrace is how long after a rotation the retired signing key
	// still verifies new signatures: those the node made while the version
	// naming the new key was being stored.
	RetireGrace = time.Minute
	// MaxProposalsPerState bounds the proposals one state may have pending,
	// so that no member can crowd out the others'.
	MaxProposalsPerState = 4
	// MaxVersionsPerCall bounds one GetVersions answer.
	MaxVersionsPerCall = 16
	// MaxVersionsBytes bounds one GetVersions or GetProposals answer beyond
	// its first version or proposal (a version is at most
	// governance.MaxSize).
	MaxVersionsBytes = 8 << 20
	// historyLen is how many closed proposals (adopted, superseded,
	// objected) the node remembers for status.
	historyLen = 100
)

// Peers gives the connection to a peer node, shared with the relay.
type Peers interface {
	Conn(state string) (grpc.ClientConnInterface, error)
}

// Config configures a Manager.
type Config struct {
	// State is this node's state.
	State string
	// Genesis is the trust anchor the operator installed.
	Genesis *pocnetv1.SignedVersion
	Store   *store.DB
	// Signer is the node's envelope signer; the manager switches it to the
	// newest ACTIVE signing key of the state it holds, whenever the
	// directory in force changes.
	Signer *envelope.Signer
	// SigningKeys are the signing keys the node's files hold, by key id.
	SigningKeys map[string]ed25519.PrivateKey
	// AddEncryptionKey gives the node's opener a private key made or loaded
	// by the manager.
	AddEncryptionKey func(id string, key hpke.PrivateKey)
	// Peers reaches the other nodes; nil until SetPeers (the transport
	// needs the Source the manager fills).
	Peers Peers
	// OnAdopt, if set, is called after each adopted version is in force.
	OnAdopt func(v *governance.Version)
	Logger  *zap.Logger
	Now     func() time.Time
	// Interval is the anti-entropy period; default 30s. Fanout is the
	// number of random peers offered to each period; default 3.
	Interval time.Duration
	Fanout   int
	// PushTimeout bounds one offer or pull; default 10s.
	PushTimeout time.Duration
}

// Manager keeps the node's signed directory. It is safe for concurrent use.
type Manager struct {
	cfg    Config
	log    *zap.Logger
	source *directory.Source
	chain  *governance.Chain
	latest atomic.Pointer[governance.Version] // the chain's latest once stored and in force

	mu        sync.Mutex // serializes changes to the chain, proposals and keys
	proposals map[[32]byte]*pocnetv1.SignedVersion
	closed    []*pocnetv1.Proposal // newest last, at most historyLen
	keys      map[string]ed25519.PrivateKey
	peers     Peers

	kick    chan struct{} // wakes the loop to push at once
	pulling sync.Map      // state → struct{}: a pull from it is running
	// fetching: state → struct{}: proposals are being fetched from it
	fetching sync.Map
	nudging  sync.Map       // state → struct{}: an offer to it is running
	wg       sync.WaitGroup // background goroutines
	ctx      context.Context
	cancel   context.CancelFunc
}

// New verifies the genesis and the stored chain from it, loads the stored
// proposals and keys, and returns a manager with the latest version in
// force in Source. A stored version that no longer verifies is an error: the
// store was tampered with or belongs to another federation.
func New(cfg Config) (*Manager, error) {
	if cfg.Genesis == nil || cfg.Store == nil || cfg.Signer == nil || cfg.State == "" {
		return nil, errors.New("dirsync: State, Genesis, Store and Signer are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Fanout <= 0 {
		cfg.Fanout = 3
	}
	if cfg.PushTimeout <= 0 {
		cfg.PushTimeout = 10 * time.Second
	}
	if cfg.AddEncryptionKey == nil {
		cfg.AddEncryptionKey = func(string, hpke.PrivateKey) {}
	}
	chain, err := governance.NewChain(cfg.Genesis, cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("genesis: %w", err)
	}
	stored, err := cfg.Store.DirectoryVersions(0)
	if err != nil {
		return nil, fmt.Errorf("directory chain: %w", err)
	}
	hasGenesis := len(stored) > 0
	if hasGenesis {
		g, err := governance.Parse(stored[0])
		if err != nil {
			return nil, fmt.Errorf("directory chain: stored genesis: %w", err)
		}
		if governance.Hash(g.GetVersion()) != chain.Latest().Hash() {
			h := chain.Latest().Hash()
			return nil, fmt.Errorf("genesis: the store was made with another genesis than %x; it belongs to another federation", h[:8])
		}
		stored = stored[1:]
	}
	for _, raw := range stored {
		sv, err := governance.Parse(raw)
		if err == nil {
			_, err = chain.Add(sv, cfg.Now())
		}
		if err != nil {
			return nil, fmt.Errorf("directory chain: stored version %d: %w", chain.Latest().Number()+1, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg: cfg, log: cfg.Logger, chain: chain, peers: cfg.Peers,
		source:    directory.NewSource(chain.Latest().Directory()),
		proposals: map[[32]byte]*pocnetv1.SignedVersion{},
		keys:      map[string]ed25519.PrivateKey{},
		kick:      make(chan struct{}, 1),
		ctx:       ctx, cancel: cancel,
	}
	for id, k := range cfg.SigningKeys {
		m.keys[id] = k
	}
	if err := m.loadKeys(); err != nil {
		return nil, err
	}
	if err := m.loadProposals(); err != nil {
		return nil, err
	}
	if !hasGenesis {
		// The genesis is stored too, so that a later start with another
		// genesis file is noticed.
		if err := m.persist(context.Background(), chain.Latest()); err != nil {
			return nil, err
		}
	}
	m.latest.Store(chain.Latest())
	m.switchSigner(chain.Latest().Directory())
	return m, nil
}

func (m *Manager) loadKeys() error {
	stored, err := m.cfg.Store.PrivateKeys()
	if err != nil {
		return fmt.Errorf("directory keys: %w", err)
	}
	for id, b := range stored {
		switch {
		case strings.HasPrefix(id, directory.SigningKeyPrefix):
			if len(b) != ed25519.SeedSize {
				return fmt.Errorf("directory keys: stored signing key %s has %d bytes", id, len(b))
			}
			m.keys[id] = ed25519.NewKeyFromSeed(b)
		case strings.HasPrefix(id, directory.EncryptionKeyPrefix):
			k, err := directory.KEM().NewPrivateKey(b)
			if err != nil {
				return fmt.Errorf("directory keys: stored encryption key %s: %w", id, err)
			}
			m.cfg.AddEncryptionKey(id, k)
		default:
			return fmt.Errorf("directory keys: stored key %q of unknown kind", id)
		}
	}
	return nil
}

func (m *Manager) loadProposals() error {
	raws, err := m.cfg.Store.Proposals()
	if err != nil {
		return fmt.Errorf("directory proposals: %w", err)
	}
	latest := m.chain.Latest()
	for _, raw := range raws {
		sv, err := governance.Parse(raw)
		if err != nil {
			return fmt.Errorf("directory proposals: %w", err)
		}
		h := governance.Hash(sv.GetVersion())
		if _, err := governance.Assess(latest, sv, m.cfg.Now()); err != nil {
			// Superseded while the node was down, or no longer valid: it
			// is forgotten.
			m.log.Info("stored proposal dropped", zap.String("proposal", short(h[:])), zap.Error(err))
			if err := m.cfg.Store.Update(context.Background(), func(tx *store.Tx) error { tx.DeleteProposal(h[:]); return nil }); err != nil {
				return err
			}
			continue
		}
		m.proposals[h] = sv
	}
	return nil
}

// Source returns the directory in force.
func (m *Manager) Source() *directory.Source { return m.source }

// SetPeers gives the manager the transport to the peers.
func (m *Manager) SetPeers(p Peers) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peers = p
}

// Latest returns the version in force: stored, and in Source.
func (m *Manager) Latest() *governance.Version { return m.latest.Load() }

// Version returns version n.
func (m *Manager) Version(n uint64) (*governance.Version, bool) { return m.chain.Version(n) }

// Forks returns the forks detected.
func (m *Manager) Forks() []*governance.ForkError { return m.chain.Forks() }

// IsMember reports whether this node's state is in the directory in force.
func (m *Manager) IsMember() bool {
	_, ok := m.chain.Latest().Directory().Member(m.cfg.State)
	return ok
}

// Start runs the background exchange with peers until Stop: an offer to
// every peer at once, then anti-entropy.
func (m *Manager) Start() {
	m.wg.Add(1)
	go m.loop()
}

// Stop ends the background exchange and waits for it.
func (m *Manager) Stop() {
	m.cancel()
	m.wg.Wait()
}

// adopt verifies sv as the next version, stores it, and puts it in force.
// m.mu is held.
func (m *Manager) adopt(ctx context.Context, sv *pocnetv1.SignedVersion, from string) (*governance.Version, error) {
	latest := m.chain.Latest()
	now := m.cfg.Now()
	v, err := governance.Verify(latest, sv, now)
	if err != nil {
		// Not the next version: the chain says what it is (a replay, a
		// gap, a fork) and keeps a fork for reporting.
		known := len(m.chain.Forks())
		_, err := m.chain.Add(sv, now)
		var fe *governance.ForkError
		if errors.As(err, &fe) && len(m.chain.Forks()) > known {
			// Reported once; the peer offering it again is only refused.
			m.log.Error("directory fork detected and refused", zap.String("from", from), zap.Error(fe))
			m.audit(ctx, fmt.Sprintf("fork detected and refused: %v (from %s)", fe, from))
		}
		if err == nil {
			err = fmt.Errorf("%w: version accepted by the chain but not as the child of version %d", governance.ErrInvalid, latest.Number())
		}
		return nil, err
	}
	return v, m.adoptVerified(ctx, v, from)
}

// adoptVerified stores v, which Verify accepted as the child of the
// chain's latest version, and puts it in force. m.mu is held.
func (m *Manager) adoptVerified(ctx context.Context, v *governance.Version, from string) error {
	h := v.Hash()
	if p, ok := m.proposals[h]; ok && len(p.GetObjections()) > 0 {
		// This node holds a valid objection the version does not carry: it
		// was adopted elsewhere without it. Refuse; say so.
		return fmt.Errorf("%w: version %d is an observer admission this node holds an objection to", governance.ErrObjected, v.Number())
	}
	// On disk before anything uses it: a version in force survives a crash.
	if err := m.persist(ctx, v); err != nil {
		return err
	}
	if err := m.chain.Append(v); err != nil {
		return fmt.Errorf("stored version %d refused by the chain: %w", v.Number(), err)
	}
	m.source.Set(v.Directory())
	m.latest.Store(v)
	m.switchSigner(v.Directory())
	m.closeProposals(v)
	m.log.Info("directory version in force", zap.Uint64("version", v.Number()), zap.String("change", governance.DescribeChange(v.Change())),
		zap.Strings("signers", v.Signers()), zap.String("from", from))
	if m.cfg.OnAdopt != nil {
		m.cfg.OnAdopt(v)
	}
	m.push()
	return nil
}

// persist stores version v, drops its proposal and records it, in one batch.
func (m *Manager) persist(ctx context.Context, v *governance.Version) error {
	raw, err := proto.Marshal(v.Signed())
	if err != nil {
		return err
	}
	return m.cfg.Store.Update(ctx, func(tx *store.Tx) error {
		if err := tx.PutDirectoryVersion(v.Number(), raw); err != nil {
			return err
		}
		h := v.Hash()
		tx.DeleteProposal(h[:])
		tx.Audit(&pocnetv1.AuditRecord{
			OccurredAt: timestamppb.New(m.cfg.Now()), Action: pocnetv1.AuditAction_AUDIT_ACTION_DIRECTORY, Actor: m.cfg.State,
			Detail: fmt.Sprintf("directory version %d in force (%x): %s, signed by %s", v.Number(), h[:8], governance.DescribeChange(v.Change()), strings.Join(v.Signers(), ", ")),
		})
		return nil
	})
}

// closeProposals moves the proposals v adopted or superseded to the
// history. m.mu is held.
func (m *Manager) closeProposals(v *governance.Version) {
	var gone [][]byte
	for h, sv := range m.proposals {
		p := m.describe(sv, nil)
		if h == v.Hash() {
			p.State = pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED
		} else {
			p.State = pocnetv1.ProposalState_PROPOSAL_STATE_SUPERSEDED
		}
		m.remember(p)
		delete(m.proposals, h)
		gone = append(gone, slices.Clone(h[:]))
	}
	if len(gone) == 0 {
		return
	}
	err := m.cfg.Store.Update(m.ctx, func(tx *store.Tx) error {
		for _, h := range gone {
			tx.DeleteProposal(h)
		}
		return nil
	})
	if err != nil {
		m.log.Warn("closed proposals not removed from the store; they are dropped at the next start", zap.Error(err))
	}
}

func (m *Manager) remember(p *pocnetv1.Proposal) {
	m.closed = append(m.closed, p)
	if len(m.closed) > historyLen {
		m.closed = slices.Delete(m.closed, 0, len(m.closed)-historyLen)
	}
}

// switchSigner makes the signer use the last ACTIVE signing key of the
// state that the node holds.
func (m *Manager) switchSigner(d *directory.Directory) {
	mem, ok := d.Member(m.cfg.State)
	if !ok {
		return
	}
	keys := mem.GetSigningKeys()
	for i := len(keys) - 1; i >= 0; i-- {
		k := keys[i]
		if k.GetStatus() != pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
			continue
		}
		if priv, ok := m.keys[k.GetKeyId()]; ok {
			if m.cfg.Signer.KeyID() != k.GetKeyId() {
				_ = m.cfg.Signer.Set(priv)
				m.log.Info("signing with the state's new key", zap.String("key", k.GetKeyId()))
			}
			return
		}
	}
	m.log.Error("the directory in force lists no ACTIVE signing key of this state that the node holds; envelopes it signs will be refused",
		zap.String("state", m.cfg.State), zap.String("signing_with", m.cfg.Signer.KeyID()))
}

// signingKey returns the state's key to sign a child of parent with: one
// it holds, ACTIVE in parent.
func (m *Manager) signingKey(parent *governance.Version) (ed25519.PrivateKey, error) {
	mem, ok := parent.Directory().Member(m.cfg.State)
	if !ok {
		return nil, errorf(ErrPermissionDenied, "%s is not a member of directory version %d", m.cfg.State, parent.Number())
	}
	keys := mem.GetSigningKeys()
	for i := len(keys) - 1; i >= 0; i-- {
		if keys[i].GetStatus() != pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
			continue
		}
		if priv, ok := m.keys[keys[i].GetKeyId()]; ok {
			return priv, nil
		}
	}
	return nil, errorf(ErrFailedPrecondition, "the node holds no ACTIVE signing key of %s in directory version %d", m.cfg.State, parent.Number())
}

// audit records a directory event outside a version's batch.
func (m *Manager) audit(ctx context.Context, detail string) {
	err := m.cfg.Store.AppendAudit(ctx, &pocnetv1.AuditRecord{
		OccurredAt: timestamppb.New(m.cfg.Now()), Action: pocnetv1.AuditAction_AUDIT_ACTION_DIRECTORY, Actor: m.cfg.State, Detail: detail,
	})
	if err != nil {
		m.log.Warn("audit record not written", zap.String("detail", detail), zap.Error(err))
	}
}

func short(h []byte) string {
	if len(h) > 8 {
		h = h[:8]
	}
	return fmt.Sprintf("%x", h)
}
