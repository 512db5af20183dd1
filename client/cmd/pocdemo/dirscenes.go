package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// sceneAdmission: XFF makes its material, starts its node before it is
// admitted, and is admitted by XAA, XBB, XCC and XDD signing at their own
// nodes; its node joins by itself and exchanges with XAA.
func (x *dirDemo) sceneAdmission(ctx context.Context) error {
	section(x.out, "1. A new state, XFF, admitted by 4 of the 5 states",
		"XFF makes its own CA, certificates and keys and starts its node before anyone admits it. XAA proposes the admission; each state signs at its own node, with its own key. Under supermajority:70, 4 of the 5 signatures put it in force.")
	out, err := x.pocfed(ctx, "member", "--dir", fedFolder, "--state", xff)
	if err != nil {
		return err
	}
	x.printOutput(firstLines(out, 2), "")
	if err := x.startMember(ctx, xff); err != nil {
		return err
	}
	line, err := x.waitLog(ctx, xff, "waiting to be admitted")
	if err != nil {
		return err
	}
	x.step("XFF's node log: %s", line)
	x.note("The founders' nodes refuse XFF's certificate for now: no version of their directory lists its CA. XFF's node keeps asking them for newer versions.")

	if _, err := x.ctlBrief(ctx, xaa, identity.AdminRole, "directory", "propose", "admit", "--entry", filepath.Join(xff, "member.json")); err != nil {
		return err
	}
	p, err := x.proposal(ctx, xaa, admissionOf(xff))
	if err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("XAA's node holds no admission of %s after proposing it", xff)
	}
	for _, s := range []string{xbb, xcc} {
		if _, err := x.waitProposal(ctx, s, "the admission of XFF", admissionOf(xff), nil); err != nil {
			return err
		}
		if _, err := x.ctlBrief(ctx, s, identity.AdminRole, "directory", "sign", prefix(p)); err != nil {
			return err
		}
	}
	three := func(p *pocnetv1.Proposal) bool { return len(p.GetSigned()) == 3 }
	st, err := x.waitProposal(ctx, xdd, "the admission of XFF with three signatures", admissionOf(xff), three)
	if err != nil {
		return err
	}
	if _, err := x.ctl(ctx, xdd, identity.AdminRole, "directory", "status"); err != nil {
		return err
	}
	if st.GetNeeded() != 4 || !sameSet(st.GetSigned(), []string{xaa, xbb, xcc}) || !sameSet(st.GetMissing(), []string{xdd, xee}) ||
		st.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_PENDING {
		return fmt.Errorf("XDD's node shows the admission of XFF %s with %d needed, signed by %v, missing %v; want PENDING, 4 needed, signed by XAA, XBB, XCC, missing XDD, XEE",
			client.ProposalStateName(st.GetState()), st.GetNeeded(), st.GetSigned(), st.GetMissing())
	}
	x.step("XDD's node: %d of %d signatures (%s), missing %s: not in force yet", len(st.GetSigned()), st.GetNeeded(), andList(st.GetSigned()), andList(st.GetMissing()))
	if _, err := x.ctlBrief(ctx, xdd, identity.AdminRole, "directory", "sign", prefix(p)); err != nil {
		return err
	}
	h, err := x.waitConverged(ctx, 2, "every founder's node to adopt the admission of XFF")
	if err != nil {
		return err
	}
	if h.v.GetChange().GetAdmission().GetState() != xff || !listed(h.v, xff) {
		return fmt.Errorf("version 2 is %q, not the admission of %s", describeVersion(h.v), xff)
	}
	x.step("every founder's node holds version 2 (hash %s): %s, signed by %s", h.short(), describeVersion(h.v), andList(x.signersOf(ctx, 2)))

	line, err = x.waitLog(ctx, xff, "admitted: this state is a member")
	if err != nil {
		return err
	}
	x.step("XFF's node log: %s", line)
	if err := x.connect(ctx, xff, identity.AdminRole, false); err != nil {
		return err
	}
	if err := x.connect(ctx, xff, technical, true); err != nil {
		return err
	}
	x.members = append(x.members, xff)
	if h, err = x.waitConverged(ctx, 2, "XFF's node to hold version 2"); err != nil {
		return err
	}
	if p := x.nodes[xff]; !p.running() || p.cmd.Process.Pid != x.pids[xff] {
		return fmt.Errorf("the node of %s is not the process started before its admission", xff)
	}
	x.step("XFF's node joined by itself: the same process (pid %d) that waited now serves, with version 2 (hash %s)", x.pids[xff], h.short())

	m, err := x.send(ctx, xff, technical, &pocnetv1.SendCommunicationRequest{
		ToState: xaa, ToRole: technical,
		Communication: &pocnetv1.Communication{
			Kind:            pocnetv1.Kind_KIND_COMMUNICATION_CHECK,
			Urgency:         pocnetv1.Urgency_URGENCY_ROUTINE,
			Subject:         "Communication check from XFF, newly admitted",
			Body:            "XFF's national CERT is now reachable through pocnet. Please confirm that this check reached you.",
			Language:        "en",
			RequestedAction: "Confirm receipt by answering this check.",
			HandlingCode:    pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION,
		},
	})
	if err != nil {
		return err
	}
	return x.answer(ctx, m, xff, xaa, "Re: communication check: XAA reads XFF", "Welcome, XFF. XAA's national CERT received your check.")
}

