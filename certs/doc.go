// Package certs creates the PKI and directory of a development federation:
// one self-signed root CA per state, a node certificate and operator
// certificates for each state, the directory listing every state's CA,
// endpoints and points of contact, the signed genesis that founds the
// federation's directory chain, and the configuration files of pocnode and
// pocctl. It also makes the material of one participant joining a written
// federation later (NewMember): its own PKI and keys and the directory entry
// the members admit.
//
// Every state gets its own root CA, as in a real federation: there is no
// shared CA, and nothing here lets one state's CA vouch for another state.
// Certificates carry exactly one URI SAN, the SPIFFE-style identity defined
// by package identity. The genesis is signed by every founding state with
// its own signing key, as governance requires of a trust anchor.
//
// This package is for development and tests. The keys it makes are written
// unencrypted (mode 0600) and must never be committed or used in production;
// it must never overwrite a federation that was already written, nor touch
// an existing member's files when a participant joins.
package certs
