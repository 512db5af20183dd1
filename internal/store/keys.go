package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/google/uuid"
)

// The keyspace, in one place. Every key starts with a one-byte namespace.
// Integers are fixed-width big-endian so that byte order is numeric order;
// ids are the 16 raw bytes of a UUID (UUIDv7 ids sort by creation time).
//
//	'_' "index-key"                          → the 32-byte key of the request index (below),
//	                                           made once when the store is created
//	'm' id                                   → MessageRecord (every message sent or received),
//	                                           without its envelope and without the communication,
//	                                           which is in the envelope's payload: status changes
//	                                           rewrite only this small record
//	'n' id                                   → Envelope, exactly as signed; written once, without
//	                                           the encapsulated key it travels with
//	'c' sealing context id (32 bytes)        → the HPKE encapsulated key of a context this node
//	                                           sealed outbound envelopes with, written with the
//	                                           first of them: the relay adds it back to every
//	                                           envelope of that context it delivers
//	'x' dir role 0x00 at id                  → empty: list index of dir (1 = outbound, 2 = inbound)
//	                                           for role; role "" indexes all roles (admin view).
//	                                           at = acceptance (outbound) or reception (inbound) time,
//	                                           unix nanoseconds
//	't' thread at id                         → empty: messages of a thread in order of arrival
//	'r' HMAC-SHA-256(index key, scope req)   → id: a client's request id, scoped by its identity,
//	                                           so that its retries never create a second message
//	'o' rank at id                           → OutboxEntry: envelopes awaiting delivery, urgent
//	                                           (rank 0) before priority (1) before routine (2), then
//	                                           oldest first. Next-attempt times live in memory: a
//	                                           restarted node retries everything at once.
//	'e' seq                                  → Event: the event log, seq starting at 1, resumable
//	'a' seq                                  → AuditEntry: the hash-chained audit log (package
//	                                           audit), seq starting at 1, written in the batch of
//	                                           the transition each record describes; append-only
//	'g', 'p', 'k'                            → the signed directory chain, pending proposals and
//	                                           the node's own rotated private keys (directory.go)
//
// Encryption at rest. Every value except the empty values of the two index
// namespaces ('x', 't') is sealed with the node's current data key
// (internal/datakey), with the value's own key as additional data, so that
// a value copied under another key does not open. The index values are
// empty and must stay so (addToBatch refuses anything else): sealing them
// would protect nothing and add five seals per message.
//
// Keys are not sealed, so they hold nothing a disk thief may not learn:
// message and thread ids, times, urgency ranks, event seqs and PoC roles
// (roles are public to every participant in the directory). The one key
// that used to hold client content, the request id, is now a keyed hash:
// plain SHA-256 of a guessable request id ("incident-42") would let anyone
// holding the disk confirm it. The HMAC key is random, made when the store
// is created and stored sealed under '_' "index-key" like any other value.
// It is deliberately not derived from the data key: a data key rotation
// would then change every 'r' key and a client retrying across a rotation
// would create a second message.
//
// Roles never contain 0x00 (validated at the edge).
const (
	nsMeta      = '_'
	nsMessage   = 'm'
	nsEnvelope  = 'n'
	nsContext   = 'c'
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
	indexKeyLen = 32
)

// indexKeyKey is where the request index's HMAC key is kept.
var indexKeyKey = []byte{nsMeta, 'i', 'n', 'd', 'e', 'x', '-', 'k', 'e', 'y'}

// sealed reports whether the value under key is sealed: every value but
// the empty ones of the index namespaces.
func sealed(key []byte) bool {
	return len(key) == 0 || (key[0] != nsList && key[0] != nsThread)
}

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

func contextKey(id []byte) []byte {
	return append([]byte{nsContext}, id...)
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

// requestKey hashes scope and request id with the store's index key. The
// scope is length-prefixed so that no two (scope, request id) pairs hash
// the same input, whatever bytes they hold.
func requestKey(indexKey []byte, scope, requestID string) []byte {
	m := hmac.New(sha256.New, indexKey)
	m.Write(binary.AppendUvarint(nil, uint64(len(scope))))
	m.Write([]byte(scope))
	m.Write([]byte(requestID))
	return m.Sum([]byte{nsRequest})
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

// keyName renders a key for errors: its namespace, then the rest in hex.
// Keys hold nothing secret (see above), so they may appear in logs.
func keyName(k []byte) string {
	if len(k) == 0 {
		return "(empty)"
	}
	return fmt.Sprintf("%c/%x", k[0], k[1:])
}
