// Package recordsvc adapts RecordService, through which a state's own
// operators take the evidence their node keeps (transcripts of threads) and
// disclose a thread with the consent of both states, to the exchange. Each
// handler reads the caller's verified identity, calls the exchange and
// converts the result; it never touches storage, keys or TLS.
package recordsvc

import (
	"context"

	"google.golang.org/grpc"

	"github.com/pocnet/pocnet/internal/exchange"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/auth"
	"github.com/pocnet/pocnet/server/rpcerr"
)

// Config configures the service.
type Config struct {
	Exchange *exchange.Service
}

// Service implements pocnet.v1.RecordService.
type Service struct {
	pocnetv1.UnsafeRecordServiceServer
	cfg Config
}

// New returns the service.
func New(cfg Config) *Service { return &Service{cfg: cfg} }

// Register registers the service on s.
func Register(s grpc.ServiceRegistrar, svc *Service) {
	pocnetv1.RegisterRecordServiceServer(s, svc)
}

// ExportThread implements RecordService.
func (s *Service) ExportThread(ctx context.Context, req *pocnetv1.ExportThreadRequest) (*pocnetv1.ExportThreadResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	t, err := s.cfg.Exchange.ExportThread(ctx, caller, req.GetId())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.ExportThreadResponse{Transcript: t}, nil
}

// RequestDisclosure implements RecordService.
func (s *Service) RequestDisclosure(ctx context.Context, req *pocnetv1.RequestDisclosureRequest) (*pocnetv1.RequestDisclosureResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	b, err := s.cfg.Exchange.RequestDisclosure(ctx, caller, req.GetId(), req.GetPurpose())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.RequestDisclosureResponse{Bundle: b}, nil
}

// ConsentDisclosure implements RecordService.
func (s *Service) ConsentDisclosure(ctx context.Context, req *pocnetv1.ConsentDisclosureRequest) (*pocnetv1.ConsentDisclosureResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	b, err := s.cfg.Exchange.ConsentDisclosure(ctx, caller, req.GetBundle())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.ConsentDisclosureResponse{Bundle: b}, nil
}