// answer has to's technical PoC receive message m and answer it, and from's
// see it DELIVERED then RESPONDED.
func (x *dirDemo) answer(ctx context.Context, m *pocnetv1.Message, from, to, subject, body string) error {
	if _, err := x.expectArrival(ctx, to, technical, m.GetId()); err != nil {
		return err
	}
	if _, err := x.expectStatus(ctx, from, technical, m.GetId(), pocnetv1.Status_STATUS_DELIVERED, ""); err != nil {
		return err
	}
	resp, err := x.op(to, technical).c.Respond(ctx, m.GetId(), &pocnetv1.Communication{Subject: subject, Body: body, Language: "en"}, "")
	if err != nil {
		return err
	}
	x.step("%s/%s responds: %q", to, technical, resp.GetCommunication().GetSubject())
	final, err := x.expectStatus(ctx, from, technical, m.GetId(), pocnetv1.Status_STATUS_RESPONDED, "")
	if err != nil {
		return err
	}
	x.detail("status trail: %s", x.trail(final))
	return nil
}

// sceneObservers: XOO is proposed as an observer by XBB, nobody objects,
// and it is in force on every node after the silence period; XPP is
// proposed by XDD and objected to by XCC, and is still nowhere after its
// deadline.
func (x *dirDemo) sceneObservers(ctx context.Context) error {
	section(x.out, "2. Observers, admitted by silence unless a state member objects",
		fmt.Sprintf("An observer needs no signature beyond its proposer's: it is admitted when the silence period (%s in this federation) ends, unless a state member objects. XBB proposes XOO and nobody objects; then XDD proposes XPP and XCC objects.", silencePeriod))
	out, err := x.pocfed(ctx, "member", "--dir", fedFolder, "--state", xoo, "--observer")
	if err != nil {
		return err
	}
	x.printOutput(firstLines(out, 1), "")
	before, err := x.headOf(ctx, xaa)
	if err != nil {
		return err
	}
	if _, err := x.ctlBrief(ctx, xbb, identity.AdminRole, "directory", "propose", "observer", "--entry", filepath.Join(xoo, "member.json")); err != nil {
		return err
	}
	silent := func(p *pocnetv1.Proposal) bool { return p.GetState() == pocnetv1.ProposalState_PROPOSAL_STATE_SILENCE }
	var po *pocnetv1.Proposal
	for _, s := range x.members {
		if po, err = x.waitProposal(ctx, s, "the observer admission of XOO", admissionOf(xoo), silent); err != nil {
			return err
		}
	}
	if _, err := x.ctl(ctx, xee, identity.AdminRole, "directory", "status"); err != nil {
		return err
	}
	x.step("every node holds XOO's admission, in silence until %s, no objection", x.sinceTS(po.GetSilenceDeadline()))
	h, err := x.waitConverged(ctx, before.number+1, "every node to adopt XOO at the end of its silence period")
	if err != nil {
		return err
	}
	if h.v.GetChange().GetObserverAdmission().GetState() != xoo || !listedAs(h.v, xoo, pocnetv1.MemberKind_MEMBER_KIND_OBSERVER) {
		return fmt.Errorf("version %d is %q, not the observer admission of %s", h.number, describeVersion(h.v), xoo)
	}
	x.step("every node holds version %d (hash %s): %s, signed by %s alone; XOO is listed as an observer",
		h.number, h.short(), describeVersion(h.v), andList(x.signersOf(ctx, h.number)))

	out, err = x.pocfed(ctx, "member", "--dir", fedFolder, "--state", xpp, "--observer")
	if err != nil {
		return err
	}
	x.printOutput(firstLines(out, 1), "")
	if _, err := x.ctlBrief(ctx, xdd, identity.AdminRole, "directory", "propose", "observer", "--entry", filepath.Join(xpp, "member.json")); err != nil {
		return err
	}
	pp, err := x.proposal(ctx, xdd, admissionOf(xpp))
	if err != nil {
		return err
	}
	if pp == nil || pp.GetSilenceDeadline() == nil {
		return fmt.Errorf("XDD's node holds no observer admission of %s with a deadline after proposing it", xpp)
	}
	if _, err := x.waitProposal(ctx, xcc, "the observer admission of XPP", admissionOf(xpp), nil); err != nil {
		return err
	}
	if _, err := x.ctlBrief(ctx, xcc, identity.AdminRole, "directory", "object", prefix(pp)); err != nil {
		return err
	}
	objected := func(p *pocnetv1.Proposal) bool {
		return slices.Contains(p.GetObjected(), xcc) && p.GetState() == pocnetv1.ProposalState_PROPOSAL_STATE_OBJECTED
	}
	for _, s := range x.members {
		if _, err := x.waitProposal(ctx, s, "XCC's objection to XPP", admissionOf(xpp), objected); err != nil {
			return err
		}
	}
	x.step("every node holds XPP's admission with XCC's objection; its deadline is %s", x.sinceTS(pp.GetSilenceDeadline()))
	// Past the deadline, a node adopts an observer admission nobody
	// objected to within milliseconds (XOO's above); XPP's must not be.
	if err := x.waitUntil(ctx, pp.GetSilenceDeadline().AsTime().Add(time.Second)); err != nil {
		return err
	}
	if _, err := x.ctl(ctx, xee, identity.AdminRole, "directory", "status"); err != nil {
		return err
	}
	for _, s := range x.members {
		hs, err := x.headOf(ctx, s)
		if err != nil {
			return err
		}
		if hs.number != h.number || listed(hs.v, xpp) {
			return fmt.Errorf("after XPP's deadline the node of %s holds version %d (%s), want still version %d without XPP", s, hs.number, describeVersion(hs.v), h.number)
		}
		p, err := x.proposal(ctx, s, admissionOf(xpp))
		if err != nil {
			return err
		}
		if p == nil || !objected(p) {
			return fmt.Errorf("after XPP's deadline the node of %s does not hold XPP's admission as objected to by XCC", s)
		}
	}
	x.step("XPP's deadline has passed: every node still holds version %d and lists no XPP; the admission stands objected to by XCC", h.number)
	return nil
}

