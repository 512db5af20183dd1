// Package transcript owns the evidence of a thread: building a transcript
// from a node's records (every envelope as signed, its payload key and its
// receipt), verifying a transcript offline against the directory alone, and
// verifying disclosure bundles that carry the consent of both states of the
// thread.
//
// Verification trusts nothing in a transcript but what is signed: envelope
// signatures say who said what, each payload authenticates under its key
// and header, receipts say what was delivered when, and the in-reply-to
// chain ties the thread together. It needs no private key and no node. This
// package never reads the store itself, never signs, and never decides who
// may export: the exchange does that under the state's handling rules.
package transcript
