// Package directorysvc adapts DirectoryService, through which a state's own
// operators see the federation's signed directory chain, change their
// state's entry, rotate its keys, and propose, sign or object to changes
// decided with the other members, to the node's directory manager (the
// Directory interface). Each handler reads the caller's verified identity,
// validates what the request alone can show, calls the manager and converts
// the result.
//
// It never signs, verifies or stores anything itself, never touches keys,
// storage or TLS, and never decides who may call what: the interceptor
// (server/auth) lets any own operator read and only admin operators write.
package directorysvc

import (
	"context"
	"crypto/sha256"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/auth"
	"github.com/pocnet/pocnet/server/rpcerr"
)

// Directory is the node's directory manager as this service needs it: the
// verified chain, the forks it refused, and the changes the node signs with
// its state's key. Errors it returns are domain errors, converted by
// rpcerr.
type Directory interface {
	// Latest returns the version in force.
	Latest() *governance.Version
	// Version returns version n of the chain.
	Version(n uint64) (*governance.Version, bool)
	// Forks returns the forks detected so far, oldest first.
	Forks() []*governance.ForkError
	// UpdateEntry publishes m as the state's own entry, signed by the state
	// alone, refusing it if the entry changed since baseVersion (0: no
	// check).
	UpdateEntry(ctx context.Context, m *pocnetv1.Member, baseVersion uint64) (*governance.Version, error)
	// RotateKeys makes and publishes new keys of the state.
	RotateKeys(ctx context.Context, signing, encryption bool) (v *governance.Version, signingKeyID, encryptionKeyID string, err error)
	// Propose makes a proposal signed by the state as its first signer.
	Propose(ctx context.Context, req *pocnetv1.ProposeRequest) (*pocnetv1.Proposal, error)
	// Sign adds the state's signature to the proposal named by hash.
	Sign(ctx context.Context, hash []byte) (*pocnetv1.Proposal, error)
	// Object adds the state's objection to the observer admission named by
	// hash.
	Object(ctx context.Context, hash []byte) (*pocnetv1.Proposal, error)
	// Proposals returns the proposals the node holds, oldest first.
	Proposals() []*pocnetv1.Proposal
}

// Bounds of a GetHistory page.
const (
	// DefaultHistoryLimit is the page size when the request gives none.
	DefaultHistoryLimit = 50
	// MaxHistoryLimit is the largest page served.
	MaxHistoryLimit = 500
)

// Config configures the service.
type Config struct {
	Directory Directory
}

// Service implements pocnet.v1.DirectoryService.
type Service struct {
	pocnetv1.UnsafeDirectoryServiceServer
	cfg Config
}

// New returns the service.
func New(cfg Config) *Service { return &Service{cfg: cfg} }

// Register registers the service on s.
func Register(s grpc.ServiceRegistrar, svc *Service) {
	pocnetv1.RegisterDirectoryServiceServer(s, svc)
}

// invalid is an InvalidArgument status naming the field.
func invalid(field, format string, a ...any) error {
	return status.Error(codes.InvalidArgument, field+": "+fmt.Sprintf(format, a...))
}

// GetHistory implements DirectoryService: a page of versions newest first,
// with every fork detected (forks are few, and each must be seen on every
// page rather than missed on the one not asked for).
func (s *Service) GetHistory(ctx context.Context, req *pocnetv1.GetHistoryRequest) (*pocnetv1.GetHistoryResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	limit := uint64(req.GetLimit())
	switch {
	case limit == 0:
		limit = DefaultHistoryLimit
	case limit > MaxHistoryLimit:
		return nil, invalid("limit", "%d is more than %d", limit, MaxHistoryLimit)
	}
	latest := s.cfg.Directory.Latest()
	resp := &pocnetv1.GetHistoryResponse{Head: head(latest)}
	// Versions older than before_version; past the latest (or 0) means from
	// the latest, so that a page asked for with a number read elsewhere
	// never fails.
	from := latest.Number()
	if b := req.GetBeforeVersion(); b != 0 && b <= from {
		from = b - 1
	}
	for n := from; n >= 1 && uint64(len(resp.Versions)) < limit; n-- {
		v, ok := s.cfg.Directory.Version(n)
		if !ok {
			return nil, status.Errorf(codes.Internal, "version %d of the chain is missing; the operator's log may have the detail", n)
		}
		resp.Versions = append(resp.Versions, Summary(v))
	}
	for _, f := range s.cfg.Directory.Forks() {
		resp.Forks = append(resp.Forks, fork(f))
	}
	return resp, nil
}

