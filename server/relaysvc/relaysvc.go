// Package relaysvc adapts RelayService, spoken between member nodes, to the
// exchange. Every call also tells the relay worker that the calling node is
// up, so that what waits for it is retried at once.
package relaysvc

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/exchange"
	"github.com/pocnet/pocnet/internal/identity"
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

	mu sync.Mutex
	// held is, per calling state, the envelope bytes of its DeliverAhead
	// calls waiting for the word that they are durable.
	held map[string]int
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, held: map[string]int{}}
}

// Register registers the service on s.
func Register(s grpc.ServiceRegistrar, svc *Service) {
	pocnetv1.RegisterRelayServiceServer(s, svc)
}

// caller returns the calling node's identity, and tells the relay worker
// that the node is up.
func (s *Service) caller(ctx context.Context) (identity.ID, error) {
	caller, err := auth.Caller(ctx)
	if err != nil {
		return identity.ID{}, err
	}
	if s.cfg.HeardFrom != nil {
		s.cfg.HeardFrom(caller.State)
	}
	return caller, nil
}

// Deliver implements RelayService.
func (s *Service) Deliver(ctx context.Context, req *pocnetv1.DeliverRequest) (*pocnetv1.DeliverResponse, error) {
	caller, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	results, err := s.cfg.Exchange.Receive(ctx, caller, req.GetEnvelopes(), req.GetEncapsulatedKeys(), nil)
	if err != nil {
		return nil, rpcerr.Status(err)
	}
	return &pocnetv1.DeliverResponse{Results: results}, nil
}

// MaxAheadBytes bounds the envelope bytes that one peer's DeliverAhead
// calls may hold at this node while they wait for the word that they are
// durable: a caller cannot make the node keep more of its envelopes in
// memory than this, however many calls it opens. The relay of this build
// has at most 4 calls of at most 8 MiB under way to a peer. A call over the
// bound is refused at once (ResourceExhausted), unless it is the peer's
// only one.
const MaxAheadBytes = 64 << 20

// MaxAheadWait bounds how long DeliverAhead holds envelopes sent ahead
// while it waits for the caller's word that they are durable. A sender's
// sync takes milliseconds; a caller that says nothing for this long (a hung
// disk, or a peer holding the call open) has its call ended, with nothing
// stored, and delivers again later.
const MaxAheadWait = 30 * time.Second

// DeliverAhead implements RelayService.
func (s *Service) DeliverAhead(stream pocnetv1.RelayService_DeliverAheadServer) error {
	ctx := stream.Context()
	caller, err := s.caller(ctx)
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return status.Error(codes.InvalidArgument, "envelopes: the stream ended before its first message")
	}
	if err != nil {
		return err
	}
	req := first.GetEnvelopes()
	if req == nil {
		return status.Error(codes.InvalidArgument, "envelopes: the first message of the stream must carry the envelopes")
	}
	size := 0
	for _, env := range req.GetEnvelopes() {
		size += len(env.GetHeader()) + len(env.GetPayload()) + len(env.GetEncapsulatedKey())
	}
	for _, k := range req.GetEncapsulatedKeys() {
		size += len(k)
	}
	if held, ok := s.hold(caller.State, size); !ok {
		return status.Errorf(codes.ResourceExhausted, "envelopes: %d bytes, but the calls of %s waiting for the word that their envelopes are durable already hold %d; the most is %d bytes",
			size, caller.State, held, MaxAheadBytes)
	}
	defer s.release(caller.State, size)
	results, err := s.cfg.Exchange.Receive(ctx, caller, req.GetEnvelopes(), req.GetEncapsulatedKeys(), func(ctx context.Context) error {
		return awaitDurable(ctx, stream)
	})
	if err != nil {
		return rpcerr.Status(err)
	}
	return stream.SendAndClose(&pocnetv1.DeliverAheadResponse{Results: results})
}

// hold counts n more bytes held for state's calls, unless that would exceed
// MaxAheadBytes while others are held; it returns what was held before.
func (s *Service) hold(state string, n int) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.held[state]
	if held > 0 && held+n > MaxAheadBytes {
		return held, false
	}
	s.held[state] = held + n
	return held, true
}

func (s *Service) release(state string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[state] -= n; s.held[state] <= 0 {
		delete(s.held, state)
	}
}

// awaitDurable waits for the caller's word that the envelopes sent ahead
// are durable, for at most MaxAheadWait.
func awaitDurable(ctx context.Context, stream pocnetv1.RelayService_DeliverAheadServer) error {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= MaxAheadWait {
		// The call's own deadline ends the Recv soon enough (the node's
		// relay sets one on every call): no goroutine, no timer.
		if err := recvDurable(stream); err != nil {
			return err
		}
		// The caller may have lost the directory's trust meanwhile (the
		// interceptor then cancels ctx): nothing of its call is stored.
		return status.FromContextError(ctx.Err()).Err()
	}
	got := make(chan error, 1)
	go func() { got <- recvDurable(stream) }()
	t := time.NewTimer(MaxAheadWait)
	defer t.Stop()
	select {
	case err := <-got:
		if err != nil {
			return err
		}
		return status.FromContextError(ctx.Err()).Err()
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-t.C:
		// Returning ends the stream, and with it the Recv above.
		return status.Errorf(codes.DeadlineExceeded, "durable: the caller did not say the envelopes are durable within %v; nothing was stored", MaxAheadWait)
	}
}

// recvDurable reads the second message of a DeliverAhead stream.
func recvDurable(stream pocnetv1.RelayService_DeliverAheadServer) error {
	m, err := stream.Recv()
	switch {
	case errors.Is(err, io.EOF):
		return status.Error(codes.Aborted, "durable: the caller ended the stream without saying the envelopes are durable; nothing was stored")
	case err != nil:
		return err
	case m.GetDurable() == nil:
		return status.Error(codes.InvalidArgument, "durable: the second message of the stream must say the envelopes are durable; nothing was stored")
	}
	return nil
}

// Ping implements RelayService.
func (s *Service) Ping(ctx context.Context, _ *pocnetv1.PingRequest) (*pocnetv1.PingResponse, error) {
	if _, err := s.caller(ctx); err != nil {
		return nil, err
	}
	return &pocnetv1.PingResponse{State: s.cfg.State, Time: timestamppb.New(s.cfg.Now())}, nil
}
