package contactsvc

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/relay"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func timestampOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func peerStatus(p relay.PeerStatus) *pocnetv1.PeerStatus {
	return &pocnetv1.PeerStatus{
		State: p.Peer, Pending: int64(p.Pending), Reachable: p.Reachable, LastError: p.LastError,
		LastContact: timestampOrNil(p.LastContact), NextAttempt: timestampOrNil(p.NextAttempt),
	}
}