// waitUntil waits for the clock to reach t; it is no proof of anything,
// only the moment after which the demo checks.
func (x *dirDemo) waitUntil(ctx context.Context, t time.Time) error {
	if d := time.Until(t); d > stepTimeout {
		return fmt.Errorf("a deadline %s away is past the demo's bound of %s", d.Round(time.Second), stepTimeout)
	}
	select {
	case <-time.After(time.Until(t)):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sceneRotation: XCC rotates both keys through its node; every node adopts
// the version, and a communication XCC -> XAA and its answer use the new
// keys.
func (x *dirDemo) sceneRotation(ctx context.Context) error {
	section(x.out, "3. XCC rotates its signing and encryption keys through its own node",
		"The node makes the new keys, keeps their private halves sealed in its store, and publishes the public halves in XCC's entry, a version signed by XCC alone with its old key. Every node adopts it live; senders seal to the new key from then on.")
	before, err := x.headOf(ctx, xcc)
	if err != nil {
		return err
	}
	old, _ := memberOf(before.v, xcc)
	oldSign, oldEnc := activeSigning(old), activeEncryption(old)
	x.step("XCC's keys in version %d: signing %s, encryption %s", before.number, oldSign, oldEnc)
	if _, err := x.ctl(ctx, xcc, identity.AdminRole, "directory", "rotate-keys", "--signing", "--encryption"); err != nil {
		return err
	}
	h, err := x.waitConverged(ctx, before.number+1, "every node to adopt XCC's new keys")
	if err != nil {
		return err
	}
	cur, _ := memberOf(h.v, xcc)
	newSign, newEnc := activeSigning(cur), activeEncryption(cur)
	if newSign == "" || newSign == oldSign || newEnc == "" || newEnc == oldEnc ||
		signingStatus(cur, oldSign) != pocnetv1.KeyStatus_KEY_STATUS_RETIRED || encryptionStatus(cur, oldEnc) != pocnetv1.KeyStatus_KEY_STATUS_RETIRED {
		return fmt.Errorf("version %d does not list new ACTIVE keys of XCC with the old ones RETIRED: %v %v", h.number, cur.GetSigningKeys(), cur.GetEncryptionKeys())
	}
	x.step("every node holds version %d (hash %s): %s; XCC's entry lists:", h.number, h.short(), describeVersion(h.v))
	for _, k := range cur.GetSigningKeys() {
		x.detail("  signing     %-48s %s", k.GetKeyId(), keyStatusName(k.GetStatus()))
	}
	for _, k := range cur.GetEncryptionKeys() {
		x.detail("  encryption  %-48s %s", k.GetKeyId(), keyStatusName(k.GetStatus()))
	}

	m, err := x.send(ctx, xcc, technical, &pocnetv1.SendCommunicationRequest{
		ToState: xaa, ToRole: technical,
		Communication: &pocnetv1.Communication{
			Kind:            pocnetv1.Kind_KIND_NOTIFICATION,
			Urgency:         pocnetv1.Urgency_URGENCY_PRIORITY,
			Subject:         "XCC has rotated its pocnet keys",
			Body:            "XCC has published new signing and encryption keys in the directory. Please tell us if anything from XCC fails to verify.",
			Language:        "en",
			RequestedAction: "Answer if this notification verifies at your node.",
			HandlingCode:    pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION,
		},
	})
	if err != nil {
		return err
	}
	if err := x.answer(ctx, m, xcc, xaa, "Re: XCC has rotated its keys: verified", "Your notification verified at XAA's node with your new key."); err != nil {
		return err
	}
	// XCC's node holds both receipts once XCC sees RESPONDED: XAA's for the
	// notification, and its own for the response it stored.
	t, err := x.op(xcc, technical).c.ExportThread(ctx, m.GetId())
	if err != nil {
		return err
	}
	if len(t.GetEntries()) != 2 {
		return fmt.Errorf("the thread of %s has %d envelopes at XCC, want 2 (the notification and its response)", m.GetId(), len(t.GetEntries()))
	}
	x.step("the thread as XCC's node exports it (envelopes exactly as signed):")
	for _, e := range t.GetEntries() {
		var hdr pocnetv1.EnvelopeHeader
		if err := proto.Unmarshal(e.GetEnvelope().GetHeader(), &hdr); err != nil {
			return err
		}
		signedWith := e.GetEnvelope().GetSignature().GetKeyId()
		x.detail("%-14s %s -> %s  signed with %s, sealed to %s", client.EnvelopeTypeWords(hdr.GetType()), hdr.GetFromState(), hdr.GetToState(), signedWith, strings.Join(hdr.GetRecipientKeyIds(), ", "))
		if r := e.GetReceipt(); r != nil {
			x.detail("%-14s receipt of %s's node signed with %s", "", hdr.GetToState(), r.GetSignature().GetKeyId())
		}
		switch hdr.GetFromState() {
		case xcc:
			if signedWith != newSign {
				return fmt.Errorf("XCC's envelope is signed with %s, not its new key %s", signedWith, newSign)
			}
		case xaa:
			if !slices.Equal(hdr.GetRecipientKeyIds(), []string{newEnc}) {
				return fmt.Errorf("XAA's answer is sealed to %v, not XCC's new key %s", hdr.GetRecipientKeyIds(), newEnc)
			}
			if r := e.GetReceipt(); r == nil || r.GetSignature().GetKeyId() != newSign {
				return fmt.Errorf("XCC's receipt for XAA's answer is not signed with its new key %s", newSign)
			}
		}
	}
	x.note("XCC signs with its new key, XAA seals its answer to XCC's new encryption key, and XCC's node signs its receipt with the new key: no node was restarted or reconfigured.")
	return nil
}

// sceneRevocation: XDD revokes the certificate of its diplomatic desk; the
// running watch opened with it is cut and a new connection is refused at
// the handshake.
func (x *dirDemo) sceneRevocation(ctx context.Context) error {
	section(x.out, "4. A revoked certificate, refused at the handshake",
		"The laptop of XDD's diplomatic desk, which holds its operator certificate, is lost. XDD's admin revokes the certificate in XDD's own entry. Every node that holds the version refuses it; XDD's node also cuts the streams already open with it.")
	if err := x.connect(ctx, xdd, diplomatic, true); err != nil {
		return err
	}
	o := x.op(xdd, diplomatic)
	st, err := o.c.Status(ctx)
	if err != nil {
		return err
	}
	x.step("XDD/diplomatic is connected to XDD's node as %s and watches its events", st.GetCallerIdentity())
	certPath, err := x.opConfig(xdd, diplomatic)
	if err != nil {
		return err
	}
	certPath = filepath.Join(filepath.Dir(certPath), "cert.pem")
	sum, err := certSum(certPath)
	if err != nil {
		return err
	}
	rel, _ := filepath.Rel(x.fedDir, certPath)
	before, err := x.headOf(ctx, xdd)
	if err != nil {
		return err
	}
	if _, err := x.ctl(ctx, xdd, identity.AdminRole, "directory", "update", "--revoke-cert", rel, "--reason", revocationReason); err != nil {
		return err
	}
	h, err := x.waitConverged(ctx, before.number+1, "every node to adopt XDD's revocation")
	if err != nil {
		return err
	}
	mem, _ := memberOf(h.v, xdd)
	if !slices.ContainsFunc(mem.GetRevokedCertificates(), func(r *pocnetv1.RevokedCertificate) bool { return string(r.GetSha256()) == string(sum[:]) }) {
		return fmt.Errorf("version %d does not list the certificate sha256:%x as revoked by XDD", h.number, sum)
	}
	x.step("every node holds version %d (hash %s): %s, revoking sha256:%x", h.number, h.short(), describeVersion(h.v), sum[:8])

	ended, err := o.events.waitEnd(ctx, "XDD's node to cut the watch of the revoked certificate")
	if err != nil {
		return err
	}
	if ended == nil || !strings.Contains(ended.Error(), "was revoked by XDD") {
		return fmt.Errorf("the watch of XDD/diplomatic ended with %v, not a refusal of its revoked certificate", ended)
	}
	x.step("XDD's node cut the watch stream already open with it:")
	x.detail("%s", ended)
	_, err = o.c.Status(ctx)
	if err == nil || !strings.Contains(err.Error(), "was revoked by XDD") {
		return fmt.Errorf("a call with the revoked certificate on its open connection: %v, want a refusal naming the revocation", err)
	}
	x.step("a new call on its connection, opened before the revocation, is refused:")
	x.detail("%s", err)
	o.close()
	delete(x.ops, xdd+"/"+diplomatic)
	cfgPath, _ := x.opConfig(xdd, diplomatic)
	cfg, err := client.LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := client.Dial(dctx, cfg)
	cancel()
	if err == nil {
		c.Close()
		return fmt.Errorf("XDD's node accepted a new connection with the revoked certificate")
	}
	x.step("a new connection with the revoked certificate fails at the TLS handshake:")
	x.detail("%s", err)
	x.detail("(TLS sends no reason: the client sees the alert \"bad certificate\", or a closed connection if it wrote first)")
	line, err := x.waitLog(ctx, xdd, "call refused")
	if err != nil {
		return err
	}
	x.detail("XDD's node logs why, for the call on the open connection (a refused handshake is not logged):")
	x.detail("%s: %s", line, lastCause(line.field("error")))
	if _, err := x.admin(xdd).Status(ctx); err != nil {
		return fmt.Errorf("XDD's admin, whose certificate was not revoked, is refused: %w", err)
	}
	x.note("XDD's other operators are unaffected. The revocation is part of the signed directory: every node holding the version refuses that certificate, whoever presents it.")
	return nil
}

// sceneHistory shows the chain as XFF's node holds it and checks that no
// node was restarted.
func (x *dirDemo) sceneHistory(ctx context.Context) error {
	section(x.out, "6. The chain, and the same processes from start to end",
		"The whole history, as the node of XFF (which joined half-way) holds it: every version verified from the genesis.")
	if _, err := x.ctl(ctx, xff, identity.AdminRole, "directory", "history"); err != nil {
		return err
	}
	last, err := x.headOf(ctx, xff)
	if err != nil {
		return err
	}
	h, err := x.waitConverged(ctx, last.number, "every node to hold the same head")
	if err != nil {
		return err
	}
	hist, err := x.admin(xff).DirectoryHistory(ctx, 0, 0)
	if err != nil {
		return err
	}
	if len(hist.GetForks()) > 0 {
		return fmt.Errorf("XFF's node reports %d fork(s) of the directory chain", len(hist.GetForks()))
	}
	for _, v := range hist.GetVersions() {
		if a := v.GetChange().GetObserverAdmission(); a != nil && a.GetState() == xpp {
			return fmt.Errorf("version %d admits %s, to which XCC objected", v.GetVersion(), xpp)
		}
	}
	x.step("every one of the %d nodes holds version %d (hash %s); no fork", len(x.members), h.number, h.short())
	x.step("the node processes, at the start and now:")
	for _, s := range x.order {
		p := x.nodes[s]
		starts, err := x.countLog(s, "node started")
		if err != nil {
			return err
		}
		if !p.running() || p.cmd.Process.Pid != x.pids[s] || starts != 1 {
			return fmt.Errorf("the node of %s was restarted or stopped: pid %d at the start, now %d (running %v), %d starts in its log",
				s, x.pids[s], p.cmd.Process.Pid, p.running(), starts)
		}
		x.detail("%s  pid %-7d still running, pid %d; started once", s, x.pids[s], p.cmd.Process.Pid)
	}
	x.note("No node was restarted: an admission, observers, new keys, a renewed certificate and two revocations all reached every node live.")
	return nil
}

// certSum returns the SHA-256 of the DER of the certificate in a PEM file,
// as the directory lists revoked certificates.
func certSum(path string) ([sha256.Size]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return [sha256.Size]byte{}, fmt.Errorf("%s: no PEM block", path)
	}
	if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("%s: %w", path, err)
	}
	return sha256.Sum256(b.Bytes), nil
}

