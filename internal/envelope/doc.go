// Package envelope owns the wire form of what travels between nodes:
// building envelopes from a header and a payload, signing them over their
// exact bytes (alone, or several to one state together under one signature
// over a Merkle tree of their signing inputs: batch.go), verifying a
// received envelope against the keys its state publishes, and signing and
// verifying transport receipts.
//
// It must never sign or verify re-serialized structures: signatures always
// cover the bytes as transmitted, behind a domain-separation prefix so that a
// signature made for one purpose can never be replayed for another.
package envelope
