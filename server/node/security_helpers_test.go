package node_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// lastSeq returns the newest event seq of the node c talks to.
func lastSeq(t *testing.T, c pocnetv1.ContactServiceClient) uint64 {
	t.Helper()
	st, err := c.GetNodeStatus(ctx(t), &pocnetv1.GetNodeStatusRequest{})
	if err != nil {
		t.Fatalf("node status: %v", err)
	}
	return st.GetLastEventSeq()
}

// events reads c's event log from the start up to the newest event at the
// time of the call. c should be an admin client, which sees every event.
func events(t *testing.T, c pocnetv1.ContactServiceClient) []*pocnetv1.Event {
	t.Helper()
	last := lastSeq(t, c)
	if last == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := c.WatchEvents(wctx, &pocnetv1.WatchEventsRequest{})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	var out []*pocnetv1.Event
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch: after %d events: %v", len(out), err)
		}
		out = append(out, resp.GetEvent())
		if resp.GetEvent().GetSeq() >= last {
			return out
		}
	}
}

// firstEvent returns the first event c's operator is shown when watching
// from the start.
func firstEvent(t *testing.T, c pocnetv1.ContactServiceClient) *pocnetv1.Event {
	t.Helper()
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := c.WatchEvents(wctx, &pocnetv1.WatchEventsRequest{})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	return resp.GetEvent()
}

// received counts MESSAGE_RECEIVED events per message id.
func received(evs []*pocnetv1.Event) map[string]int {
	n := map[string]int{}
	for _, ev := range evs {
		if ev.GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED {
			n[ev.GetMessageId()]++
		}
	}
	return n
}

// all lists every message of the node c talks to, in both directions,
// archived included. c should be an admin client.
func all(t *testing.T, c pocnetv1.ContactServiceClient) []*pocnetv1.Message {
	t.Helper()
	var out []*pocnetv1.Message
	token := ""
	for {
		resp, err := c.ListMessages(ctx(t), &pocnetv1.ListMessagesRequest{PageSize: 500, PageToken: token, IncludeArchived: true})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		out = append(out, resp.GetMessages()...)
		if token = resp.GetNextPageToken(); token == "" {
			return out
		}
	}
}

// snapshot is what a node holds, to compare before and after a refused call.
type snapshot struct {
	seq      uint64
	messages int
}

func take(t *testing.T, admin pocnetv1.ContactServiceClient) snapshot {
	t.Helper()
	return snapshot{seq: lastSeq(t, admin), messages: len(all(t, admin))}
}

// unchanged fails the test if the node of admin stored anything since s.
func (s snapshot) unchanged(t *testing.T, what string, admin pocnetv1.ContactServiceClient) {
	t.Helper()
	if now := take(t, admin); now != s {
		t.Fatalf("%s: node changed from %+v to %+v; a refused request must store nothing", what, s, now)
	}
}

// dialTLS connects to state's node with an arbitrary TLS configuration.
func dialTLS(t *testing.T, f *testfed.Federation, state string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(f.Node(state).Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatalf("dial %s: %v", state, err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// dirOf returns the federation's directory, as every node loads it.
func dirOf(t *testing.T, f *testfed.Federation) *directory.Directory {
	t.Helper()
	d, err := directory.New(f.Certs.Directory)
	if err != nil {
		t.Fatalf("directory: %v", err)
	}
	return d
}

// sender builds envelopes as a state's node does: sealed to the
// recipient's published key and signed with the state's signing key.
type sender struct {
	s   *envelope.Signer
	sl  *envelope.Sealer
	dir *directory.Directory
}

// signer returns a sender with the keys of state's node.
func signer(t *testing.T, f *testfed.Federation, state string) *sender {
	t.Helper()
	s, err := envelope.NewSigner(f.Certs.State(state).SigningKey)
	if err != nil {
		t.Fatalf("signer of %s: %v", state, err)
	}
	return &sender{s: s, sl: envelope.NewSealer(f.Certs.ID, state, nil), dir: dirOf(t, f)}
}

// commHeader is the header exchange builds for a new communication from
// state from (role technical) to state to (role technical).
func commHeader(f *testfed.Federation, from, to string, c *pocnetv1.Communication, now time.Time) *pocnetv1.EnvelopeHeader {
	id := uuid.Must(uuid.NewV7()).String()
	return &pocnetv1.EnvelopeHeader{
		Id: id, Type: pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION, FederationId: f.Certs.ID,
		FromState: from, FromRole: "technical", ToState: to, ToRole: "technical",
		Kind: c.GetKind(), Urgency: c.GetUrgency(), CreatedAt: ts(now), ExpiresAt: ts(now.Add(24 * time.Hour)),
		ThreadId: id,
	}
}

func commPayload(c *pocnetv1.Communication) *pocnetv1.Payload {
	return &pocnetv1.Payload{Body: &pocnetv1.Payload_Communication{Communication: c}}
}

// build seals and signs an envelope with s.
func build(t *testing.T, s *sender, h *pocnetv1.EnvelopeHeader, p *pocnetv1.Payload) *pocnetv1.Envelope {
	t.Helper()
	key, ok := s.dir.SealingKey(h.GetToState())
	if !ok {
		t.Fatalf("no encryption key for %s", h.GetToState())
	}
	b, err := envelope.Build(s.s, s.sl, key, h, p)
	if err != nil {
		t.Fatalf("build envelope: %v", err)
	}
	return b.Envelope
}

// deliverOne delivers one envelope and returns its result.
func deliverOne(t *testing.T, c pocnetv1.RelayServiceClient, env *pocnetv1.Envelope) *pocnetv1.DeliveryResult {
	t.Helper()
	resp, err := c.Deliver(ctx(t), &pocnetv1.DeliverRequest{Envelopes: []*pocnetv1.Envelope{env}})
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if len(resp.GetResults()) != 1 {
		t.Fatalf("deliver: %d results for one envelope", len(resp.GetResults()))
	}
	return resp.GetResults()[0]
}

// recvErr returns the error that ends a stream.
func recvErr(stream interface {
	Recv() (*pocnetv1.WatchEventsResponse, error)
}) error {
	for {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
}
