package pocctl

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// The directory commands show the federation's signed directory chain and
// change it through the state's own node. Reading is open to every
// operator of the state; every change is signed with the state's key and
// needs an admin operator.

func (a *app) directoryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "directory",
		Short: "Show the directory in force (version, hash, rule, members and their points of contact); change it with the subcommands",
		Long: `directory shows the federation's directory as it is in force at your node:
its version in the signed chain, the version's hash, the decision rule, and
every member with its points of contact.

The directory is a chain of versions, each signed by those allowed to make
it: your state changes its own entry alone (update, rotate-keys); admitting
or removing a member and changing the rule need the signatures of state
members under the rule in force (propose, sign); an observer is admitted
unless a state member objects within the silence period (propose observer,
object). Changes need an admin operator.

With --output json it prints the directory in force (pocnet.v1.Directory);
'pocctl directory history' gives the version and its hash.`,
		Args: exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				v, hash, err := a.versionInForce(ctx, c)
				if err != nil {
					return err
				}
				if a.json() {
					// The directory alone, as before the chain, so that
					// scripts reading it keep working; the version and its
					// hash are in 'directory history' and 'export --signed'.
					return a.printJSON(v.GetDirectory(), false)
				}
				if err := writeDirectoryHead(a.env.Stdout, v, hash, a.now()); err != nil {
					return err
				}
				return writeMembers(a.env.Stdout, v.GetDirectory())
			})
		}),
	}
	cmd.AddCommand(
		a.directoryHistoryCmd(), a.directoryExportCmd(), a.directoryStatusCmd(),
		a.directoryProposeCmd(), a.directorySignCmd(), a.directoryObjectCmd(),
		a.directoryUpdateCmd(), a.directoryRotateKeysCmd(),
	)
	return cmd
}

// versionInForce returns the decoded version in force and its hash. A node
// that keeps no signed chain (it does not serve DirectoryService) still
// shows its directory, with no version or hash.
func (a *app) versionInForce(ctx context.Context, c *client.Client) (*pocnetv1.DirectoryVersion, []byte, error) {
	resp, err := c.DirectoryVersion(ctx, 0)
	if status.Code(err) == codes.Unimplemented {
		d, err := c.Directory(ctx)
		if err != nil {
			return nil, nil, err
		}
		return &pocnetv1.DirectoryVersion{Directory: d}, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	h := sha256.Sum256(resp.GetSigned().GetVersion())
	return resp.GetVersion(), h[:], nil
}

func (a *app) directoryHistoryCmd() *cobra.Command {
	var before uint64
	var limit uint32
	cmd := &cobra.Command{
		Use:   "history [--limit N] [--before VERSION]",
		Short: "List the directory's versions, newest first: when, what changed, who signed; and any fork",
		Long: `history lists the versions of the directory chain, newest first: each
version's number, when it was issued, what it changed and the states whose
signatures it carries.

A fork is two valid versions with the same parent: the chain's history has
split, because states signed conflicting changes. The node never chooses
between them; history reports every fork it has seen, on standard error too.`,
		Args: exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if limit > 500 {
				return usagef("--limit: %d is more than 500", limit)
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				h, err := c.DirectoryHistory(ctx, before, limit)
				if err != nil {
					return err
				}
				if len(h.GetForks()) > 0 {
					// On standard error as well, so that a fork is seen even
					// when the output goes to a file or a script.
					fmt.Fprintf(a.env.Stderr, "pocctl: WARNING: %d fork(s) of the directory chain detected; see the history\n", len(h.GetForks()))
				}
				if a.json() {
					return a.printJSON(h, false)
				}
				return writeHistory(a.env.Stdout, h, limit, a.now())
			})
		}),
	}
	cmd.Flags().Uint32Var(&limit, "limit", 0, "at most this many versions (default 50, at most 500)")
	cmd.Flags().Uint64Var(&before, "before", 0, "versions older than this one (to page on)")
	return cmd
}

