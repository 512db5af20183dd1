// Package relaysvc adapts RelayService, spoken between member nodes, to the
// exchange. Every call also tells the relay worker that the calling node is
// up, so that what waits for it is retried at once.
package relaysvc

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/exchange"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/auth"
	"github.com/pocnet/pocnet/server/rpcerr"
)

// Config configures the service.
type Config struct {
	Exchange *exchange.Service
	State    string
	// HeardFrom is told of every calling peer; may be nil.
	HeardFrom func(state string)
	Now       func() time.Time
}

// Service implements pocnet.v1.RelayService.
type Service struct {
	pocnetv1.UnsafeRelayServiceServer
	cfg Config
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}
}

// Register registers the service on s.
func Register(s grpc.ServiceRegistrar, svc *Service) {
	pocnetv1.RegisterRelayServiceServer(s, svc)
}

// Deliver implements RelayService.
func (s *Service) Deliver(ctx context.Context, req *pocnetv1.DeliverRequest) (*pocnetv1.DeliverResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if s.cfg.HeardFrom != nil {
		s.cfg.HeardFrom(caller.State)
	}
	results, err := s.cfg.Exchange.Receive(ctx, caller, req.GetEnvelopes())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.DeliverResponse{Results: results}, nil
}

// Ping implements RelayService.
func (s *Service) Ping(ctx context.Context, _ *pocnetv1.PingRequest) (*pocnetv1.PingResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if s.cfg.HeardFrom != nil {
		s.cfg.HeardFrom(caller.State)
	}
	return &pocnetv1.PingResponse{State: s.cfg.State, Time: timestamppb.New(s.cfg.Now())}, nil
}