// GetVersion implements DirectoryService.
func (s *Service) GetVersion(ctx context.Context, req *pocnetv1.GetVersionRequest) (*pocnetv1.GetVersionResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	latest := s.cfg.Directory.Latest()
	v := latest
	if n := req.GetVersion(); n != 0 {
		var ok bool
		if v, ok = s.cfg.Directory.Version(n); !ok {
			return nil, status.Errorf(codes.NotFound, "version %d not found: the chain ends at version %d", n, latest.Number())
		}
	}
	// The decoded version is read from the signed bytes themselves, so that
	// what an operator reads is exactly what was signed.
	pb := &pocnetv1.DirectoryVersion{}
	if err := proto.Unmarshal(v.Signed().GetVersion(), pb); err != nil {
		return nil, rpcerr.Status(fmt.Errorf("decode version %d: %w", v.Number(), err))
	}
	return &pocnetv1.GetVersionResponse{Signed: v.Signed(), Version: pb}, nil
}

// UpdateEntry implements DirectoryService.
func (s *Service) UpdateEntry(ctx context.Context, req *pocnetv1.UpdateEntryRequest) (*pocnetv1.UpdateEntryResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	m := req.GetMember()
	if m == nil {
		return nil, invalid("member", "required: the state's whole new entry")
	}
	if m.GetState() == "" {
		return nil, invalid("member.state", "required")
	}
	if m.GetState() != caller.State {
		// Only the state's own key signs here, and it signs for its own entry
		// alone; other entries change by their members or by decisions.
		return nil, status.Errorf(codes.PermissionDenied, "member.state: %s is not %s: a node changes its own state's entry only", m.GetState(), caller.State)
	}
	v, err := s.cfg.Directory.UpdateEntry(ctx, m, req.GetBaseVersion())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.UpdateEntryResponse{Version: Summary(v)}, nil
}

// RotateKeys implements DirectoryService.
func (s *Service) RotateKeys(ctx context.Context, req *pocnetv1.RotateKeysRequest) (*pocnetv1.RotateKeysResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	if !req.GetSigning() && !req.GetEncryption() {
		return nil, invalid("signing, encryption", "at least one is required")
	}
	v, sid, eid, err := s.cfg.Directory.RotateKeys(ctx, req.GetSigning(), req.GetEncryption())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.RotateKeysResponse{Version: Summary(v), SigningKeyId: sid, EncryptionKeyId: eid}, nil
}

// Propose implements DirectoryService.
func (s *Service) Propose(ctx context.Context, req *pocnetv1.ProposeRequest) (*pocnetv1.ProposeResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	if err := s.validateProposal(req); err != nil {
		return nil, err
	}
	p, err := s.cfg.Directory.Propose(ctx, req)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.ProposeResponse{Proposal: p}, nil
}

// validateProposal checks the shape of a proposal: whether it can pass
// under the rule and the directory in force is the manager's to say.
func (s *Service) validateProposal(req *pocnetv1.ProposeRequest) error {
	switch p := req.GetProposal().(type) {
	case *pocnetv1.ProposeRequest_Admit:
		return validateEntry("admit", p.Admit, pocnetv1.MemberKind_MEMBER_KIND_STATE)
	case *pocnetv1.ProposeRequest_AdmitObserver:
		return validateEntry("admit_observer", p.AdmitObserver, pocnetv1.MemberKind_MEMBER_KIND_OBSERVER)
	case *pocnetv1.ProposeRequest_Remove:
		if p.Remove == "" {
			return invalid("remove", "required: the state code of the member to remove")
		}
		if err := identity.ValidateState(p.Remove); err != nil {
			return invalid("remove", "%v", err)
		}
	case *pocnetv1.ProposeRequest_Rule:
		states := governance.StateMembers(s.cfg.Directory.Latest().Directory())
		// ValidateRule's messages name the field from "rule" down.
		if err := governance.ValidateRule(p.Rule, len(states)); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
	default:
		return invalid("proposal", "one of admit, remove, rule or admit_observer is required")
	}
	return nil
}

