package envelope

import (
	"bytes"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// SignReceipt signs a transport receipt with the recipient node's key.
func SignReceipt(s *Signer, body *pocnetv1.ReceiptBody) (*pocnetv1.Receipt, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("envelope: receipt: %w", err)
	}
	sig, err := s.sign(receiptDomain, b)
	if err != nil {
		return nil, err
	}
	return &pocnetv1.Receipt{Body: b, Signature: sig}, nil
}

// VerifyReceipt checks that r was signed by the node of recipientState and
// attests the envelope with the given id and digest sent by fromState. It
// returns the receipt's body.
func VerifyReceipt(r *pocnetv1.Receipt, bundle *identity.Bundle, now time.Time, fromState, recipientState, envelopeID string, digest []byte) (*pocnetv1.ReceiptBody, error) {
	if r == nil || len(r.GetBody()) == 0 {
		return nil, fmt.Errorf("%w: empty receipt", ErrMalformed)
	}
	leaf, signer, err := verifyChain(r.GetSignature(), bundle, now)
	if err != nil {
		return nil, err
	}
	if want := identity.Node(bundle.Federation(), recipientState); signer != want {
		return nil, fmt.Errorf("%w: receipt signed by %s, expected %s", ErrBadSignature, signer, want)
	}
	if err := verifySig(leaf, r.GetSignature().GetValue(), receiptDomain, r.GetBody()); err != nil {
		return nil, err
	}
	var body pocnetv1.ReceiptBody
	if err := proto.Unmarshal(r.GetBody(), &body); err != nil {
		return nil, fmt.Errorf("%w: receipt body: %v", ErrMalformed, err)
	}
	switch {
	case body.GetEnvelopeId() != envelopeID:
		return nil, fmt.Errorf("%w: receipt is for envelope %q, not %q", ErrMalformed, body.GetEnvelopeId(), envelopeID)
	case !bytes.Equal(body.GetEnvelopeDigest(), digest):
		return nil, fmt.Errorf("%w: receipt attests different envelope content", ErrMalformed)
	case body.GetRecipientState() != recipientState || body.GetFromState() != fromState:
		return nil, fmt.Errorf("%w: receipt names %s→%s, expected %s→%s", ErrMalformed, body.GetFromState(), body.GetRecipientState(), fromState, recipientState)
	case body.GetOutcome() != pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED && body.GetOutcome() != pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_REJECTED:
		return nil, fmt.Errorf("%w: receipt outcome %v", ErrMalformed, body.GetOutcome())
	}
	return &body, nil
}
