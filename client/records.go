package client

import (
	"context"
	"errors"

	"google.golang.org/grpc"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// MaxRecordSize bounds a transcript or disclosure bundle the client takes
// from the node. It is above gRPC's default of 4 MiB: a thread may hold
// several envelopes of up to 3 MiB each.
const MaxRecordSize = 64 << 20

// errNotConnected is returned by RecordService calls on a Client that has
// no connection of its own.
var errNotConnected = errors.New("the client has no connection to a node")

func (c *Client) records() (pocnetv1.RecordServiceClient, error) {
	if c.conn == nil {
		return nil, errNotConnected
	}
	return pocnetv1.NewRecordServiceClient(c.conn), nil
}

// ExportThread returns the transcript of the thread of message id: every
// envelope as signed, its payload key and its receipt, which anyone holding
// the directory can verify offline. The node refuses it
// (codes.FailedPrecondition) for a thread holding a communication marked no
// onward dissemination; see RequestDisclosure.
func (c *Client) ExportThread(ctx context.Context, id string) (*pocnetv1.Transcript, error) {
	rs, err := c.records()
	if err != nil {
		return nil, wrap("export thread of "+id, err)
	}
	resp, err := rs.ExportThread(ctx, &pocnetv1.ExportThreadRequest{Id: id}, grpc.MaxCallRecvMsgSize(MaxRecordSize))
	if err != nil {
		return nil, wrap("export thread of "+id, err)
	}
	return resp.GetTranscript(), nil
}

// RequestDisclosure asks the node to export the thread of message id and
// sign the state's consent to disclose it for purpose. The bundle becomes
// valid once the other state of the thread consents too (ConsentDisclosure,
// by an admin of that state at its own node). Only admin operators may call
// it.
func (c *Client) RequestDisclosure(ctx context.Context, id, purpose string) (*pocnetv1.DisclosureBundle, error) {
	rs, err := c.records()
	if err != nil {
		return nil, wrap("request disclosure of thread of "+id, err)
	}
	resp, err := rs.RequestDisclosure(ctx, &pocnetv1.RequestDisclosureRequest{Id: id, Purpose: purpose}, grpc.MaxCallRecvMsgSize(MaxRecordSize))
	if err != nil {
		return nil, wrap("request disclosure of thread of "+id, err)
	}
	return resp.GetBundle(), nil
}

// ConsentDisclosure asks the node to check a bundle the other state of the
// thread requested against its own copy of the thread and add the state's
// consent. It returns the bundle with both consents. Only admin operators
// may call it.
func (c *Client) ConsentDisclosure(ctx context.Context, b *pocnetv1.DisclosureBundle) (*pocnetv1.DisclosureBundle, error) {
	rs, err := c.records()
	if err != nil {
		return nil, wrap("consent to disclosure", err)
	}
	resp, err := rs.ConsentDisclosure(ctx, &pocnetv1.ConsentDisclosureRequest{Bundle: b}, grpc.MaxCallRecvMsgSize(MaxRecordSize))
	if err != nil {
		return nil, wrap("consent to disclosure", err)
	}
	return resp.GetBundle(), nil
}
