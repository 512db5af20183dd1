// Package certs creates the PKI and directory of a development federation:
// one self-signed root CA per state, a node certificate and operator
// certificates for each state, the directory listing every state's CA,
// endpoints and points of contact, and the configuration files of pocnode
// and pocctl.
//
// Every state gets its own root CA, as in a real federation: there is no
// shared CA, and nothing here lets one state's CA vouch for another state.
// Certificates carry exactly one URI SAN, the SPIFFE-style identity defined
// by package identity.
//
// This package is for development and tests. The keys it makes are written
// unencrypted (mode 0600) and must never be committed or used in production;
// it must never overwrite a federation that was already written.
package certs