// signersOf returns the states that signed version n, as XAA's node
// reports them.
func (x *dirDemo) signersOf(ctx context.Context, n uint64) []string {
	h, err := x.admin(xaa).DirectoryHistory(ctx, n+1, 1)
	if err != nil || len(h.GetVersions()) != 1 {
		return []string{"?"}
	}
	return h.GetVersions()[0].GetSigners()
}

// describeVersion says what a version changed, in words.
func describeVersion(v *pocnetv1.DirectoryVersion) string {
	c := v.GetChange()
	switch {
	case c.GetAdmission() != nil:
		return "admission of " + c.GetAdmission().GetState()
	case c.GetObserverAdmission() != nil:
		return "observer admission of " + c.GetObserverAdmission().GetState()
	case c.GetRemoval() != nil:
		return "removal of " + c.GetRemoval().GetState()
	case c.GetEntryUpdate() != nil:
		return "entry update of " + c.GetEntryUpdate().GetState()
	case c.GetRuleChange() != nil:
		return "rule change"
	default:
		return "genesis"
	}
}

func memberOf(v *pocnetv1.DirectoryVersion, state string) (*pocnetv1.Member, bool) {
	for _, m := range v.GetDirectory().GetMembers() {
		if m.GetState() == state {
			return m, true
		}
	}
	return nil, false
}

