package client

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// The federation's directory is a chain of signed versions. Any operator
// may read it through the state's node (DirectoryHistory, DirectoryVersion,
// Proposals); only admin operators change it, since every change is signed
// with the state's key: the state's own entry (UpdateEntry, RotateKeys) and
// the decisions taken with the other members (Propose, SignProposal,
// ObjectProposal).

// MaxDirectorySize bounds an answer about the directory the client takes
// from the node. A signed version holds a directory of up to 16 MiB and
// its signatures (17 MiB); GetVersion returns it both as signed and
// decoded. gRPC's default of 4 MiB would refuse a large federation's.
const MaxDirectorySize = 40 << 20

// MinHashPrefix is the fewest hex digits that name a proposal.
const MinHashPrefix = 8

// Errors of FindProposal, wrapped with the prefix and what the node holds.
var (
	// ErrHashPrefix: the prefix is not at least MinHashPrefix hex digits of
	// a SHA-256.
	ErrHashPrefix = errors.New("invalid proposal hash prefix")
	// ErrNoProposal: no proposal the node holds has a hash with the prefix.
	ErrNoProposal = errors.New("no such proposal")
	// ErrAmbiguousProposal: more than one has.
	ErrAmbiguousProposal = errors.New("ambiguous proposal hash prefix")
)

// ValidateHashPrefix checks that s is between MinHashPrefix and 64 hex
// digits, the way a proposal is named to FindProposal.
func ValidateHashPrefix(s string) error {
	if len(s) < MinHashPrefix || len(s) > hex.EncodedLen(32) {
		return fmt.Errorf("%w: %q: give %d to %d hex digits of the proposal's hash", ErrHashPrefix, s, MinHashPrefix, hex.EncodedLen(32))
	}
	if strings.Trim(strings.ToLower(s), "0123456789abcdef") != "" {
		return fmt.Errorf("%w: %q is not hexadecimal", ErrHashPrefix, s)
	}
	return nil
}

// directory returns the DirectoryService client.
func (c *Client) directory() (pocnetv1.DirectoryServiceClient, error) {
	if c.dir == nil {
		return nil, errNotConnected
	}
	return c.dir, nil
}

// DirectoryHistory returns a page of the directory chain, newest first: at
// most limit versions (0: the node's default of 50; at most 500) older than
// beforeVersion (0: from the latest), the head of the chain, and every fork
// the node has detected. To page on, pass the number of the last version
// returned as beforeVersion.
func (c *Client) DirectoryHistory(ctx context.Context, beforeVersion uint64, limit uint32) (*pocnetv1.GetHistoryResponse, error) {
	op := "get directory history"
	if beforeVersion != 0 {
		op = fmt.Sprintf("get directory history before version %d", beforeVersion)
	}
	ds, err := c.directory()
	if err != nil {
		return nil, wrap(op, err)
	}
	resp, err := ds.GetHistory(ctx, &pocnetv1.GetHistoryRequest{BeforeVersion: beforeVersion, Limit: limit})
	if err != nil {
		return nil, wrap(op, err)
	}
	return resp, nil
}

// DirectoryVersion returns version n of the directory chain (0: the
// version in force) as signed, for offline verification, and decoded.
func (c *Client) DirectoryVersion(ctx context.Context, n uint64) (*pocnetv1.GetVersionResponse, error) {
	op := "get directory version in force"
	if n != 0 {
		op = fmt.Sprintf("get directory version %d", n)
	}
	ds, err := c.directory()
	if err != nil {
		return nil, wrap(op, err)
	}
	resp, err := ds.GetVersion(ctx, &pocnetv1.GetVersionRequest{Version: n}, grpc.MaxCallRecvMsgSize(MaxDirectorySize))
	if err != nil {
		return nil, wrap(op, err)
	}
	return resp, nil
}

// UpdateEntry publishes m as the state's whole new directory entry, signed
// by the state alone, and returns the version that holds it. baseVersion is
// the version m was edited from: if the state's entry changed since, the
// node refuses the update (codes.FailedPrecondition) rather than overwrite
// a change the operator did not see; 0 skips the check. Only admin
// operators may call it.
func (c *Client) UpdateEntry(ctx context.Context, m *pocnetv1.Member, baseVersion uint64) (*pocnetv1.VersionSummary, error) {
	op := fmt.Sprintf("update the entry of %s", m.GetState())
	if baseVersion != 0 {
		op += fmt.Sprintf(" (edited from version %d)", baseVersion)
	}
	ds, err := c.directory()
	if err != nil {
		return nil, wrap(op, err)
	}
	resp, err := ds.UpdateEntry(ctx, &pocnetv1.UpdateEntryRequest{Member: m, BaseVersion: baseVersion})
	if err != nil {
		return nil, wrap(op, err)
	}
	return resp.GetVersion(), nil
}

