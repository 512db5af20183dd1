// Package relay owns the delivery of outbound envelopes to peer nodes: one
// queue and one delivery loop per peer, urgent before priority before
// routine, batches of envelopes per call, capped exponential backoff with
// jitter while a peer fails, an immediate retry once the peer is heard from
// again, and expiry of what cannot be delivered in time.
//
// The durable outbox lives in the store; the worker holds only ids and
// scheduling state, and is rebuilt from the store at start. It must never
// decide an envelope's fate itself: results go back through the Handler,
// which commits them. One slow or dead peer must never delay another.
//
// An item may be queued as soon as its commit is applied, before it is
// durable (Item.Durable): it is sent at once, and the Transport sees to it
// that the peer stores it only once durable here. An item whose commit
// fails is dropped, never delivered; the commit's failure stops the store,
// and what is on disk after all is queued again when the node restarts.
package relay
