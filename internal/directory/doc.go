// Package directory owns the federation directory a node works from: loading
// it (protobuf JSON), validating every field, and answering lookups of
// members, points of contact and CA certificates.
//
// A Directory is immutable once built. It must never be consulted for trust
// decisions before Validate has passed, and it never fetches anything.
package directory
