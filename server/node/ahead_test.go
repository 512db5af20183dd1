package node_test

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func envelopesStep(envs ...*pocnetv1.Envelope) *pocnetv1.DeliverAheadRequest {
	return &pocnetv1.DeliverAheadRequest{Step: &pocnetv1.DeliverAheadRequest_Envelopes{Envelopes: &pocnetv1.DeliverRequest{Envelopes: envs}}}
}

var durableStep = &pocnetv1.DeliverAheadRequest{Step: &pocnetv1.DeliverAheadRequest_Durable{Durable: &pocnetv1.Durable{}}}

// notStored checks that XBB holds no message with env's id.
func notStored(t *testing.T, adminB pocnetv1.ContactServiceClient, env *pocnetv1.Envelope) {
	t.Helper()
	h, err := envelope.DecodeHeader(env)
	if err != nil {
		t.Fatal(err)
	}
	_, err = adminB.GetMessage(ctx(t), &pocnetv1.GetMessageRequest{Id: h.GetId()})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetMessage of an envelope sent ahead and abandoned = %v, want NotFound: nothing may be stored", err)
	}
}

// TestDeliverAhead: the recipient stores envelopes sent ahead only once the
// sender says they are durable on its side. A call that ends any other way
// stores nothing, and says why.
func TestDeliverAhead(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	f := testfed.Start(t, testfed.Options{LogCore: core})
	relay := f.Relay("XAA", "XBB")
	adminB := f.Contact("XBB", "admin")
	s := signer(t, f, "XAA")
	newEnv := func(subject string) *pocnetv1.Envelope {
		c := rfi(subject)
		return build(t, s, commHeader(f, "XAA", "XBB", c, time.Now()), commPayload(c))
	}

	t.Run("stored once durable", func(t *testing.T) {
		env := newEnv("Sent ahead")
		st, err := relay.DeliverAhead(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(envelopesStep(env)); err != nil {
			t.Fatal(err)
		}
		if err := st.Send(durableStep); err != nil {
			t.Fatal(err)
		}
		resp, err := st.CloseAndRecv()
		if err != nil {
			t.Fatalf("DeliverAhead: %v", err)
		}
		if len(resp.GetResults()) != 1 {
			t.Fatalf("%d results for one envelope", len(resp.GetResults()))
		}
		wantReceipt(t, f, resp.GetResults()[0], env, "XAA", "XBB", pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED)
		if _, err := adminB.GetMessage(ctx(t), &pocnetv1.GetMessageRequest{Id: resp.GetResults()[0].GetEnvelopeId()}); err != nil {
			t.Fatalf("message delivered ahead not in XBB's store: %v", err)
		}
	})

	for _, c := range []struct {
		name  string
		steps func(env *pocnetv1.Envelope) []*pocnetv1.DeliverAheadRequest
		code  codes.Code
		msg   string
		// logged: the node checked the envelopes and then gave up
		// waiting, and logs it.
		logged bool
	}{
		{"ended without the word", func(env *pocnetv1.Envelope) []*pocnetv1.DeliverAheadRequest {
			return []*pocnetv1.DeliverAheadRequest{envelopesStep(env)}
		}, codes.Aborted, "without saying the envelopes are durable", true},
		{"envelopes twice", func(env *pocnetv1.Envelope) []*pocnetv1.DeliverAheadRequest {
			return []*pocnetv1.DeliverAheadRequest{envelopesStep(env), envelopesStep(env)}
		}, codes.InvalidArgument, "second message of the stream must say the envelopes are durable", true},
		{"the word first", func(*pocnetv1.Envelope) []*pocnetv1.DeliverAheadRequest {
			return []*pocnetv1.DeliverAheadRequest{durableStep}
		}, codes.InvalidArgument, "first message of the stream must carry the envelopes", false},
		{"nothing", func(*pocnetv1.Envelope) []*pocnetv1.DeliverAheadRequest { return nil }, codes.InvalidArgument, "ended before its first message", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := newEnv(c.name)
			before := logs.FilterMessageSnippet("sent ahead ended").Len()
			st, err := relay.DeliverAhead(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range c.steps(env) {
				if err := st.Send(m); err != nil {
					break // the node ended the call: its status follows
				}
			}
			_, err = st.CloseAndRecv()
			if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.msg) {
				t.Fatalf("DeliverAhead = %v, want %v saying %q", err, c.code, c.msg)
			}
			// The call is over: whatever it stored is durable by now.
			notStored(t, adminB, env)
			if n := logs.FilterMessageSnippet("sent ahead ended").Len() - before; c.logged != (n == 1) {
				t.Fatalf("%d log entries about the call ended before the word, want logged=%v", n, c.logged)
			}
		})
	}

	t.Run("refusal only once durable", func(t *testing.T) {
		// An envelope refused at once still waits for the word: the sender
		// acts on no result of a call it may abandon.
		env := newEnv("Refused")
		env.Signature.Value[0] ^= 1
		st, err := relay.DeliverAhead(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(envelopesStep(env)); err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		resp := &pocnetv1.DeliverAheadResponse{}
		go func() { got <- st.RecvMsg(resp) }()
		select {
		case err := <-got:
			t.Fatalf("the node answered (%v) before the word that the envelopes are durable", err)
		case <-time.After(100 * time.Millisecond):
		}
		if err := st.Send(durableStep); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatalf("DeliverAhead: %v", err)
		}
		if r := resp.GetResults(); len(r) != 1 || r[0].GetRefusal().GetCode() != pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE {
			t.Fatalf("results %v, want one BAD_SIGNATURE refusal", r)
		}
	})
}
