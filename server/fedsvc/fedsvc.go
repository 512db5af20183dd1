// Package fedsvc adapts FederationService, through which member nodes
// exchange the signed directory, to the node's directory manager. The
// caller is a member node (the interceptor checks it); its state is what
// the manager hears from.
package fedsvc

import (
	"context"

	"google.golang.org/grpc"

	"github.com/pocnet/pocnet/internal/dirsync"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/auth"
	"github.com/pocnet/pocnet/server/rpcerr"
)

// Service implements pocnet.v1.FederationService.
type Service struct {
	pocnetv1.UnsafeFederationServiceServer
	m *dirsync.Manager
}

// New returns the service.
func New(m *dirsync.Manager) *Service { return &Service{m: m} }

// Register registers the service on s.
func Register(s grpc.ServiceRegistrar, svc *Service) {
	pocnetv1.RegisterFederationServiceServer(s, svc)
}

// Offer implements FederationService.
func (s *Service) Offer(ctx context.Context, req *pocnetv1.OfferRequest) (*pocnetv1.OfferResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.m.HandleOffer(ctx, caller.State, req)
	return resp, rpcerr.Status(err)
}

// GetVersions implements FederationService.
func (s *Service) GetVersions(ctx context.Context, req *pocnetv1.GetVersionsRequest) (*pocnetv1.GetVersionsResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	resp, err := s.m.HandleGetVersions(req.GetAfterVersion(), req.GetLimit())
	return resp, rpcerr.Status(err)
}

// GetProposals implements FederationService.
func (s *Service) GetProposals(ctx context.Context, req *pocnetv1.GetProposalsRequest) (*pocnetv1.GetProposalsResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	resp, err := s.m.HandleGetProposals(req)
	return resp, rpcerr.Status(err)
}
