// Package identity owns who a peer is: SPIFFE-style identities carried as the
// single URI SAN of an X.509 certificate, per-state trust bundles (each
// state's CAs and the certificates it revoked), the TLS configurations that
// enforce them, and the node's own certificate files, reloaded without a
// restart.
//
// A certificate naming state X is accepted only if its chain verifies against
// the CA certificates that the directory lists for X and X revoked none of
// its certificates: state X's CA can never speak for state Y, and only X can
// withdraw X's certificates. There is no federation-wide CA.
//
// This package must never trust the system roots, accept TLS below 1.3, or
// let a caller act on an identity that was not verified in the handshake.
package identity
