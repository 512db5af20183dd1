package store

import (
	"encoding/binary"
	"fmt"

	"github.com/google/uuid"
)

// The keyspace, in one place. Every key starts with a one-byte namespace.
// Integers are fixed-width big-endian so that byte order is numeric order;
// ids are the 16 raw bytes of a UUID (UUIDv7 ids sort by creation time).
//
//	'm' id                                   → MessageRecord (every message sent or received),
//	                                           without its envelope and without the communication,
//	                                           which is in the envelope's payload: status changes
//	                                           rewrite only this small record
//	'n' id                                   → Envelope, exactly as signed; written once
//	'x' dir role 0x00 at id                  → empty: list index of dir (1 = outbound, 2 = inbound)
//	                                           for role; role "" indexes all roles (admin view).
//	                                           at = acceptance (outbound) or reception (inbound) time,
//	                                           unix nanoseconds
//	't' thread at id                         → empty: messages of a thread in order of arrival
//	'r' scope 0x00 requestID                 → id: a client's request id, scoped by its identity,
//	                                           so that its retries never create a second message
//	'o' rank at id                           → OutboxEntry: envelopes awaiting delivery, urgent
//	                                           (rank 0) before priority (1) before routine (2), then
//	                                           oldest first. Next-attempt times live in memory: a
//	                                           restarted node retries everything at once.
//	'e' seq                                  → Event: the event log, seq starting at 1, resumable
//	'a' seq                                  → AuditEntry: the hash-chained audit log (package
//	                                           audit), seq starting at 1, written in the batch of
//	                                           the transition each record describes; append-only
//
// Roles, scopes and request ids never contain 0x00 (validated at the edge).
const (
	nsMessage   = 'm'
	nsEnvelope  = 'n'
	nsList      = 'x'
	nsThread    = 't'
	nsRequest   = 'r'
	nsOutbox    = 'o'
	nsEvent     = 'e'
	nsAudit     = 'a'
	idLen       = 16
	timeLen     = 8
	seqLen      = 8
	listSuffix  = timeLen + idLen
	maxScopeLen = 512
)

func parseID(id string) ([idLen]byte, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return [idLen]byte{}, fmt.Errorf("store: id %q: %w", id, err)
	}
	return u, nil
}

func formatID(b []byte) string {
	var u uuid.UUID
	copy(u[:], b)
	return u.String()
}

func messageKey(id [idLen]byte) []byte {
	return append([]byte{nsMessage}, id[:]...)
}

func envelopeKey(id [idLen]byte) []byte {
	return append([]byte{nsEnvelope}, id[:]...)
}

func listPrefix(dir byte, role string) []byte {
	k := make([]byte, 0, 2+len(role)+1+listSuffix)
	k = append(k, nsList, dir)
	k = append(k, role...)
	return append(k, 0)
}

func listKey(dir byte, role string, at int64, id [idLen]byte) []byte {
	k := listPrefix(dir, role)
	k = binary.BigEndian.AppendUint64(k, uint64(at))
	return append(k, id[:]...)
}

func threadPrefix(thread [idLen]byte) []byte {
	return append([]byte{nsThread}, thread[:]...)
}

func threadKey(thread [idLen]byte, at int64, id [idLen]byte) []byte {
	k := threadPrefix(thread)
	k = binary.BigEndian.AppendUint64(k, uint64(at))
	return append(k, id[:]...)
}

func requestKey(scope, requestID string) []byte {
	k := make([]byte, 0, 2+len(scope)+len(requestID))
	k = append(k, nsRequest)
	k = append(k, scope...)
	k = append(k, 0)
	return append(k, requestID...)
}

func outboxKey(rank byte, at int64, id [idLen]byte) []byte {
	k := make([]byte, 0, 2+timeLen+idLen)
	k = append(k, nsOutbox, rank)
	k = binary.BigEndian.AppendUint64(k, uint64(at))
	return append(k, id[:]...)
}

func eventKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{nsEvent}, seq)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