func (a *app) directoryExportCmd() *cobra.Command {
	var version uint64
	var signed bool
	var out string
	cmd := &cobra.Command{
		Use:   "export [--version N] [--signed] [--out FILE]",
		Short: "Write the directory of a version as a file (directory.json) for offline verification",
		Long: `export writes the directory of the version in force (or of --version N) as
protobuf JSON: the directory file that 'pocctl thread verify --directory' and
'pocctl disclosure verify --directory' read.

With --signed it writes the version exactly as signed instead
(pocnet.v1.SignedVersion): its bytes and the members' signatures, which
prove who agreed to it.

The directory is visible to the federation's participants only: the file is
readable by you only.`,
		Args: exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.DirectoryVersion(ctx, version)
				if err != nil {
					return err
				}
				var data []byte
				if signed {
					data, err = protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp.GetSigned())
				} else {
					data, err = directory.Marshal(resp.GetVersion().GetDirectory())
				}
				if err != nil {
					return fmt.Errorf("encode version %d: %w", resp.GetVersion().GetVersion(), err)
				}
				data = append(data, '\n')
				if out == "" {
					_, err := a.env.Stdout.Write(data)
					return err
				}
				if err := writeRecord(out, data); err != nil {
					return err
				}
				h := sha256.Sum256(resp.GetSigned().GetVersion())
				if a.json() {
					return a.printJSONValue(map[string]any{"file": out, "version": resp.GetVersion().GetVersion(), "hash": fmt.Sprintf("%x", h), "signed": signed})
				}
				what := "Directory"
				if signed {
					what = "Signed version"
				}
				_, err = fmt.Fprintf(a.env.Stdout, "%s of version %d (hash %s) written to %s\n", what, resp.GetVersion().GetVersion(), shortHex(h[:]), out)
				return err
			})
		}),
	}
	cmd.Flags().Uint64Var(&version, "version", 0, "the version to export (default: the version in force)")
	cmd.Flags().BoolVar(&signed, "signed", false, "write the version as signed (pocnet.v1.SignedVersion) instead of its directory")
	cmd.Flags().StringVar(&out, "out", "", "write to this file instead of standard output")
	return cmd
}

func (a *app) directoryStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show every proposal your node holds and where it stands",
		Args:  exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				ps, err := c.Proposals(ctx)
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(&pocnetv1.ListProposalsResponse{Proposals: ps}, false)
				}
				return writeProposals(a.env.Stdout, ps, a.now())
			})
		}),
	}
}

func (a *app) directoryProposeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "propose",
		Short: "Propose a change to the other members: admit or remove a state, change the rule, admit an observer (admin only)",
		Long: `propose makes a proposal signed by your state as its first signer and
offers it to every member's node.

  pocctl directory propose admit --entry member.json    admit a state member
  pocctl directory propose remove XDD                   remove a member
  pocctl directory propose rule supermajority:70        change the decision rule
  pocctl directory propose observer --entry member.json admit an observer

An admission, a removal or a rule change takes effect once state members
have signed it as the rule in force requires ('pocctl directory sign' at
their nodes). An observer admission takes effect at the end of the silence
period unless a state member objects ('pocctl directory object').`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.proposeAdmitCmd(false), a.proposeAdmitCmd(true), a.proposeRemoveCmd(), a.proposeRuleCmd())
	return cmd
}

func (a *app) proposeAdmitCmd(observer bool) *cobra.Command {
	var entry string
	use, short := "admit --entry FILE", "Propose to admit a state member with the entry in FILE (pocnet.v1.Member, protobuf JSON)"
	if observer {
		use, short = "observer --entry FILE", "Propose to admit an observer with the entry in FILE; it takes effect unless a state member objects"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			m, err := readMember(entry, a.env.Stdin)
			if err != nil {
				return usagef("--entry: %v", err)
			}
			req, err := admission(m, observer)
			if err != nil {
				return err
			}
			return a.propose(cmd, req)
		}),
	}
	cmd.Flags().StringVar(&entry, "entry", "", "the new member's directory entry, pocnet.v1.Member in protobuf JSON ('-': standard input)")
	_ = cmd.MarkFlagRequired("entry")
	return cmd
}

// admission checks an entry to admit and makes the request. An entry that
// names no kind takes the kind of the admission.
func admission(m *pocnetv1.Member, observer bool) (*pocnetv1.ProposeRequest, error) {
	if err := identity.ValidateState(m.GetState()); err != nil {
		return nil, usagef("--entry: state: %v", err)
	}
	want, other := pocnetv1.MemberKind_MEMBER_KIND_STATE, "observer"
	if observer {
		want, other = pocnetv1.MemberKind_MEMBER_KIND_OBSERVER, "admit"
	}
	switch m.GetKind() {
	case pocnetv1.MemberKind_MEMBER_KIND_UNSPECIFIED:
		m.Kind = want
	case want:
	default:
		return nil, usagef("--entry: %s is of kind %s: use 'pocctl directory propose %s'", m.GetState(), client.MemberKindName(m.GetKind()), other)
	}
	if observer {
		return &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_AdmitObserver{AdmitObserver: m}}, nil
	}
	return &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Admit{Admit: m}}, nil
}

