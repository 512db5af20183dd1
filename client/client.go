package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/pocnet/pocnet/internal/grpcconf"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Error is a failed call to the node. It says what failed and keeps the gRPC
// status, so status.Code(err) and status.FromError(err) work on it.
type Error struct {
	// Op says what failed, e.g. "send to XBB/technical".
	Op string
	// Err is the error the call returned, usually a gRPC status error.
	Err error
}

// Error returns "<op>: <status message> (<code>)".
func (e *Error) Error() string {
	if st, ok := status.FromError(e.Err); ok {
		return fmt.Sprintf("%s: %s (%s)", e.Op, st.Message(), st.Code())
	}
	return e.Op + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// GRPCStatus returns the status of the underlying error.
func (e *Error) GRPCStatus() *status.Status { return status.Convert(e.Err) }

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Err: err}
}

// Client is a connection to the state's own node, acting as one operator. It
// is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	api  pocnetv1.ContactServiceClient
	// audit serves the admin's audit calls (audit.go).
	audit pocnetv1.AuditServiceClient
	// dir serves the directory chain and its governance (directory.go).
	dir pocnetv1.DirectoryServiceClient
	id  identity.ID
	// retry bounds the retries of Send and Respond on codes.Unavailable.
	retry backoff
	// watch is the reconnection backoff of Watch.
	watch backoff
}

// backoff is capped exponential backoff with jitter.
type backoff struct {
	initial, max time.Duration
	// attempts bounds the number of tries; 0 means no bound.
	attempts int
}

// delay returns the wait before retry n (n >= 1), with up to 20% jitter so
// that many clients do not come back at the same instant.
func (b backoff) delay(n int) time.Duration {
	d := b.initial
	for i := 1; i < n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

var (
	defaultRetry = backoff{initial: 200 * time.Millisecond, max: 2 * time.Second, attempts: 5}
	defaultWatch = backoff{initial: 100 * time.Millisecond, max: 5 * time.Second}
)

func newClient(api pocnetv1.ContactServiceClient, id identity.ID) *Client {
	return &Client{api: api, id: id, retry: defaultRetry, watch: defaultWatch}
}

// Dial connects to the node of the operator's state. The operator's identity
// is read from its certificate; the server must present exactly that state's
// node identity, verified against the CA certificate(s) of cfg, and nothing
// else is trusted. Dial makes a first call (GetNodeStatus) bounded by ctx, so
// that a wrong address, certificate or CA fails here with a clear error
// rather than on the first real request.
func Dial(ctx context.Context, cfg Config, opts ...grpc.DialOption) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cert, leaf, err := cfg.keyPair()
	if err != nil {
		return nil, err
	}
	id, err := identity.FromCertificate(leaf)
	if err != nil {
		return nil, fmt.Errorf("operator certificate %s: %w", cfg.CertFile, err)
	}
	if id.Kind != identity.KindOperator {
		return nil, fmt.Errorf("operator certificate %s: %s is not an operator identity (want spiffe://<federation>/state/<ISO3>/operator/<role>/<name>)", cfg.CertFile, id)
	}
	cas, err := cfg.caCerts()
	if err != nil {
		return nil, err
	}
	// Only the operator's own state's CA can vouch for its node: the bundle
	// holds nothing else, so no other root is ever trusted.
	bundle := identity.NewBundle(id.Federation, map[string][]*x509.Certificate{id.State: cas})
	node := identity.Node(id.Federation, id.State)
	tlsCfg := identity.ClientConfig(&cert, identity.Static{B: bundle}, node, nil)
	verify := tlsCfg.VerifyConnection
	tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
		// Only ever refuses more than verify does: when the address leads to
		// some other node, say so plainly rather than report that its state
		// is unknown to a bundle that holds the operator's own state only.
		if len(cs.PeerCertificates) > 0 {
			if peer, err := identity.FromCertificate(cs.PeerCertificates[0]); err == nil && peer != node {
				return fmt.Errorf("%w: server is %s, expected %s", identity.ErrUntrusted, peer, node)
			}
		}
		return verify(cs)
	}
	// The caller's options come last and win.
	dialOpts := append(append(grpcconf.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg))), opts...)
	conn, err := grpc.NewClient(cfg.Address, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", cfg.Address, err)
	}
	c := newClient(pocnetv1.NewContactServiceClient(conn), id)
	c.conn = conn
	c.audit = pocnetv1.NewAuditServiceClient(conn)
	c.dir = pocnetv1.NewDirectoryServiceClient(conn)
	if _, err := c.api.GetNodeStatus(ctx, &pocnetv1.GetNodeStatusRequest{}); err != nil {
		conn.Close()
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return nil, wrap(fmt.Sprintf("cannot reach node %s at %s as %s", node, cfg.Address, id), err)
		default:
			return nil, wrap(fmt.Sprintf("node at %s refused %s", cfg.Address, id), err)
		}
	}
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Identity returns the operator identity the client acts as.
func (c *Client) Identity() identity.ID { return c.id }

