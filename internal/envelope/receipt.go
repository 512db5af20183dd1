package envelope

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// SignReceipts makes one receipt per entry with a single signature: the
// recipient's node signs the root of the Merkle tree over the entries, and
// each receipt carries its entry's inclusion proof. One signature per
// delivery instead of one per envelope; each receipt still proves, alone,
// what happened to its envelope, and reveals nothing about the others but
// their number.
func SignReceipts(s *Signer, fromState, recipientState string, at time.Time, entries []*pocnetv1.ReceiptEntry) ([]*pocnetv1.Receipt, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	mo := proto.MarshalOptions{Deterministic: true}
	leaves := make([][]byte, len(entries))
	hashes := make([][]byte, len(entries))
	for i, e := range entries {
		b, err := mo.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("envelope: receipt entry: %w", err)
		}
		leaves[i], hashes[i] = b, leafHash(b)
	}
	root, paths := treeRoot(hashes)
	body, err := mo.Marshal(&pocnetv1.ReceiptBody{
		FromState: fromState, RecipientState: recipientState, ReceivedAt: timestamppb.New(at),
		TreeRoot: root, TreeSize: uint32(len(entries)),
	})
	if err != nil {
		return nil, fmt.Errorf("envelope: receipt: %w", err)
	}
	sig := s.sign(receiptDomain, body)
	out := make([]*pocnetv1.Receipt, len(entries))
	for i := range entries {
		out[i] = &pocnetv1.Receipt{Body: body, Signature: sig, Entry: leaves[i], LeafIndex: uint32(i), InclusionPath: paths[i]}
	}
	return out, nil
}

// Receipted is what a verified receipt attests.
type Receipted struct {
	Body  *pocnetv1.ReceiptBody
	Entry *pocnetv1.ReceiptEntry
}

// ReceiptVerifier verifies receipts, checking each distinct signed body
// once: the receipts of one delivery share a body and a signature. It is
// safe for concurrent use.
type ReceiptVerifier struct {
	keys Keys
	mu   sync.Mutex
	seen map[string]*bodyResult
}

type bodyResult struct {
	once sync.Once
	body *pocnetv1.ReceiptBody
	err  error
}

// NewReceiptVerifier returns a verifier against keys.
func NewReceiptVerifier(keys Keys) *ReceiptVerifier {
	return &ReceiptVerifier{keys: keys, seen: map[string]*bodyResult{}}
}

// Verify checks that r was signed by a key of recipientState and attests
// the envelope with the given id and digest sent by fromState.
func (v *ReceiptVerifier) Verify(r *pocnetv1.Receipt, fromState, recipientState, envelopeID string, digest []byte) (*Receipted, error) {
	if r == nil || len(r.GetBody()) == 0 || len(r.GetEntry()) == 0 {
		return nil, fmt.Errorf("%w: empty receipt", ErrMalformed)
	}
	if err := checkSignatureForm(r.GetSignature()); err != nil {
		return nil, err
	}
	// The memo is keyed by everything the check depends on: a receipt
	// reusing a verified body and signature under another key id or for
	// another recipient is checked afresh.
	k := string(signingInput("", r.GetSignature().GetValue(), []byte(r.GetSignature().GetKeyId()), []byte(recipientState), r.GetBody()))
	v.mu.Lock()
	br := v.seen[k]
	if br == nil {
		br = &bodyResult{}
		v.seen[k] = br
	}
	v.mu.Unlock()
	br.once.Do(func() { br.body, br.err = verifyBody(v.keys, r, recipientState) })
	if br.err != nil {
		return nil, br.err
	}
	body := br.body
	if body.GetRecipientState() != recipientState || body.GetFromState() != fromState {
		return nil, fmt.Errorf("%w: receipt names %s→%s, expected %s→%s", ErrMalformed, body.GetFromState(), body.GetRecipientState(), fromState, recipientState)
	}
	if err := verifyInclusion(r.GetEntry(), uint64(r.GetLeafIndex()), uint64(body.GetTreeSize()), r.GetInclusionPath(), body.GetTreeRoot()); err != nil {
		return nil, fmt.Errorf("%w: receipt for %s: %v", ErrBadSignature, envelopeID, err)
	}
	var e pocnetv1.ReceiptEntry
	if err := proto.Unmarshal(r.GetEntry(), &e); err != nil {
		return nil, fmt.Errorf("%w: receipt entry: %v", ErrMalformed, err)
	}
	switch {
	case e.GetEnvelopeId() != envelopeID:
		return nil, fmt.Errorf("%w: receipt is for envelope %q, not %q", ErrMalformed, e.GetEnvelopeId(), envelopeID)
	case !bytes.Equal(e.GetEnvelopeDigest(), digest):
		return nil, fmt.Errorf("%w: receipt attests different envelope content", ErrMalformed)
	case e.GetOutcome() != pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_DELIVERED && e.GetOutcome() != pocnetv1.DeliveryOutcome_DELIVERY_OUTCOME_REJECTED:
		return nil, fmt.Errorf("%w: receipt outcome %v", ErrMalformed, e.GetOutcome())
	}
	return &Receipted{Body: body, Entry: &e}, nil
}

// VerifyReceipt verifies one receipt (see ReceiptVerifier.Verify).
func VerifyReceipt(r *pocnetv1.Receipt, keys Keys, fromState, recipientState, envelopeID string, digest []byte) (*Receipted, error) {
	return NewReceiptVerifier(keys).Verify(r, fromState, recipientState, envelopeID, digest)
}

func verifyBody(keys Keys, r *pocnetv1.Receipt, recipientState string) (*pocnetv1.ReceiptBody, error) {
	var body pocnetv1.ReceiptBody
	if err := proto.Unmarshal(r.GetBody(), &body); err != nil {
		return nil, fmt.Errorf("%w: receipt body: %v", ErrMalformed, err)
	}
	if err := body.GetReceivedAt().CheckValid(); err != nil {
		return nil, fmt.Errorf("%w: receipt received_at: %v", ErrMalformed, err)
	}
	pub, err := keys.SigningKeyValid(recipientState, r.GetSignature().GetKeyId(), body.GetReceivedAt().AsTime())
	if err != nil {
		return nil, fmt.Errorf("%w: receipt: %v", ErrBadSignature, err)
	}
	if err := verifySig(pub, r.GetSignature(), receiptDomain, r.GetBody()); err != nil {
		return nil, err
	}
	return &body, nil
}
