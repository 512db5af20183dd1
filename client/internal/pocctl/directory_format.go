package pocctl

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/governance"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// shortHex is the first 8 bytes of a hash in hex: enough to name a version
// or proposal to people (sign and object take 8 hex digits or more).
func shortHex(h []byte) string {
	if len(h) > 8 {
		h = h[:8]
	}
	return hex.EncodeToString(h)
}

// days writes a duration in whole days or hours when it is one ("14d",
// "72h"), else as Go does.
func days(d time.Duration) string {
	switch {
	case d > 0 && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d > 0 && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	default:
		return d.String()
	}
}

// ruleName names a decision rule without its silence period.
func ruleName(r *pocnetv1.DecisionRule) string {
	switch k := r.GetRule().(type) {
	case *pocnetv1.DecisionRule_Consensus:
		return "consensus (every state member signs)"
	case *pocnetv1.DecisionRule_Supermajority:
		return fmt.Sprintf("supermajority of %d%% of the state members", k.Supermajority.GetPercent())
	case *pocnetv1.DecisionRule_Threshold:
		return fmt.Sprintf("threshold of %d state members", k.Threshold.GetStates())
	default:
		return "none"
	}
}

// describeRule names a decision rule with its silence period.
func describeRule(r *pocnetv1.DecisionRule) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%s; observers admitted by silence of %s", ruleName(r), days(r.GetSilencePeriod().AsDuration()))
}

// writeMembers writes each member and its PoCs.
func writeMembers(w io.Writer, d *pocnetv1.Directory) error {
	for _, m := range d.GetMembers() {
		fmt.Fprintf(w, "\n%s  %s (%s)\n", m.GetState(), orDash(m.GetName()), client.MemberKindName(m.GetKind()))
		fmt.Fprintf(w, "  endpoints: %s\n", orDash(strings.Join(m.GetEndpoints(), ", ")))
		if n := len(m.GetRevokedCertificates()); n > 0 {
			fmt.Fprintf(w, "  revoked certificates: %d\n", n)
		}
		if err := writePoCs(w, m.GetPointsOfContact()); err != nil {
			return err
		}
	}
	return nil
}

// writeDirectoryHead writes the federation and where the version in force
// stands in the chain: number, hash, when, what changed, the rule. A nil
// hash is a node that keeps no signed chain.
func writeDirectoryHead(w io.Writer, v *pocnetv1.DirectoryVersion, hash []byte, now time.Time) error {
	d := v.GetDirectory()
	fmt.Fprintf(w, "Federation %s — %d member(s)\n", d.GetFederationId(), len(d.GetMembers()))
	tw := table(w)
	if hash == nil {
		fmt.Fprintf(tw, "Version\tunknown: this node serves no signed directory chain\n")
		return tw.Flush()
	}
	fmt.Fprintf(tw, "Version\t%d (hash %s), issued %s\n", v.GetVersion(), shortHex(hash), when(v.GetIssuedAt(), now))
	fmt.Fprintf(tw, "Last change\t%s\n", governance.DescribeChange(v.GetChange()))
	fmt.Fprintf(tw, "Rule\t%s\n", describeRule(v.GetRule()))
	return tw.Flush()
}