// NewRequestID returns a fresh request id (a UUIDv7).
func NewRequestID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only if the system's random source does.
		return uuid.NewString()
	}
	return id.String()
}

// retryUnavailable calls fn until it succeeds, fails with a code other than
// Unavailable, the attempts run out or ctx ends. It is only used for calls
// made idempotent by a request id: the node deduplicates by it, so a retry
// after a lost answer returns the message first created.
func (c *Client) retryUnavailable(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = fn()
		if status.Code(err) != codes.Unavailable || (c.retry.attempts > 0 && attempt >= c.retry.attempts) {
			return err
		}
		t := time.NewTimer(c.retry.delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// Send sends a communication. If req.RequestId is empty it is first set to a
// fresh UUIDv7 (so the caller can read it afterwards); the call is retried on
// codes.Unavailable with backoff and the same request id, so retries never
// create a second message. It returns the stored message (STATUS_ACCEPTED).
func (c *Client) Send(ctx context.Context, req *pocnetv1.SendCommunicationRequest) (*pocnetv1.Message, error) {
	if req.GetRequestId() == "" {
		req.RequestId = NewRequestID()
	}
	var resp *pocnetv1.SendCommunicationResponse
	err := c.retryUnavailable(ctx, func() (err error) {
		resp, err = c.api.SendCommunication(ctx, req)
		return err
	})
	if err != nil {
		return nil, wrap(fmt.Sprintf("send to %s/%s (request id %s)", req.GetToState(), req.GetToRole(), req.RequestId), err)
	}
	return resp.GetMessage(), nil
}

// Get returns one message.
func (c *Client) Get(ctx context.Context, id string) (*pocnetv1.Message, error) {
	resp, err := c.api.GetMessage(ctx, &pocnetv1.GetMessageRequest{Id: id})
	if err != nil {
		return nil, wrap("get message "+id, err)
	}
	return resp.GetMessage(), nil
}

// List returns one page of messages, newest first.
func (c *Client) List(ctx context.Context, req *pocnetv1.ListMessagesRequest) (*pocnetv1.ListMessagesResponse, error) {
	resp, err := c.api.ListMessages(ctx, req)
	if err != nil {
		return nil, wrap("list messages", err)
	}
	return resp, nil
}

// listPageSize is the largest page the node serves.
const listPageSize = 500

// ListAll returns every message in direction (DIRECTION_UNSPECIFIED for
// both), newest first, following page tokens.
func (c *Client) ListAll(ctx context.Context, direction pocnetv1.Direction, includeArchived bool) ([]*pocnetv1.Message, error) {
	req := &pocnetv1.ListMessagesRequest{Direction: direction, PageSize: listPageSize, IncludeArchived: includeArchived}
	var all []*pocnetv1.Message
	for {
		resp, err := c.List(ctx, req)
		if err != nil {
			return nil, err
		}
		all = append(all, resp.GetMessages()...)
		if resp.GetNextPageToken() == "" {
			return all, nil
		}
		if resp.GetNextPageToken() == req.PageToken {
			return nil, fmt.Errorf("list messages: the node returned the same page token %q twice", req.PageToken)
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// Thread returns the thread of any of its messages, oldest first.
func (c *Client) Thread(ctx context.Context, id string) ([]*pocnetv1.Message, error) {
	resp, err := c.api.GetThread(ctx, &pocnetv1.GetThreadRequest{Id: id})
	if err != nil {
		return nil, wrap("get thread of "+id, err)
	}
	return resp.GetMessages(), nil
}

// Acknowledge acknowledges an inbound communication, with an optional note.
// It returns the acknowledgement sent.
func (c *Client) Acknowledge(ctx context.Context, id, note string) (*pocnetv1.Message, error) {
	resp, err := c.api.Acknowledge(ctx, &pocnetv1.AcknowledgeRequest{Id: id, Note: note})
	if err != nil {
		return nil, wrap("acknowledge "+id, err)
	}
	return resp.GetAcknowledgement(), nil
}

// Respond answers an inbound communication with a communication of its own.
// An empty requestID is replaced by a fresh UUIDv7; like Send, the call is
// retried on codes.Unavailable with the same request id.
func (c *Client) Respond(ctx context.Context, id string, comm *pocnetv1.Communication, requestID string) (*pocnetv1.Message, error) {
	if requestID == "" {
		requestID = NewRequestID()
	}
	req := &pocnetv1.RespondRequest{Id: id, RequestId: requestID, Communication: comm}
	var resp *pocnetv1.RespondResponse
	err := c.retryUnavailable(ctx, func() (err error) {
		resp, err = c.api.Respond(ctx, req)
		return err
	})
	if err != nil {
		return nil, wrap(fmt.Sprintf("respond to %s (request id %s)", id, requestID), err)
	}
	return resp.GetResponse(), nil
}

// Decline declines an inbound communication, with an optional reason. It
// returns the decline sent.
func (c *Client) Decline(ctx context.Context, id, reason string) (*pocnetv1.Message, error) {
	resp, err := c.api.Decline(ctx, &pocnetv1.DeclineRequest{Id: id, Reason: reason})
	if err != nil {
		return nil, wrap("decline "+id, err)
	}
	return resp.GetDecline(), nil
}

// SetLocalState marks an inbound message new, read or archived. The local
// state never leaves the node.
func (c *Client) SetLocalState(ctx context.Context, id string, s pocnetv1.LocalState) (*pocnetv1.Message, error) {
	resp, err := c.api.SetLocalState(ctx, &pocnetv1.SetLocalStateRequest{Id: id, LocalState: s})
	if err != nil {
		return nil, wrap(fmt.Sprintf("mark %s %s", id, LocalStateName(s)), err)
	}
	return resp.GetMessage(), nil
}

// Directory returns the federation directory the node uses.
func (c *Client) Directory(ctx context.Context) (*pocnetv1.Directory, error) {
	resp, err := c.api.GetDirectory(ctx, &pocnetv1.GetDirectoryRequest{})
	if err != nil {
		return nil, wrap("get directory", err)
	}
	return resp.GetDirectory(), nil
}

// Policy returns what state publishes about its PoCs.
func (c *Client) Policy(ctx context.Context, state string) (*pocnetv1.GetPolicyResponse, error) {
	resp, err := c.api.GetPolicy(ctx, &pocnetv1.GetPolicyRequest{State: state})
	if err != nil {
		return nil, wrap("get policy of "+state, err)
	}
	return resp, nil
}

// Status describes the node, the caller and delivery to each peer.
func (c *Client) Status(ctx context.Context) (*pocnetv1.GetNodeStatusResponse, error) {
	resp, err := c.api.GetNodeStatus(ctx, &pocnetv1.GetNodeStatusRequest{})
	if err != nil {
		return nil, wrap("get node status", err)
	}
	return resp, nil
}

// errStreamEnded stands for a watch stream the node closed without error,
// e.g. while shutting down; Watch reconnects as for any break.
var errStreamEnded = errors.New("the node closed the event stream")
