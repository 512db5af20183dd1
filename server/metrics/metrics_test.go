package metrics

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func TestResult(t *testing.T) {
	entry := func(o pocnetv1.DeliveryOutcome) *pocnetv1.DeliveryResult {
		b, err := proto.Marshal(&pocnetv1.ReceiptEntry{EnvelopeId: "x", Outcome: o})
		if err != nil {
			t.Fatal(err)
		}
		return &pocnetv1.DeliveryResult{Result: &pocnetv1.DeliveryResult_Receipt{Receipt: &pocnetv1.Receipt{Entry: b}}}
	}
	refusal := func(c pocnetv1.RefusalCode) *pocnetv1.DeliveryResult {
		return &pocnetv1.DeliveryResult{Result: &pocnetv1.DeliveryResult_Refusal{Refusal: &pocnetv1.DeliveryRefusal{Code: c}}}
	}
	for _, c := range []struct {
		r    *pocnetv1.DeliveryResult
		want string
	}{
		{entry(pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED), "delivered"},
		{entry(pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_REJECTED), "rejected"},
		{refusal(pocnetv1.RefusalCode_REFUSAL_CODE_BAD_SIGNATURE), "bad_signature"},
		{refusal(pocnetv1.RefusalCode_REFUSAL_CODE_UNAVAILABLE), "unavailable"},
		{&pocnetv1.DeliveryResult{Result: &pocnetv1.DeliveryResult_Receipt{Receipt: &pocnetv1.Receipt{Entry: []byte{0xff}}}}, "malformed"},
	} {
		if got := Result(c.r); got != c.want {
			t.Errorf("Result(%v) = %q, want %q", c.r, got, c.want)
		}
	}
}

// A nil *Metrics records nothing and does not panic: a node without
// metrics.listen calls the same hooks.
func TestNilRecordsNothing(t *testing.T) {
	var m *Metrics
	m.Synced(time.Millisecond, 3)
	m.HandshakeRefused()
	m.Sent("XBB", nil, nil)
	m.Received("XBB", nil)
}
