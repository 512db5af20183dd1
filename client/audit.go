package client

import (
	"context"
	"errors"
	"io"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// AuditHead returns the seq and hash of the newest record of the node's
// audit log (0 and 32 zero bytes for an empty log). Only admin operators
// may read the audit log.
func (c *Client) AuditHead(ctx context.Context) (uint64, []byte, error) {
	resp, err := c.audit.GetAuditHead(ctx, &pocnetv1.GetAuditHeadRequest{})
	if err != nil {
		return 0, nil, wrap("get audit head", err)
	}
	return resp.GetSeq(), resp.GetHash(), nil
}

// ExportAudit streams the node's audit entries with seq > after to fn, in
// order and exactly as the node stores them, up to the head as it stood
// when the export began (the node records the export itself first). It
// returns fn's error as is, or the node's error wrapped in *Error. Only
// admin operators may read the audit log.
//
// The entries are not verified here: each carries the bytes that were
// hashed and the hash, to be checked as a chain (see pocnet.v1.AuditEntry)
// against a head known from elsewhere, such as AuditHead read before.
func (c *Client) ExportAudit(ctx context.Context, after uint64, fn func(*pocnetv1.AuditEntry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.audit.ExportAudit(ctx, &pocnetv1.ExportAuditRequest{AfterSeq: after})
	if err != nil {
		return wrap("export audit log", err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return wrap("export audit log", err)
		}
		for _, e := range resp.GetEntries() {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}
