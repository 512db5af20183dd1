package pocctl

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/envelope"
	"github.com/pocnet/pocnet/internal/transcript"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Transcripts and disclosure bundles are written as protobuf JSON (see
// transcript.Marshal): readable, diffable and accepted back by every
// command here. The binary protobuf form is read too.

func (a *app) threadExportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export ID [--out FILE]",
		Short: "Export the thread of message ID as a transcript anyone holding the directory can verify",
		Long: `export writes the transcript of the thread of message ID: every envelope
exactly as signed, the key that opens each envelope's payload (and nothing
else), and the recipient's signed receipt. It is protobuf JSON, written to
FILE (readable by you only) or to standard output. 'pocctl thread verify'
checks it offline, with the directory file alone.

A transcript shows the whole thread to whoever holds it. A thread holding a
communication marked no onward dissemination is not exported: it can leave
the two states only with the consent of both ('pocctl disclosure request').`,
		Args: exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				t, err := c.ExportThread(ctx, args[0])
				if err != nil {
					return err
				}
				data, err := transcript.Marshal(t)
				if err != nil {
					return fmt.Errorf("encode transcript: %w", err)
				}
				if out == "" {
					_, err := a.env.Stdout.Write(data)
					return err
				}
				if err := writeRecord(out, data); err != nil {
					return err
				}
				if a.json() {
					return a.printJSONValue(map[string]any{"file": out, "threadId": t.GetThreadId(), "entries": len(t.GetEntries())})
				}
				_, err = fmt.Fprintf(a.env.Stdout, "Exported thread %s: %d envelope(s), exported by %s, to %s\nVerify it offline with: pocctl thread verify %s --directory directory.json\n",
					t.GetThreadId(), len(t.GetEntries()), t.GetExportedByState(), out, out)
				return err
			})
		}),
	}
	cmd.Flags().StringVar(&out, "out", "", "write the transcript to this file instead of standard output")
	return cmd
}

func (a *app) threadVerifyCmd() *cobra.Command {
	var dirFile string
	cmd := &cobra.Command{
		Use:   "verify FILE --directory DIRECTORY",
		Short: "Verify a transcript offline against the directory file (no node needed)",
		Long: `verify checks a transcript with nothing but the directory file: every
envelope's signature by a key its sending state publishes, that every
payload opens with its key and is the content that was sealed, that the
envelopes make one thread between two states, and every receipt. It prints
what the transcript proves, entry by entry. A transcript that does not
verify exits with status 1, naming the first entry that fails and why.`,
		Args: exactArgs("FILE"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			dir, data, err := readForVerify(dirFile, args[0])
			if err != nil {
				return err
			}
			t, err := transcript.Unmarshal(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			rep, err := transcript.Verify(t, dir)
			if err != nil {
				return fmt.Errorf("%s does not verify: %w", args[0], err)
			}
			if a.json() {
				return a.printJSONValue(jsonTranscript(rep))
			}
			return writeReport(a.env.Stdout, rep, dirFile, "A transcript proves what it holds; it cannot prove that nothing was left out.")
		}),
	}
	cmd.Flags().StringVar(&dirFile, "directory", "", "the federation's directory file (directory.json) to verify against")
	_ = cmd.MarkFlagRequired("directory")
	return cmd
}

