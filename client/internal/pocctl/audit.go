package pocctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/audit"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// brokenError is an audit log found broken: pocctl exits with ExitBroken,
// so that a script tells a tampered log from a node it could not reach.
type brokenError struct{ err error }

func (e brokenError) Error() string { return e.err.Error() }
func (e brokenError) Unwrap() error { return e.err }

func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Export and verify the node's tamper-evident audit log (admin operators)",
		Long: `The node keeps an append-only audit log of what happened: messages sent,
delivered, received, rejected, opened and answered (by which operator), and
administrative actions. Each record carries the hash of the one before it,
so removing, altering or reordering any record breaks the chain.

Only admin operators of the node's own state may read the log, and every
export is itself recorded in it.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.auditExportCmd(), a.auditVerifyCmd(), a.auditHeadCmd())
	return cmd
}

func (a *app) auditHeadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "head",
		Short: "Print the newest record's seq and hash (SEQ:HASH), to note for a later verify --expect-head",
		Args:  exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				seq, hash, err := c.AuditHead(ctx)
				if err != nil {
					return err
				}
				head := audit.Head{Seq: seq, Hash: hash}
				if a.json() {
					return a.printPlainJSON(map[string]any{"seq": seq, "hash": audit.HashString(hash), "head": head.String()})
				}
				_, err = fmt.Fprintln(a.env.Stdout, head)
				return err
			})
		}),
	}
}

func (a *app) auditExportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export [--out FILE]",
		Short: "Write the node's whole audit log, exactly as stored, to FILE (default: standard output)",
		Long: `Export writes the node's whole audit log in the pocnet-audit-v1 format: JSON
lines, the first a header naming the node, the export time and the node's
head (SEQ:HASH) when the export began, then one line per record with the
exact bytes that were hashed and their hash, base64-encoded:

  {"format":"pocnet-audit-v1","node":"spiffe://…/node","exported_at":"…","start":"0:00…","head":"72:9f2c…"}
  {"record":"CAESDAi…","hash":"nyw…"}

'pocctl audit verify FILE' checks such a file. With --out, the file is
written whole or not at all (mode 0600). A long log may need a longer
--timeout.`,
		Args: exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				if out == "" {
					_, err := a.export(ctx, c, a.env.Stdout)
					return err
				}
				n, err := writeAtomically(out, func(w io.Writer) (int, error) { return a.export(ctx, c, w) })
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.env.Stderr, "exported %d audit records to %s; check them with: pocctl audit verify %s\n", n, out, out)
				return err
			})
		}),
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write (default: standard output)")
	return cmd
}

// export writes the node's whole log to w and returns how many entries it
// wrote. The head is read first: the export must reach it.
func (a *app) export(ctx context.Context, c *client.Client, w io.Writer) (int, error) {
	seq, hash, err := c.AuditHead(ctx)
	if err != nil {
		return 0, err
	}
	id := c.Identity()
	fw, err := audit.NewWriter(w, audit.FileHeader{
		Node: identity.Node(id.Federation, id.State).String(), ExportedAt: a.now(),
		Head: audit.Head{Seq: seq, Hash: hash},
	})
	if err != nil {
		return 0, fmt.Errorf("write the export: %w", err)
	}
	n := 0
	err = c.ExportAudit(ctx, 0, func(e *pocnetv1.AuditEntry) error {
		n++
		return fw.Write(e)
	})
	if err != nil {
		return n, err
	}
	if err := fw.Flush(); err != nil {
		return n, fmt.Errorf("write the export: %w", err)
	}
	return n, nil
}

// writeAtomically writes path through a temporary file in its folder,
// synced and renamed into place only when fn succeeded: a failed export
// leaves no file that looks like an export.
func writeAtomically(path string, fn func(io.Writer) (int, error)) (int, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".pocctl-audit-*")
	if err != nil {
		return 0, fmt.Errorf("--out: %w", err)
	}
	n, err := fn(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return n, err
	}
	return n, nil
}

func (a *app) auditVerifyCmd() *cobra.Command {
	var expect []string
	cmd := &cobra.Command{
		Use:   "verify [FILE] [--expect-head SEQ:HASH]...",
		Short: "Verify an exported audit log, or the node's live log, and say where it is broken",
		Long: `Verify checks the audit log record by record: every record must hash to its
stored hash, follow the one before it (seq without gaps, prev_hash its
hash) and come in order. It prints "audit log intact: N records, head
HASH", or exactly where and how the log is broken, and then exits with
status 3.

Without FILE it verifies the node's live log, which must also reach the
head the node reports. With FILE it verifies an export, which must reach
the head its header names.

Records removed from the end, or a log rewritten with fresh hashes, show
only against a head known from elsewhere: note the head printed (or
'pocctl audit head') and later pass it with --expect-head SEQ:HASH.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("verify takes at most one argument (an export FILE), got %d", len(args))
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			var anchors []audit.Anchor
			for _, s := range expect {
				h, err := audit.ParseHead(s)
				if err != nil {
					return usagef("--expect-head: %v", err)
				}
				anchors = append(anchors, audit.Anchor{Head: h, Label: "the head given with --expect-head"})
			}
			if len(args) == 1 {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				res, err := audit.VerifyFile(f, anchors...)
				return a.verified(res.Records, res.Head, err)
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				seq, hash, err := c.AuditHead(ctx)
				if err != nil {
					return err
				}
				anchors = append([]audit.Anchor{{Head: audit.Head{Seq: seq, Hash: hash}, Label: "the node's head"}}, anchors...)
				v := audit.NewVerifier(audit.Head{}, anchors...)
				err = c.ExportAudit(ctx, 0, v.Add)
				if err != nil && !errors.Is(err, audit.ErrBroken) {
					return err
				}
				head, err := v.Finish()
				return a.verified(v.Records(), head, err)
			})
		}),
	}
	cmd.Flags().StringArrayVar(&expect, "expect-head", nil, "a head SEQ:HASH noted earlier that the log must still contain (repeatable)")
	return cmd
}

// verified reports the outcome of a verification: intact, broken (exit
// ExitBroken), or a failure to read the log.
func (a *app) verified(records int, head audit.Head, err error) error {
	var broken *audit.Error
	if err != nil && !errors.As(err, &broken) {
		return err
	}
	if a.json() {
		doc := map[string]any{"intact": err == nil, "records": records, "head": head.String()}
		if broken != nil {
			doc["problem"], doc["seq"], doc["error"] = broken.Problem.String(), broken.Seq, broken.Error()
		}
		if perr := a.printPlainJSON(doc); perr != nil {
			return perr
		}
	}
	if broken != nil {
		return brokenError{fmt.Errorf("%w: %v", audit.ErrBroken, broken)}
	}
	if a.json() {
		return nil
	}
	_, err = fmt.Fprintf(a.env.Stdout, "audit log intact: %d records, head %s\nto detect later removals, verify with --expect-head %s\n",
		records, audit.HashString(head.Hash), head)
	return err
}

// printPlainJSON writes v as one indented JSON document.
func (a *app) printPlainJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = a.env.Stdout.Write(append(b, '\n'))
	return err
}