// writeForks writes every fork, loudly: the chain's history has split and
// people must act.
func writeForks(w io.Writer, forks []*pocnetv1.Fork) {
	if len(forks) == 0 {
		return
	}
	fmt.Fprintf(w, "\n!! FORK: %d point(s) where the directory's history has split\n", len(forks))
	for _, f := range forks {
		fmt.Fprintf(w, "!!   version %d: this node holds %s; it refused another valid version %s", f.GetVersion(), shortHex(f.GetHaveHash()), shortHex(f.GetGotHash()))
		if len(f.GetEquivocators()) > 0 {
			fmt.Fprintf(w, "; signed both: %s", strings.Join(f.GetEquivocators(), ", "))
		} else {
			fmt.Fprint(w, " (no state signed both: changes made at the same time)")
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "!! Nothing is resolved automatically: tell the other members' operators and compare histories.")
}

// writeHistory writes a page of history, newest first, after any fork.
func writeHistory(w io.Writer, h *pocnetv1.GetHistoryResponse, limit uint32, now time.Time) error {
	fmt.Fprintf(w, "Version %d in force (hash %s)\n", h.GetHead().GetVersion(), shortHex(h.GetHead().GetHash()))
	writeForks(w, h.GetForks())
	fmt.Fprintln(w)
	vs := h.GetVersions()
	if len(vs) == 0 {
		_, err := fmt.Fprintln(w, "No versions in this page.")
		return err
	}
	tw := table(w)
	fmt.Fprintln(tw, "VERSION\tHASH\tISSUED\tCHANGE\tSIGNED BY")
	for _, v := range vs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.GetVersion(), shortHex(v.GetHash()), when(v.GetIssuedAt(), now),
			orDash(v.GetDescription()), orDash(strings.Join(v.GetSigners(), ", ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if limit == 0 {
		limit = 50
	}
	if last := vs[len(vs)-1].GetVersion(); uint32(len(vs)) >= limit && last > 1 {
		_, err := fmt.Fprintf(w, "\nOlder versions: pocctl directory history --before %d\n", last)
		return err
	}
	return nil
}

// ruleOfProposal is the rule a proposal is decided under, as the node
// describes it, without the silence period.
func ruleOfProposal(p *pocnetv1.Proposal) string {
	r, _, _ := strings.Cut(p.GetRule(), ";")
	return orDash(strings.TrimSpace(r))
}

func statesOr(s []string, none string) string {
	if len(s) == 0 {
		return none
	}
	return strings.Join(s, ", ")
}

// proposalState says in plain words where a proposal stands.
func proposalState(p *pocnetv1.Proposal, now time.Time) string {
	switch p.GetState() {
	case pocnetv1.ProposalState_PROPOSAL_STATE_PENDING:
		s := fmt.Sprintf("pending: %d of %d signatures needed under %s; signed by %s", len(p.GetSigned()), p.GetNeeded(),
			ruleOfProposal(p), statesOr(p.GetSigned(), "nobody yet"))
		if len(p.GetMissing()) > 0 {
			s += "; missing: " + strings.Join(p.GetMissing(), ", ")
		}
		return s
	case pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE:
		return fmt.Sprintf("observer admission takes effect at %s unless a state member objects; no objection so far", when(p.GetSilenceDeadline(), now))
	case pocnetv1.ProposalState_PROPOSAL_STATE_OBJECTED:
		return fmt.Sprintf("objected to by %s: will not take effect", statesOr(p.GetObjected(), "a state member"))
	case pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED:
		return fmt.Sprintf("adopted as version %d", p.GetVersion())
	case pocnetv1.ProposalState_PROPOSAL_STATE_SUPERSEDED:
		return fmt.Sprintf("superseded by version %d: propose again", p.GetVersion())
	default:
		return fmt.Sprintf("unknown (%v)", p.GetState())
	}
}

// nextStep says what happens next to a proposal, and who can act.
func nextStep(p *pocnetv1.Proposal, now time.Time) string {
	prefix := shortHex(p.GetHash())
	switch p.GetState() {
	case pocnetv1.ProposalState_PROPOSAL_STATE_PENDING:
		more := int(p.GetNeeded()) - len(p.GetSigned())
		if more <= 0 {
			return "Next: it takes effect as soon as your node has gathered the signatures."
		}
		return fmt.Sprintf("Next: it goes to every member's node and takes effect once %d more of %s sign it; their admins run: pocctl directory sign %s",
			more, statesOr(p.GetMissing(), "the state members"), prefix)
	case pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE:
		return fmt.Sprintf("Next: nothing, unless a state member objects before %s (pocctl directory object %s); otherwise %s is admitted then.",
			utc(p.GetSilenceDeadline()), prefix, orDash(p.GetMember().GetState()))
	case pocnetv1.ProposalState_PROPOSAL_STATE_OBJECTED:
		return "It will not take effect: an observer is admitted only if no state member objects."
	case pocnetv1.ProposalState_PROPOSAL_STATE_ADOPTED:
		return fmt.Sprintf("It is in force as version %d.", p.GetVersion())
	case pocnetv1.ProposalState_PROPOSAL_STATE_SUPERSEDED:
		return fmt.Sprintf("Another version %d took its place first: see 'pocctl directory' and propose again if it is still wanted.", p.GetVersion())
	default:
		return ""
	}
}

// writeProposal writes one proposal under a title such as "Proposal" or
// "Signed".
func writeProposal(w io.Writer, title string, p *pocnetv1.Proposal, now time.Time) error {
	fmt.Fprintf(w, "%s %s: %s\n", title, shortHex(p.GetHash()), orDash(p.GetDescription()))
	tw := table(w)
	fmt.Fprintf(tw, "  State\t%s\n", proposalState(p, now))
	if p.GetRule() != "" {
		fmt.Fprintf(tw, "  Rule\t%s\n", p.GetRule())
	}
	fmt.Fprintf(tw, "  Proposed\t%s\n", when(p.GetIssuedAt(), now))
	if m := p.GetMember(); m != nil {
		fmt.Fprintf(tw, "  Entry\t%s %s (%s), endpoints: %s\n", m.GetState(), orDash(m.GetName()), client.MemberKindName(m.GetKind()), orDash(strings.Join(m.GetEndpoints(), ", ")))
		if len(m.GetPointsOfContact()) > 0 {
			roles := make([]string, len(m.GetPointsOfContact()))
			for i, poc := range m.GetPointsOfContact() {
				roles[i] = poc.GetRole()
			}
			fmt.Fprintf(tw, "  \tpoints of contact: %s\n", strings.Join(roles, ", "))
		}
	}
	fmt.Fprintf(tw, "  Hash\t%x\n", p.GetHash())
	return tw.Flush()
}

// writeProposals writes every proposal, oldest first.
func writeProposals(w io.Writer, ps []*pocnetv1.Proposal, now time.Time) error {
	if len(ps) == 0 {
		_, err := fmt.Fprintln(w, "No proposals.")
		return err
	}
	for i, p := range ps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := writeProposal(w, "Proposal", p, now); err != nil {
			return err
		}
	}
	return nil
}

// writeProposalNext writes a proposal just acted on and what happens next.
func writeProposalNext(w io.Writer, verb string, p *pocnetv1.Proposal, now time.Time) error {
	if err := writeProposal(w, verb, p, now); err != nil {
		return err
	}
	if s := nextStep(p, now); s != "" {
		_, err := fmt.Fprintf(w, "\n%s\n", s)
		return err
	}
	return nil
}

// writeEntryUpdated writes the version now holding the state's entry and
// what changed in it.
func writeEntryUpdated(w io.Writer, state string, v *pocnetv1.VersionSummary, changes []string, now time.Time) error {
	fmt.Fprintf(w, "Entry of %s updated: version %d (hash %s), issued %s, signed by %s\n", state, v.GetVersion(), shortHex(v.GetHash()),
		when(v.GetIssuedAt(), now), statesOr(v.GetSigners(), "-"))
	for _, c := range changes {
		fmt.Fprintf(w, "  %s\n", c)
	}
	return nil
}

// writeRotation writes the keys a rotation made and when they are used.
func writeRotation(w io.Writer, state string, r *pocnetv1.RotateKeysResponse, now time.Time) error {
	v := r.GetVersion()
	fmt.Fprintf(w, "New keys of %s published in version %d (hash %s), issued %s\n", state, v.GetVersion(), shortHex(v.GetHash()), when(v.GetIssuedAt(), now))
	if id := r.GetSigningKeyId(); id != "" {
		fmt.Fprintf(w, "  signing key     %s: the node signs with it from this version on; the old key is retired and still verifies what it signed before\n", id)
	}
	if id := r.GetEncryptionKeyId(); id != "" {
		fmt.Fprintf(w, "  encryption key  %s: senders seal to it from this version on; the old key is retired and kept for what is in flight\n", id)
	}
	return nil
}
