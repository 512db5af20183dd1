package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// fakeDirectory is a DirectoryServiceClient whose answers the test sets.
// Methods a test does not set panic through the nil embedded interface.
type fakeDirectory struct {
	pocnetv1.DirectoryServiceClient
	proposals []*pocnetv1.Proposal
	err       error
	requests  []any
}

func (f *fakeDirectory) ListProposals(_ context.Context, in *pocnetv1.ListProposalsRequest, _ ...grpc.CallOption) (*pocnetv1.ListProposalsResponse, error) {
	f.requests = append(f.requests, in)
	if f.err != nil {
		return nil, f.err
	}
	return &pocnetv1.ListProposalsResponse{Proposals: f.proposals}, nil
}

func (f *fakeDirectory) GetVersion(_ context.Context, in *pocnetv1.GetVersionRequest, _ ...grpc.CallOption) (*pocnetv1.GetVersionResponse, error) {
	f.requests = append(f.requests, in)
	return nil, f.err
}

func (f *fakeDirectory) UpdateEntry(_ context.Context, in *pocnetv1.UpdateEntryRequest, _ ...grpc.CallOption) (*pocnetv1.UpdateEntryResponse, error) {
	f.requests = append(f.requests, in)
	return nil, f.err
}

func (f *fakeDirectory) Sign(_ context.Context, in *pocnetv1.SignRequest, _ ...grpc.CallOption) (*pocnetv1.SignResponse, error) {
	f.requests = append(f.requests, in)
	return nil, f.err
}

func (f *fakeDirectory) Propose(_ context.Context, in *pocnetv1.ProposeRequest, _ ...grpc.CallOption) (*pocnetv1.ProposeResponse, error) {
	f.requests = append(f.requests, in)
	return nil, f.err
}

func (f *fakeDirectory) RotateKeys(_ context.Context, in *pocnetv1.RotateKeysRequest, _ ...grpc.CallOption) (*pocnetv1.RotateKeysResponse, error) {
	f.requests = append(f.requests, in)
	return nil, f.err
}

func dirClient(f *fakeDirectory) *Client {
	c := newClient(nil, identity.Operator("pocnet.test", "XAA", identity.AdminRole, "duty"))
	c.dir = f
	return c
}

// proposal is a proposal whose hash starts with hashHex, zeros after.
func proposal(hashHex, desc string) *pocnetv1.Proposal {
	h, err := hex.DecodeString(hashHex + strings.Repeat("0", 64-len(hashHex)))
	if err != nil {
		panic(err)
	}
	return &pocnetv1.Proposal{Hash: h, Description: desc}
}

func TestFindProposal(t *testing.T) {
	f := &fakeDirectory{proposals: []*pocnetv1.Proposal{
		proposal("1a2b3c4d5e6f7a8b", "admission of XDD"),
		proposal("1a2b3c4d9f000000", "removal of XEE"),
		proposal("c0ffee0011223344", "rule change"),
	}}
	c := dirClient(f)
	full := strings.Repeat("0", 64)
	tests := []struct {
		prefix string
		want   string // description found
		err    error
		msg    string
	}{
		{"c0ffee00", "rule change", nil, ""},
		{"C0FFEE0011", "rule change", nil, ""},
		{"1a2b3c4d5e", "admission of XDD", nil, ""},
		{"1a2b3c4d", "", ErrAmbiguousProposal, "1a2b3c4d names 2 proposals: 1a2b3c4d5e6f7a8b" + strings.Repeat("0", 48) + " (admission of XDD), 1a2b3c4d9f"},
		{"deadbeef", "", ErrNoProposal, "none of the 3 proposal(s) the node holds has a hash starting with deadbeef"},
		{full, "", ErrNoProposal, "has a hash starting with " + full},
		{"1a2b3c4", "", ErrHashPrefix, `"1a2b3c4": give 8 to 64 hex digits of the proposal's hash`},
		{full + "0", "", ErrHashPrefix, "give 8 to 64 hex digits"},
		{"1a2b3c4g", "", ErrHashPrefix, `"1a2b3c4g" is not hexadecimal`},
	}
	for _, tt := range tests {
		p, err := c.FindProposal(context.Background(), tt.prefix)
		if tt.err == nil {
			if err != nil || p.GetDescription() != tt.want {
				t.Errorf("FindProposal(%q) = %v, %v; want %s", tt.prefix, p, err, tt.want)
			}
			continue
		}
		if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("FindProposal(%q) error %v, want %v containing %q", tt.prefix, err, tt.err, tt.msg)
		}
	}
	// A malformed prefix is refused before asking the node.
	n := len(f.requests)
	_, _ = c.FindProposal(context.Background(), "xyz")
	if len(f.requests) != n {
		t.Error("a malformed prefix was sent to the node")
	}

	// The node's refusal keeps its status.
	f.err = status.Error(codes.PermissionDenied, "no")
	_, err := c.FindProposal(context.Background(), "c0ffee00")
	if status.Code(err) != codes.PermissionDenied || err.Error() != "list proposals: no (PermissionDenied)" {
		t.Errorf("FindProposal with the node refusing: %v", err)
	}
}

func TestDirectoryErrorsSayWhatFailed(t *testing.T) {
	f := &fakeDirectory{err: status.Error(codes.FailedPrecondition, "the entry of XAA changed since version 3")}
	c := dirClient(f)
	ctx := context.Background()
	hash := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		call func() error
		want string
	}{
		{func() error {
			_, err := c.UpdateEntry(ctx, &pocnetv1.Member{State: "XAA"}, 3)
			return err
		}, "update the entry of XAA (edited from version 3): "},
		{func() error { _, err := c.DirectoryVersion(ctx, 0); return err }, "get directory version in force: "},
		{func() error { _, err := c.DirectoryVersion(ctx, 7); return err }, "get directory version 7: "},
		{func() error { _, err := c.SignProposal(ctx, hash); return err }, "sign proposal abababababababab: "},
		{func() error { _, err := c.RotateKeys(ctx, true, true); return err }, "rotate signing and encryption keys: "},
		{func() error {
			_, err := c.Propose(ctx, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Remove{Remove: "XDD"}})
			return err
		}, "propose removal of XDD: "},
	}
	for _, tt := range tests {
		err := tt.call()
		var ce *Error
		if !errors.As(err, &ce) || status.Code(err) != codes.FailedPrecondition ||
			err.Error() != tt.want+"the entry of XAA changed since version 3 (FailedPrecondition)" {
			t.Errorf("error %v, want %q… with its status", err, tt.want)
		}
	}
	// Requests carry what was asked.
	if u := f.requests[0].(*pocnetv1.UpdateEntryRequest); u.GetBaseVersion() != 3 || u.GetMember().GetState() != "XAA" {
		t.Errorf("update request %v", u)
	}
	if r := f.requests[4].(*pocnetv1.RotateKeysRequest); !r.GetSigning() || !r.GetEncryption() {
		t.Errorf("rotate request %v", r)
	}
}

func TestDirectoryWithoutConnection(t *testing.T) {
	c := newClient(nil, identity.ID{})
	_, err := c.DirectoryHistory(context.Background(), 0, 0)
	if !errors.Is(err, errNotConnected) || err.Error() != "get directory history: the client has no connection to a node" {
		t.Errorf("DirectoryHistory without connection: %v", err)
	}
}