func listed(v *pocnetv1.DirectoryVersion, state string) bool {
	_, ok := memberOf(v, state)
	return ok
}

func listedAs(v *pocnetv1.DirectoryVersion, state string, kind pocnetv1.MemberKind) bool {
	m, ok := memberOf(v, state)
	return ok && m.GetKind() == kind
}

func activeSigning(m *pocnetv1.Member) string {
	for _, k := range slices.Backward(m.GetSigningKeys()) {
		if k.GetStatus() == pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
			return k.GetKeyId()
		}
	}
	return ""
}

func activeEncryption(m *pocnetv1.Member) string {
	for _, k := range slices.Backward(m.GetEncryptionKeys()) {
		if k.GetStatus() == pocnetv1.KeyStatus_KEY_STATUS_ACTIVE {
			return k.GetKeyId()
		}
	}
	return ""
}

func signingStatus(m *pocnetv1.Member, id string) pocnetv1.KeyStatus {
	for _, k := range m.GetSigningKeys() {
		if k.GetKeyId() == id {
			return k.GetStatus()
		}
	}
	return pocnetv1.KeyStatus_KEY_STATUS_UNSPECIFIED
}

func encryptionStatus(m *pocnetv1.Member, id string) pocnetv1.KeyStatus {
	for _, k := range m.GetEncryptionKeys() {
		if k.GetKeyId() == id {
			return k.GetStatus()
		}
	}
	return pocnetv1.KeyStatus_KEY_STATUS_UNSPECIFIED
}

