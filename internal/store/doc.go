// Package store owns a node's Pebble database: the keyspace (keys.go), the
// commit pipeline that makes every state transition one atomic, synced batch,
// and the typed reads and writes of messages, indexes, the outbox and the
// event log.
//
// Every write goes through DB.Update, which runs in one commit goroutine,
// groups concurrent updates into a single batch and commits it with
// pebble.Sync before any caller is told it succeeded: a node acknowledges
// nothing it could lose in a crash. Many updates share one fsync (group
// commit), which is how durability and throughput coexist.
//
// This package must never hand out Pebble iterators or values that outlive a
// call, and must never be written to except through Update.
package store
