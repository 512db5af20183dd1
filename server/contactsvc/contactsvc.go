// Package contactsvc adapts ContactService, the API a state's own operators
// and tools use, to the exchange. Each handler validates what only the edge
// can, calls the exchange with the caller's verified identity, and converts
// the result; it never touches storage or TLS.
package contactsvc

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/exchange"
	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/internal/relay"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/auth"
	"github.com/pocnet/pocnet/server/rpcerr"
)

// Config configures the service.
type Config struct {
	Exchange  *exchange.Service
	Directory *directory.Source
	// Peers reports delivery state per peer; may be nil.
	Peers      func() []relay.PeerStatus
	Federation string
	State      string
	// LastSeq returns the newest event seq.
	LastSeq func() uint64
}

// Service implements pocnet.v1.ContactService.
type Service struct {
	pocnetv1.UnsafeContactServiceServer
	cfg Config
}

// New returns the service.
func New(cfg Config) *Service { return &Service{cfg: cfg} }

// Register registers the service on s.
func Register(s grpc.ServiceRegistrar, svc *Service) {
	pocnetv1.RegisterContactServiceServer(s, svc)
}

// SendCommunication implements ContactService.
func (s *Service) SendCommunication(ctx context.Context, req *pocnetv1.SendCommunicationRequest) (*pocnetv1.SendCommunicationResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkView(req.GetView()); err != nil {
		return nil, err
	}
	m, err := s.cfg.Exchange.Send(ctx, caller, req)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	applyView(req.GetView(), m)
	return &pocnetv1.SendCommunicationResponse{Message: m}, nil
}

// GetMessage implements ContactService.
func (s *Service) GetMessage(ctx context.Context, req *pocnetv1.GetMessageRequest) (*pocnetv1.GetMessageResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkView(req.GetView()); err != nil {
		return nil, err
	}
	m, err := s.cfg.Exchange.Get(ctx, caller, req.GetId())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	applyView(req.GetView(), m)
	return &pocnetv1.GetMessageResponse{Message: m}, nil
}

// ListMessages implements ContactService.
func (s *Service) ListMessages(ctx context.Context, req *pocnetv1.ListMessagesRequest) (*pocnetv1.ListMessagesResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkView(req.GetView()); err != nil {
		return nil, err
	}
	ms, next, err := s.cfg.Exchange.List(ctx, caller, req)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	applyView(req.GetView(), ms...)
	return &pocnetv1.ListMessagesResponse{Messages: ms, NextPageToken: next}, nil
}

// GetThread implements ContactService.
func (s *Service) GetThread(ctx context.Context, req *pocnetv1.GetThreadRequest) (*pocnetv1.GetThreadResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkView(req.GetView()); err != nil {
		return nil, err
	}
	ms, err := s.cfg.Exchange.Thread(ctx, caller, req.GetId())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	applyView(req.GetView(), ms...)
	return &pocnetv1.GetThreadResponse{Messages: ms}, nil
}

// WatchEvents implements ContactService.
func (s *Service) WatchEvents(req *pocnetv1.WatchEventsRequest, stream grpc.ServerStreamingServer[pocnetv1.WatchEventsResponse]) error {
	caller, err := auth.Caller(stream.Context())
	if err != nil {
		return err
	}
	if err := checkView(req.GetView()); err != nil {
		return err
	}
	err = s.cfg.Exchange.Events(stream.Context(), caller, req.GetAfterSeq(), func(ev *pocnetv1.Event) error {
		applyView(req.GetView(), ev.GetMessage())
		return stream.Send(&pocnetv1.WatchEventsResponse{Event: ev})
	})
	if stream.Context().Err() != nil {
		return status.FromContextError(stream.Context().Err()).Err()
	}
	return rpcerr.Status(err)
}

// Acknowledge implements ContactService.
func (s *Service) Acknowledge(ctx context.Context, req *pocnetv1.AcknowledgeRequest) (*pocnetv1.AcknowledgeResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	m, err := s.cfg.Exchange.Acknowledge(ctx, caller, req.GetId(), req.GetNote())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.AcknowledgeResponse{Acknowledgement: m}, nil
}

// Respond implements ContactService.
func (s *Service) Respond(ctx context.Context, req *pocnetv1.RespondRequest) (*pocnetv1.RespondResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkView(req.GetView()); err != nil {
		return nil, err
	}
	m, err := s.cfg.Exchange.Respond(ctx, caller, req.GetId(), req.GetRequestId(), req.GetCommunication())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	applyView(req.GetView(), m)
	return &pocnetv1.RespondResponse{Response: m}, nil
}

// Decline implements ContactService.
func (s *Service) Decline(ctx context.Context, req *pocnetv1.DeclineRequest) (*pocnetv1.DeclineResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	m, err := s.cfg.Exchange.Decline(ctx, caller, req.GetId(), req.GetReason())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.DeclineResponse{Decline: m}, nil
}

// SetLocalState implements ContactService.
func (s *Service) SetLocalState(ctx context.Context, req *pocnetv1.SetLocalStateRequest) (*pocnetv1.SetLocalStateResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	m, err := s.cfg.Exchange.SetLocalState(ctx, caller, req.GetId(), req.GetLocalState())
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.SetLocalStateResponse{Message: m}, nil
}

// GetDirectory implements ContactService. Directory data is for
// participants only; the caller is one (the interceptor checked).
func (s *Service) GetDirectory(ctx context.Context, _ *pocnetv1.GetDirectoryRequest) (*pocnetv1.GetDirectoryResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	d := proto.Clone(s.cfg.Directory.Directory().Proto()).(*pocnetv1.Directory)
	return &pocnetv1.GetDirectoryResponse{Directory: d}, nil
}

// GetPolicy implements ContactService.
func (s *Service) GetPolicy(ctx context.Context, req *pocnetv1.GetPolicyRequest) (*pocnetv1.GetPolicyResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	if err := identity.ValidateState(req.GetState()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "state: %v", err)
	}
	m, ok := s.cfg.Directory.Directory().Member(req.GetState())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "state: %s is not a member of the directory", req.GetState())
	}
	m = proto.Clone(m).(*pocnetv1.Member)
	return &pocnetv1.GetPolicyResponse{State: m.GetState(), PointsOfContact: m.GetPointsOfContact()}, nil
}

// GetNodeStatus implements ContactService.
func (s *Service) GetNodeStatus(ctx context.Context, _ *pocnetv1.GetNodeStatusRequest) (*pocnetv1.GetNodeStatusResponse, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	out := &pocnetv1.GetNodeStatusResponse{
		FederationId: s.cfg.Federation, State: s.cfg.State,
		CallerIdentity: caller.String(), CallerRole: caller.Role,
	}
	if s.cfg.LastSeq != nil {
		out.LastEventSeq = s.cfg.LastSeq()
	}
	if s.cfg.Peers != nil {
		for _, p := range s.cfg.Peers() {
			out.Peers = append(out.Peers, peerStatus(p))
		}
	}
	return out, nil
}
