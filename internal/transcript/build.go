package transcript

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/envelope"
	storev1 "github.com/pocnet/pocnet/proto/pocnet/store/v1"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Build makes the transcript of one thread from a node's records of it, as
// exported by the node of state exportedBy at time at. Entries are put in
// one canonical order that depends only on the envelopes: every envelope
// after the one it answers, otherwise by creation time and id. Both states
// hold the same envelopes of a thread, so both build the same entries in
// the same order. Build checks the shape it needs, not signatures: Verify
// does that.
func Build(records []*storev1.MessageRecord, exportedBy string, at time.Time) (*pocnetv1.Transcript, error) {
	if len(records) == 0 {
		return nil, errors.New("transcript: no records")
	}
	type node struct {
		h   *pocnetv1.EnvelopeHeader
		rec *storev1.MessageRecord
	}
	nodes := make([]node, 0, len(records))
	seen := map[string]bool{}
	var root *node // a copy: nodes is sorted below
	for _, r := range records {
		if r.GetEnvelope() == nil {
			return nil, fmt.Errorf("transcript: message %s: no envelope stored", r.GetView().GetId())
		}
		h, err := envelope.DecodeHeader(r.GetEnvelope())
		if err != nil {
			return nil, fmt.Errorf("transcript: message %s: %w", r.GetView().GetId(), err)
		}
		if len(r.GetPayloadKey()) == 0 {
			return nil, fmt.Errorf("transcript: message %s: no payload key stored", h.GetId())
		}
		if seen[h.GetId()] {
			continue
		}
		seen[h.GetId()] = true
		nodes = append(nodes, node{h: h, rec: r})
	}
	for i := range nodes {
		if h := nodes[i].h; h.GetType() == pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION && h.GetId() == h.GetThreadId() {
			if root != nil {
				return nil, fmt.Errorf("transcript: two communications open the thread: %s and %s", root.h.GetId(), h.GetId())
			}
			r := nodes[i]
			root = &r
		}
	}
	if root == nil {
		return nil, errors.New("transcript: the records lack the communication that opens the thread")
	}
	slices.SortFunc(nodes, func(a, b node) int {
		if c := a.h.GetCreatedAt().AsTime().Compare(b.h.GetCreatedAt().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(a.h.GetId(), b.h.GetId())
	})
	t := &pocnetv1.Transcript{
		FederationId: root.h.GetFederationId(), ThreadId: root.h.GetId(),
		ExportedByState: exportedBy, ExportedAt: timestamppb.New(at),
	}
	placed := map[string]bool{}
	waiting := map[string][]node{}
	var place func(n node)
	place = func(n node) {
		placed[n.h.GetId()] = true
		t.Entries = append(t.Entries, &pocnetv1.TranscriptEntry{
			Envelope:   proto.Clone(n.rec.GetEnvelope()).(*pocnetv1.Envelope),
			PayloadKey: slices.Clone(n.rec.GetPayloadKey()),
			Receipt:    cloneReceipt(n.rec.GetView().GetReceipt()),
		})
		kids := waiting[n.h.GetId()]
		delete(waiting, n.h.GetId())
		for _, k := range kids {
			place(k)
		}
	}
	place(*root)
	for _, n := range nodes {
		switch {
		case placed[n.h.GetId()]:
		case placed[n.h.GetInReplyTo()]:
			place(n)
		default:
			waiting[n.h.GetInReplyTo()] = append(waiting[n.h.GetInReplyTo()], n)
		}
	}
	if len(waiting) > 0 {
		parents := slices.Sorted(maps.Keys(waiting))
		return nil, fmt.Errorf("transcript: message %s answers %s, which is not in the thread's records", waiting[parents[0]][0].h.GetId(), parents[0])
	}
	return t, nil
}

func cloneReceipt(r *pocnetv1.Receipt) *pocnetv1.Receipt {
	if r == nil {
		return nil
	}
	return proto.Clone(r).(*pocnetv1.Receipt)
}
