// Package peers is the client side of RelayService: one gRPC connection per
// peer node, dialed lazily over mutual TLS that accepts only that peer
// state's node identity, verified against that state's CA.
package peers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// MaxMessageSize bounds what a node sends or accepts in one call.
const MaxMessageSize = 64 << 20

// Config configures the transport.
type Config struct {
	Certificate *tls.Certificate
	Directory   *directory.Source
	Logger      *zap.Logger
}

// Transport delivers envelopes to peers; it implements relay.Transport.
type Transport struct {
	cfg   Config
	mu    sync.Mutex
	conns map[string]*conn
}

type conn struct {
	endpoint string
	cc       *grpc.ClientConn
	client   pocnetv1.RelayServiceClient
}

// New returns a Transport.
func New(cfg Config) *Transport {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Transport{cfg: cfg, conns: map[string]*conn{}}
}

func (t *Transport) client(state string) (pocnetv1.RelayServiceClient, error) {
	dir := t.cfg.Directory.Directory()
	eps := dir.Endpoints(state)
	if len(eps) == 0 {
		return nil, fmt.Errorf("peer %s has no endpoint in the directory", state)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.conns[state]; ok && c.endpoint == eps[0] {
		return c.client, nil
	} else if ok {
		c.cc.Close() // the directory moved the peer
	}
	tlsCfg := identity.ClientConfig(t.cfg.Certificate, t.cfg.Directory, identity.Node(dir.Federation(), state), nil)
	cc, err := grpc.NewClient(eps[0],
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		// The relay worker owns retry policy; gRPC's own reconnect backoff is
		// kept short so a returning peer is reachable as soon as it is retried.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second}, MinConnectTimeout: 5 * time.Second}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	if err != nil {
		return nil, fmt.Errorf("peer %s at %s: %w", state, eps[0], err)
	}
	c := &conn{endpoint: eps[0], cc: cc, client: pocnetv1.NewRelayServiceClient(cc)}
	t.conns[state] = c
	return c.client, nil
}

// Deliver implements relay.Transport.
func (t *Transport) Deliver(ctx context.Context, peer string, envs []*pocnetv1.Envelope) ([]*pocnetv1.DeliveryResult, error) {
	c, err := t.client(peer)
	if err != nil {
		return nil, err
	}
	resp, err := c.Deliver(ctx, &pocnetv1.DeliverRequest{Envelopes: envs})
	if err != nil {
		return nil, err
	}
	return resp.GetResults(), nil
}

// Ping calls peer's Ping, telling it this node is up.
func (t *Transport) Ping(ctx context.Context, peer string) error {
	c, err := t.client(peer)
	if err != nil {
		return err
	}
	_, err = c.Ping(ctx, &pocnetv1.PingRequest{})
	return err
}

// Close closes every connection.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for s, c := range t.conns {
		errs = append(errs, c.cc.Close())
		delete(t.conns, s)
	}
	return errors.Join(errs...)
}