// validateEntry checks the entry an admission would add: present, with a
// state code, and not of the other kind. An unspecified kind is left to the
// manager, which knows the kind the admission gives.
func validateEntry(field string, m *pocnetv1.Member, want pocnetv1.MemberKind) error {
	if m == nil {
		return invalid(field, "required: the entry of the member to admit")
	}
	if m.GetState() == "" {
		return invalid(field+".state", "required")
	}
	if err := identity.ValidateState(m.GetState()); err != nil {
		return invalid(field+".state", "%v", err)
	}
	if k := m.GetKind(); k != pocnetv1.MemberKind_MEMBER_KIND_UNSPECIFIED && k != want {
		if want == pocnetv1.MemberKind_MEMBER_KIND_STATE {
			return invalid(field+".kind", "%v: an observer is admitted with admit_observer, by silence procedure", k)
		}
		return invalid(field+".kind", "%v: a state member is admitted with admit, under the decision rule", k)
	}
	return nil
}

// validHash checks a proposal hash.
func validHash(h []byte) error {
	if len(h) != sha256.Size {
		return invalid("hash", "%d bytes, want %d (the SHA-256 that names the proposal)", len(h), sha256.Size)
	}
	return nil
}

// Sign implements DirectoryService.
func (s *Service) Sign(ctx context.Context, req *pocnetv1.SignRequest) (*pocnetv1.SignResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	if err := validHash(req.GetHash()); err != nil {
		return nil, err
	}
	p, err := s.cfg.Directory.Sign(ctx, req.GetHash())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.SignResponse{Proposal: p}, nil
}

// Object implements DirectoryService.
func (s *Service) Object(ctx context.Context, req *pocnetv1.ObjectRequest) (*pocnetv1.ObjectResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	if err := validHash(req.GetHash()); err != nil {
		return nil, err
	}
	p, err := s.cfg.Directory.Object(ctx, req.GetHash())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.ObjectResponse{Proposal: p}, nil
}

// ListProposals implements DirectoryService.
func (s *Service) ListProposals(ctx context.Context, _ *pocnetv1.ListProposalsRequest) (*pocnetv1.ListProposalsResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	return &pocnetv1.ListProposalsResponse{Proposals: s.cfg.Directory.Proposals()}, nil
}

// Summary describes a version of the chain for operators.
func Summary(v *governance.Version) *pocnetv1.VersionSummary {
	h := v.Hash()
	return &pocnetv1.VersionSummary{
		Version:     v.Number(),
		Hash:        h[:],
		IssuedAt:    timestamppb.New(v.IssuedAt()),
		Change:      cloneChange(v.Change()),
		Signers:     v.Signers(),
		Description: governance.DescribeChange(v.Change()),
	}
}

// cloneChange copies a version's change, which the version owns.
func cloneChange(c *pocnetv1.Change) *pocnetv1.Change {
	if c == nil {
		return nil
	}
	return proto.Clone(c).(*pocnetv1.Change)
}

func head(v *governance.Version) *pocnetv1.DirectoryHead {
	h := v.Hash()
	return &pocnetv1.DirectoryHead{Version: v.Number(), Hash: h[:]}
}

func fork(f *governance.ForkError) *pocnetv1.Fork {
	have, got := f.Have, f.Got
	return &pocnetv1.Fork{
		Version:      f.Version,
		HaveHash:     have[:],
		GotHash:      got[:],
		Equivocators: append([]string(nil), f.Equivocators...),
	}
}
