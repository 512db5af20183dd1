// Package client is the Go library that a state's CERT tooling and the pocctl
// command use to talk to the state's own pocnet node over mutual TLS.
//
// It owns: reading an operator's configuration (node address, operator
// certificate and key, the state's own CA), dialing the node while insisting
// that the server is exactly that state's node identity, verified against the
// state's own CA, and a thin, retry-aware wrapper around the ContactService
// API: sending and answering communications with request ids that make
// retries safe, listing and reading messages, and watching the node's event
// log across disconnections without losing or repeating events; and of the
// RecordService API: exporting a thread's transcript, and requesting and
// consenting to its disclosure; and of the DirectoryService API: the signed
// directory chain's history and versions, the state's own entry and keys,
// and proposals to the other members, named by a prefix of their hash. It
// also translates the API's enums to and from the short names people type.
//
// It must never trust the system roots or any CA other than the state's own,
// never create a second message when it retries (every retried Send or
// Respond reuses one request id), and never hide the gRPC status of a failed
// call: status.Code works on every error it returns from the node.
package client