func (a *app) disclosureCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disclosure",
		Short: "Release a thread outside the two states, with the consent of both",
		Long: `A thread leaves the two states concerned only as a disclosure bundle: its
transcript with a signed consent of each state, for one stated purpose. One
state alone cannot make a bundle that verifies.

  1. An admin of one state:    pocctl disclosure request THREAD --purpose TEXT --out req.json
  2. Send req.json to the other state; its admin, at its own node:
                               pocctl disclosure consent req.json --out bundle.json
  3. Anyone with the directory: pocctl disclosure verify bundle.json --directory directory.json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.disclosureRequestCmd(), a.disclosureConsentCmd(), a.disclosureVerifyCmd())
	return cmd
}

func (a *app) disclosureRequestCmd() *cobra.Command {
	var purpose, out string
	cmd := &cobra.Command{
		Use:   "request THREAD --purpose TEXT [--out FILE]",
		Short: "Sign your state's consent to disclose a thread (admin only); the other state must consent too",
		Args:  exactArgs("THREAD"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				b, err := c.RequestDisclosure(ctx, args[0], purpose)
				if err != nil {
					return err
				}
				return a.writeBundle(b, out, c.Identity().State)
			})
		}),
	}
	cmd.Flags().StringVar(&purpose, "purpose", "", "for what, and for whom, the thread is disclosed")
	cmd.Flags().StringVar(&out, "out", "", "write the bundle to this file instead of standard output")
	_ = cmd.MarkFlagRequired("purpose")
	return cmd
}

func (a *app) disclosureConsentCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "consent FILE [--out FILE]",
		Short: "Check a bundle the other state requested against your node's copy and add your state's consent (admin only)",
		Args:  exactArgs("FILE"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			data, err := readRecord(args[0])
			if err != nil {
				return err
			}
			b, err := transcript.UnmarshalBundle(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				nb, err := c.ConsentDisclosure(ctx, b)
				if err != nil {
					return err
				}
				return a.writeBundle(nb, out, c.Identity().State)
			})
		}),
	}
	cmd.Flags().StringVar(&out, "out", "", "write the bundle to this file instead of standard output")
	return cmd
}

func (a *app) disclosureVerifyCmd() *cobra.Command {
	var dirFile string
	cmd := &cobra.Command{
		Use:   "verify FILE --directory DIRECTORY",
		Short: "Verify a disclosure bundle offline: its transcript and the consent of both states",
		Args:  exactArgs("FILE"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			dir, data, err := readForVerify(dirFile, args[0])
			if err != nil {
				return err
			}
			b, err := transcript.UnmarshalBundle(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			d, err := transcript.VerifyDisclosure(b, dir)
			if err != nil {
				return fmt.Errorf("%s does not verify: %w", args[0], err)
			}
			if a.json() {
				return a.printJSONValue(jsonDisclosure(d))
			}
			return writeDisclosure(a.env.Stdout, d, dirFile)
		}),
	}
	cmd.Flags().StringVar(&dirFile, "directory", "", "the federation's directory file (directory.json) to verify against")
	_ = cmd.MarkFlagRequired("directory")
	return cmd
}

// writeBundle writes a bundle to out (or standard output) and says where
// it stands.
func (a *app) writeBundle(b *pocnetv1.DisclosureBundle, out, self string) error {
	data, err := transcript.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode bundle: %w", err)
	}
	if out == "" {
		_, err := a.env.Stdout.Write(data)
		return err
	}
	if err := writeRecord(out, data); err != nil {
		return err
	}
	var t pocnetv1.Transcript
	if err := proto.Unmarshal(b.GetTranscript(), &t); err != nil {
		return fmt.Errorf("the node returned a bundle whose transcript does not decode: %w", err)
	}
	states := partiesOf(&t)
	var have, missing []string
	for _, s := range states {
		found := false
		for _, c := range b.GetConsents() {
			found = found || c.GetState() == s
		}
		if found {
			have = append(have, s)
		} else {
			missing = append(missing, s)
		}
	}
	if a.json() {
		return a.printJSONValue(map[string]any{"file": out, "threadId": t.GetThreadId(), "consented": have, "missing": missing})
	}
	w := a.env.Stdout
	fmt.Fprintf(w, "Disclosure bundle of thread %s (%d envelope(s)) written to %s\n", t.GetThreadId(), len(t.GetEntries()), out)
	fmt.Fprintf(w, "Consent of %s signed", joinAnd(have))
	if len(b.GetConsents()) > 0 {
		fmt.Fprintf(w, ", for the purpose: %s", b.GetConsents()[0].GetPurpose())
	}
	fmt.Fprintln(w)
	if len(missing) > 0 {
		_, err = fmt.Fprintf(w, "Not valid yet: the consent of %s is missing. Send %s to %s; its admin runs:\n  pocctl disclosure consent %s --out bundle.json\n",
			joinAnd(missing), out, joinAnd(missing), out)
		return err
	}
	_, err = fmt.Fprintf(w, "Both states consented. Anyone holding the directory can verify it:\n  pocctl disclosure verify %s --directory directory.json\n", out)
	return err
}

// partiesOf returns the two states of a transcript's thread, as its first
// envelope names them (unverified: for messages only).
func partiesOf(t *pocnetv1.Transcript) []string {
	if len(t.GetEntries()) == 0 {
		return nil
	}
	h, err := envelope.DecodeHeader(t.GetEntries()[0].GetEnvelope())
	if err != nil {
		return nil
	}
	return []string{h.GetFromState(), h.GetToState()}
}

// readForVerify loads the directory and the file to verify. Both are
// required; neither needs a node.
func readForVerify(dirFile, file string) (*directory.Directory, []byte, error) {
	if dirFile == "" {
		return nil, nil, usagef("--directory: the directory file to verify against is required")
	}
	dir, err := directory.Load(dirFile)
	if err != nil {
		return nil, nil, err
	}
	data, err := readRecord(file)
	if err != nil {
		return nil, nil, err
	}
	return dir, data, nil
}

// readRecord reads a transcript or bundle file, refusing one larger than
// any the node produces before reading it.
func readRecord(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, transcript.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > transcript.MaxFileSize {
		return nil, fmt.Errorf("%s: more than %d bytes; not a transcript or bundle", path, transcript.MaxFileSize)
	}
	return data, nil
}

// writeRecord writes a transcript or bundle readable by its owner only: it
// holds the payload keys of the whole thread.
func writeRecord(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