func (a *app) proposeRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove STATE",
		Short: "Propose to remove a member (proposing your own state's removal is a withdrawal, which takes effect on its own)",
		Args:  exactArgs("STATE"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			state := strings.ToUpper(strings.TrimSpace(args[0]))
			if err := identity.ValidateState(state); err != nil {
				return usagef("STATE: %v", err)
			}
			return a.propose(cmd, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Remove{Remove: state}})
		}),
	}
}

func (a *app) proposeRuleCmd() *cobra.Command {
	var silence string
	cmd := &cobra.Command{
		Use:   "rule consensus|supermajority:PERCENT|threshold:STATES [--silence-period D]",
		Short: "Propose a new decision rule, decided under the rule in force",
		Long: `rule proposes to replace the decision rule:

  consensus            every state member signs
  supermajority:70     at least 70% of the state members sign (51 to 100, rounded up)
  threshold:5          at least 5 state members sign (all of them while fewer)

--silence-period is how long an observer admission stays open for
objections (e.g. 72h, 14d); without it the rule in force's is kept.`,
		Args: exactArgs("RULE"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			rule, err := parseRule(args[0])
			if err != nil {
				return err
			}
			if silence != "" {
				if rule.SilencePeriod, err = parseSilence(silence); err != nil {
					return err
				}
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				cur, err := c.DirectoryVersion(ctx, 0)
				if err != nil {
					return err
				}
				if rule.SilencePeriod == nil {
					rule.SilencePeriod = cur.GetVersion().GetRule().GetSilencePeriod()
				}
				if proto.Equal(rule, cur.GetVersion().GetRule()) {
					return usagef("RULE: the rule in force (version %d) is already %s", cur.GetVersion().GetVersion(), describeRule(rule))
				}
				return a.proposeWith(ctx, c, &pocnetv1.ProposeRequest{Proposal: &pocnetv1.ProposeRequest_Rule{Rule: rule}})
			})
		}),
	}
	cmd.Flags().StringVar(&silence, "silence-period", "", "how long observer admissions stay open for objections (default: as in force)")
	return cmd
}

// propose sends a proposal and shows it.
func (a *app) propose(cmd *cobra.Command, req *pocnetv1.ProposeRequest) error {
	return a.call(cmd, func(ctx context.Context, c *client.Client) error { return a.proposeWith(ctx, c, req) })
}

func (a *app) proposeWith(ctx context.Context, c *client.Client, req *pocnetv1.ProposeRequest) error {
	p, err := c.Propose(ctx, req)
	if err != nil {
		return err
	}
	if a.json() {
		return a.printJSON(p, false)
	}
	return writeProposalNext(a.env.Stdout, "Proposed", p, a.now())
}

func (a *app) directorySignCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sign HASH-PREFIX",
		Short: "Sign a pending proposal for your state (admin only); name it by 8 or more hex digits of its hash",
		Args:  exactArgs("HASH-PREFIX"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := client.ValidateHashPrefix(args[0]); err != nil {
				return usagef("HASH-PREFIX: %v", err)
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				p, err := c.FindProposal(ctx, args[0])
				if err != nil {
					return err
				}
				if p, err = c.SignProposal(ctx, p.GetHash()); err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(p, false)
				}
				return writeProposalNext(a.env.Stdout, "Signed", p, a.now())
			})
		}),
	}
}

func (a *app) directoryObjectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "object HASH-PREFIX",
		Short: "Object to a pending observer admission for your state, which stops it (admin only)",
		Args:  exactArgs("HASH-PREFIX"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if err := client.ValidateHashPrefix(args[0]); err != nil {
				return usagef("HASH-PREFIX: %v", err)
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				p, err := c.FindProposal(ctx, args[0])
				if err != nil {
					return err
				}
				if p.GetChange().GetObserverAdmission() == nil {
					// A decision is opposed by not signing it; an objection
					// would not count, and the node would refuse it.
					return fmt.Errorf("proposal %s is the %s: only an observer admission is objected to; a decision is opposed by not signing it", shortHex(p.GetHash()), p.GetDescription())
				}
				if p, err = c.ObjectProposal(ctx, p.GetHash()); err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(p, false)
				}
				return writeProposalNext(a.env.Stdout, "Objected to", p, a.now())
			})
		}),
	}
}

