// Package server is the gRPC edge of a pocnet node. Its subpackages hold the
// service adapters (contactsvc, relaysvc), the identity interceptor (auth),
// the error table (rpcerr), the peer transport (peers), configuration
// (config) and the node's lifecycle (node). Domain logic lives in internal/;
// nothing here touches Pebble, and only auth looks at TLS state.
package server