func keyStatusName(s pocnetv1.KeyStatus) string {
	return strings.TrimPrefix(s.String(), "KEY_STATUS_")
}

// sameSet reports whether a and b hold the same strings.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// sceneRenewal: XEE renews its node certificate without a restart, then
// revokes the old one, which every node refuses from then on while the new
// one works.
func (x *dirDemo) sceneRenewal(ctx context.Context) error {
	section(x.out, "5. XEE renews its node certificate, then revokes the old one",
		"XEE issues a new node certificate with its own CA, puts the files in place and sends its node SIGHUP: the node presents the new certificate from the next handshake on and reconnects to its peers with it. Then XEE revokes the old certificate in its entry, and every node refuses it.")
	nodeDir := filepath.Join(x.fedDir, xee, "node")
	oldCert, err := tls.LoadX509KeyPair(filepath.Join(nodeDir, "node.pem"), filepath.Join(nodeDir, "node-key.pem"))
	if err != nil {
		return err
	}
	// The old pair is kept aside, as whoever took a copy would hold it.
	for _, f := range [][2]string{{"node.pem", "node-old.pem"}, {"node-key.pem", "node-old-key.pem"}} {
		if err := copyFile(filepath.Join(nodeDir, f[0]), filepath.Join(nodeDir, f[1])); err != nil {
			return err
		}
	}
	h, err := x.headOf(ctx, xee)
	if err != nil {
		return err
	}
	renewed, err := x.renew(xee, h.v.GetDirectory().GetFederationId(), nodeDir)
	if err != nil {
		return err
	}
	newSum := sha256.Sum256(renewed.Cert.Raw)
	x.step("XEE issues a new node certificate with its own CA (sha256:%x) and writes it to XEE/node/node.pem and node-key.pem; the old pair is kept as node-old.pem", newSum[:8])
	p := x.nodes[xee]
	x.step("$ kill -HUP %d   (XEE's node)", p.cmd.Process.Pid)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("SIGHUP to the node of %s: %w", xee, err)
	}
	want := fmt.Sprintf("%x", newSum)
	line, err := x.waitLog(ctx, xee, want)
	if err != nil {
		return err
	}
	x.step("XEE's node log: %s, sha256:%s...", line, want[:16])

	dir, err := directory.New(h.v.GetDirectory())
	if err != nil {
		return err
	}
	others := slices.DeleteFunc(slices.Clone(x.members), func(s string) bool { return s == xee })
	for _, s := range others {
		if err := x.probe(ctx, dir, s, &oldCert); err != nil {
			return fmt.Errorf("before its revocation, the node of %s refuses XEE's old certificate: %w", s, err)
		}
	}
	x.step("the old certificate is still valid and not revoked: %s accept it (health check over mutual TLS as XEE's node)", andList(others))
	oldPath := filepath.Join(xee, "node", "node-old.pem")
	if _, err := x.ctl(ctx, xee, identity.AdminRole, "directory", "update", "--revoke-cert", oldPath, "--reason", "replaced by a renewed certificate"); err != nil {
		return err
	}
	v, err := x.waitConverged(ctx, h.number+1, "every node to adopt XEE's revocation")
	if err != nil {
		return err
	}
	x.step("every node holds version %d (hash %s): %s", v.number, v.short(), describeVersion(v.v))
	if dir, err = directory.New(v.v.GetDirectory()); err != nil {
		return err
	}
	x.step("XEE's old certificate, presented to every other node:")
	for _, s := range others {
		err := x.probe(ctx, dir, s, &oldCert)
		if err == nil {
			return fmt.Errorf("the node of %s still accepts XEE's revoked certificate", s)
		}
		x.detail("%s refuses it: %s", s, lastCause(err.Error()))
	}
	for _, s := range others {
		if err := x.probe(ctx, dir, s, &renewed.TLS); err != nil {
			return fmt.Errorf("the node of %s refuses XEE's renewed certificate: %w", s, err)
		}
	}
	x.step("XEE's renewed certificate: accepted by %s", andList(others))
	if err := x.connect(ctx, xee, technical, true); err != nil {
		return err
	}
	m, err := x.send(ctx, xaa, technical, &pocnetv1.SendCommunicationRequest{
		ToState: xee, ToRole: technical,
		Communication: &pocnetv1.Communication{
			Kind:         pocnetv1.Kind_KIND_COMMUNICATION_CHECK,
			Urgency:      pocnetv1.Urgency_URGENCY_ROUTINE,
			Subject:      "Communication check after XEE's certificate renewal",
			Body:         "XAA checks that XEE's node is reachable with its renewed certificate.",
			Language:     "en",
			HandlingCode: pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION,
		},
	})
	if err != nil {
		return err
	}
	if _, err := x.expectArrival(ctx, xee, technical, m.GetId()); err != nil {
		return err
	}
	if _, err := x.expectStatus(ctx, xaa, technical, m.GetId(), pocnetv1.Status_STATUS_DELIVERED, ""); err != nil {
		return err
	}
	x.note("XEE's node kept running throughout: it renewed its certificate on SIGHUP, and the revocation of the old one reached every node as a signed version.")
	return nil
}