func (a *app) directoryUpdateCmd() *cobra.Command {
	var f entryFlags
	cmd := &cobra.Command{
		Use:   "update [--entry FILE | edits]",
		Short: "Change your state's own directory entry: endpoints, CAs, revoked certificates, points of contact (admin only)",
		Long: `update changes your state's own entry in the directory, signed by your state
alone. It takes the entry as it is in the version in force, applies the
changes and publishes the whole entry as the next version; if the entry
changed in between, the node refuses rather than overwrite that change.

Either replace the whole entry:
  --entry FILE                       pocnet.v1.Member in protobuf JSON

or edit it:
  --endpoint HOST:PORT               the node's endpoints (replaces them all; repeat for several)
  --add-ca FILE                      add a root CA certificate (PEM)
  --remove-ca FILE                   remove a root CA certificate (PEM)
  --revoke-cert FILE|SHA256 --reason TEXT
                                     revoke a certificate your CA issued (PEM, or the
                                     hex SHA-256 of its DER); every node refuses it
  --set-poc-languages ROLE=en,fr     languages a PoC accepts (ROLE= for any)
  --set-poc-accepts ROLE=rfi,notification
                                     kinds of communication a PoC accepts
  --set-poc-hours "ROLE=24/7"        when a PoC is staffed, e.g.
                                     "policy=Mon-Fri 08:00-18:00 (Europe/Vienna)"

Keys are rotated with 'pocctl directory rotate-keys'.`,
		Args: exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			edit, err := f.parse(a.env.Stdin)
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				return a.updateEntry(ctx, c, edit)
			})
		}),
	}
	f.register(cmd.Flags())
	return cmd
}

// updateEntry applies edit to the state's entry in force and publishes it.
func (a *app) updateEntry(ctx context.Context, c *client.Client, edit *entryEdit) error {
	cur, err := c.DirectoryVersion(ctx, 0)
	if err != nil {
		return err
	}
	state := c.Identity().State
	base := cur.GetVersion()
	var old *pocnetv1.Member
	for _, m := range base.GetDirectory().GetMembers() {
		if m.GetState() == state {
			old = m
		}
	}
	if old == nil {
		return fmt.Errorf("%s is not a member in version %d of the directory", state, base.GetVersion())
	}
	m, err := edit.apply(old, a.now())
	if err != nil {
		return err
	}
	changes := diffMember(old, m)
	if len(changes) == 0 {
		if a.json() {
			return a.printJSONValue(map[string]any{"changed": false, "version": base.GetVersion()})
		}
		_, err := fmt.Fprintf(a.env.Stdout, "Nothing to change: the entry of %s in version %d already says this.\n", state, base.GetVersion())
		return err
	}
	v, err := c.UpdateEntry(ctx, m, base.GetVersion())
	if err != nil {
		return err
	}
	if a.json() {
		return a.printJSON(v, false)
	}
	return writeEntryUpdated(a.env.Stdout, state, v, changes, a.now())
}

func (a *app) directoryRotateKeysCmd() *cobra.Command {
	var signing, encryption bool
	cmd := &cobra.Command{
		Use:   "rotate-keys [--signing] [--encryption]",
		Short: "Make new signing and/or encryption keys on the node and publish them in your state's entry (admin only)",
		Long: `rotate-keys has the node make new keys, keep their private halves sealed in
its store and publish them in your state's entry as the next version. The
old signing key is retired: it still verifies what was signed before. The
old encryption key is retired too but kept to open what is in flight.`,
		Args: exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if !signing && !encryption {
				return usagef("give --signing, --encryption or both")
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				r, err := c.RotateKeys(ctx, signing, encryption)
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(r, false)
				}
				return writeRotation(a.env.Stdout, c.Identity().State, r, a.now())
			})
		}),
	}
	cmd.Flags().BoolVar(&signing, "signing", false, "rotate the signing key (envelopes, receipts, directory versions)")
	cmd.Flags().BoolVar(&encryption, "encryption", false, "rotate the encryption key (payloads sealed to your state)")
	return cmd
}