// RotateKeys has the node make new signing and/or encryption keys for the
// state and publish them in its entry; it returns the new version and key
// ids (empty for a key not rotated). Only admin operators may call it.
func (c *Client) RotateKeys(ctx context.Context, signing, encryption bool) (*pocnetv1.RotateKeysResponse, error) {
	var which []string
	if signing {
		which = append(which, "signing")
	}
	if encryption {
		which = append(which, "encryption")
	}
	op := "rotate keys"
	if len(which) > 0 {
		op = "rotate " + strings.Join(which, " and ") + " keys"
	}
	ds, err := c.directory()
	if err != nil {
		return nil, wrap(op, err)
	}
	resp, err := ds.RotateKeys(ctx, &pocnetv1.RotateKeysRequest{Signing: signing, Encryption: encryption})
	if err != nil {
		return nil, wrap(op, err)
	}
	return resp, nil
}

// Propose proposes one change to the members: an admission, a removal, a
// rule change (decided under the rule in force) or an observer admission
// (by silence procedure). The state signs it first; the node offers it to
// every peer. It returns the proposal as it stands. Only admin operators
// may call it.
func (c *Client) Propose(ctx context.Context, req *pocnetv1.ProposeRequest) (*pocnetv1.Proposal, error) {
	op := "propose " + proposalWords(req)
	ds, err := c.directory()
	if err != nil {
		return nil, wrap(op, err)
	}
	resp, err := ds.Propose(ctx, req, grpc.MaxCallRecvMsgSize(MaxDirectorySize))
	if err != nil {
		return nil, wrap(op, err)
	}
	return resp.GetProposal(), nil
}

// proposalWords names what a request proposes, for errors.
func proposalWords(req *pocnetv1.ProposeRequest) string {
	switch p := req.GetProposal().(type) {
	case *pocnetv1.ProposeRequest_Admit:
		return "admission of " + p.Admit.GetState()
	case *pocnetv1.ProposeRequest_Remove:
		return "removal of " + p.Remove
	case *pocnetv1.ProposeRequest_Rule:
		return "rule change"
	case *pocnetv1.ProposeRequest_AdmitObserver:
		return "observer admission of " + p.AdmitObserver.GetState()
	default:
		return "change"
	}
}

// SignProposal adds the state's signature to the pending proposal named by
// its hash, and returns it as it stands after. Only admin operators may
// call it.
func (c *Client) SignProposal(ctx context.Context, hash []byte) (*pocnetv1.Proposal, error) {
	op := "sign proposal " + shortHash(hash)
	ds, err := c.directory()
	if err != nil {
		return nil, wrap(op, err)
	}
	resp, err := ds.Sign(ctx, &pocnetv1.SignRequest{Hash: hash}, grpc.MaxCallRecvMsgSize(MaxDirectorySize))
	if err != nil {
		return nil, wrap(op, err)
	}
	return resp.GetProposal(), nil
}

// ObjectProposal adds the state's signed objection to the pending observer
// admission named by its hash, which stops it, and returns it as it stands
// after. Only admin operators may call it.
func (c *Client) ObjectProposal(ctx context.Context, hash []byte) (*pocnetv1.Proposal, error) {
	op := "object to proposal " + shortHash(hash)
	ds, err := c.directory()
	if err != nil {
		return nil, wrap(op, err)
	}
	resp, err := ds.Object(ctx, &pocnetv1.ObjectRequest{Hash: hash}, grpc.MaxCallRecvMsgSize(MaxDirectorySize))
	if err != nil {
		return nil, wrap(op, err)
	}
	return resp.GetProposal(), nil
}

// Proposals returns the proposals the node holds, oldest first: pending,
// waiting out a silence period, objected to, adopted or superseded.
func (c *Client) Proposals(ctx context.Context) ([]*pocnetv1.Proposal, error) {
	ds, err := c.directory()
	if err != nil {
		return nil, wrap("list proposals", err)
	}
	resp, err := ds.ListProposals(ctx, &pocnetv1.ListProposalsRequest{}, grpc.MaxCallRecvMsgSize(MaxDirectorySize))
	if err != nil {
		return nil, wrap("list proposals", err)
	}
	return resp.GetProposals(), nil
}

// FindProposal returns the one proposal the node holds whose hash starts
// with hashPrefixHex: at least MinHashPrefix hex digits, in either case. It
// fails with ErrHashPrefix for a malformed prefix, ErrNoProposal when none
// matches and ErrAmbiguousProposal, naming the candidates, when several do.
func (c *Client) FindProposal(ctx context.Context, hashPrefixHex string) (*pocnetv1.Proposal, error) {
	if err := ValidateHashPrefix(hashPrefixHex); err != nil {
		return nil, err
	}
	prefix := strings.ToLower(hashPrefixHex)
	all, err := c.Proposals(ctx)
	if err != nil {
		return nil, err
	}
	var found []*pocnetv1.Proposal
	for _, p := range all {
		if strings.HasPrefix(hex.EncodeToString(p.GetHash()), prefix) {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("%w: none of the %d proposal(s) the node holds has a hash starting with %s", ErrNoProposal, len(all), prefix)
	default:
		names := make([]string, len(found))
		for i, p := range found {
			names[i] = fmt.Sprintf("%x (%s)", p.GetHash(), p.GetDescription())
		}
		return nil, fmt.Errorf("%w: %s names %d proposals: %s; give more digits", ErrAmbiguousProposal, prefix, len(found), strings.Join(names, ", "))
	}
}

// shortHash is the first 8 bytes of a hash in hex, for messages.
func shortHash(h []byte) string {
	if len(h) > 8 {
		h = h[:8]
	}
	return hex.EncodeToString(h)
}