// renew issues a new node certificate for state with its CA files and
// writes it over the node's certificate files, key first, each by a
// rename, so that the node never reads half a file.
func (x *dirDemo) renew(state, federation, nodeDir string) (*certs.Issued, error) {
	caDir := filepath.Dir(nodeDir)
	certPEM, err := os.ReadFile(filepath.Join(caDir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(caDir, "ca-key.pem"))
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("the CA files of %s in %s are not PEM", state, x.path(caDir))
	}
	caCert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the CA key of %s cannot sign", state)
	}
	ca := &certs.CA{State: state, Cert: caCert, Key: signer, CertPEM: certPEM, KeyPEM: keyPEM}
	now := time.Now()
	iss, err := ca.Issue(identity.Node(federation, state), now.Add(-5*time.Minute), now.Add(certs.DefaultValidity))
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"node-key.pem", iss.KeyPEM}, {"node.pem", iss.CertPEM}} {
		tmp := filepath.Join(nodeDir, "."+f.name+".new")
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, filepath.Join(nodeDir, f.name)); err != nil {
			return nil, err
		}
	}
	return iss, nil
}

// probe makes a health check of state's node over mutual TLS with cert,
// trusting what dir trusts, and returns why it failed.
func (x *dirDemo) probe(ctx context.Context, dir *directory.Directory, state string, cert *tls.Certificate) error {
	fedID := dir.Federation()
	tlsCfg := identity.ClientConfig(cert, identity.Static{B: dir.Bundle()}, identity.Node(fedID, state), nil)
	conn, err := grpc.NewClient(x.nodes[state].addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health status %s", resp.GetStatus())
	}
	return nil
}

// copyFile copies a small file, keeping it private.
func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o600)
}
