// Package audit owns the rule of a node's tamper-evident audit log: how
// records are chained, how a chain is verified, and the file format of an
// exported log.
//
// # The chain
//
// Each record is a serialized pocnet.v1.AuditRecord, kept as the exact bytes
// that were hashed (pocnet.v1.AuditEntry). Record n (seq n, from 1, without
// gaps) carries the hash of record n-1 in its prev_hash field, and
//
//	hash_n = SHA-256("pocnet/v1 audit" || prev_hash_n || record_n)
//
// with prev_hash_1 = 32 zero bytes (the genesis). The prefix separates this
// use of SHA-256 from every other in pocnet; prev_hash has a fixed length,
// so the concatenation is unambiguous. A verifier decodes a record to read
// its seq and prev_hash but never re-serializes it: it hashes the bytes it
// was given.
//
// Removing, altering or reordering a record breaks the chain at that point,
// and Verify says where and what. Records removed from the end, or a chain
// rewritten from some point on with fresh hashes, leave an intact chain:
// they show only against a head (seq and hash) known from elsewhere, such as
// the node's current head or a head noted earlier (an Anchor).
//
// Only the store's single commit goroutine seals records (Seal), so that the
// chain order is the commit order and a record is durable exactly when the
// transition it describes is.
//
// This package must never hash re-serialized records, never trust a hash it
// did not recompute, and never import the store or gRPC.
package audit
