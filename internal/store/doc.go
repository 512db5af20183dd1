// Package store owns a node's Pebble database: the keyspace (keys.go), the
// commit pipeline that makes every state transition one atomic, synced batch,
// and the typed reads and writes of messages, indexes, the outbox and the
// event log.
//
// Every write goes through DB.Update, which runs in one commit goroutine,
// groups concurrent updates into a single batch and commits it with
// pebble.Sync before any caller is told it succeeded: a node acknowledges
// nothing it could lose in a crash. Many updates share one fsync (group
// commit), which is how durability and throughput coexist. Pebble's logs are
// zero-filled ahead of its writes (walfill.go), which makes each fsync cheaper.
// UpdateDeferred, for work no one waits on in a hurry, is applied at once
// but asks for no fsync of its own: the next update's sync covers it (or a
// sync made for it after MaxDefer), and only then is it answered.
// An update may ask to be told once it is applied, before it is durable
// (Tx.OnApplied, with the sync's outcome to follow): the relay sends new
// envelopes ahead that way, and the peer stores them only once durable here.
//
// Every value is sealed with the node's data key (package datakey) when its
// batch is built and opened when it is read, so the data directory holds
// only ciphertext; keys hold no message content (keys.go). The key ring can
// be replaced while the store runs (SetKeys), and Rewrap moves old values
// to the new key (rotate.go). The newest events and the records written
// lately are also kept in memory, in clear, for watchers (events.go):
// replaced as groups are applied, they never differ from what the store
// holds, and they never reach the disk.
//
// This package must never hand out Pebble iterators or values that outlive a
// call, must never be written to except through Update, and must never put
// a value in Pebble unsealed.
package store
