package pocctl

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/text/language"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// maxCertFile bounds a certificate file read for --add-ca, --remove-ca or
// --revoke-cert.
const maxCertFile = 1 << 20

// readMember reads a directory entry in protobuf JSON; unknown fields are
// errors, so that a misspelt field is not silently dropped from what the
// state signs.
func readMember(path string, stdin io.Reader) (*pocnetv1.Member, error) {
	if path == "" {
		return nil, fmt.Errorf("a file is required")
	}
	data, err := readFile(path, stdin, directory.MaxSize)
	if err != nil {
		return nil, err
	}
	m := &pocnetv1.Member{}
	if err := protojson.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%s: not a pocnet.v1.Member in protobuf JSON: %v", path, err)
	}
	return m, nil
}

// parseRule reads consensus, supermajority:PERCENT or threshold:STATES.
func parseRule(spec string) (*pocnetv1.DecisionRule, error) {
	name, arg, hasArg := strings.Cut(strings.ToLower(strings.TrimSpace(spec)), ":")
	bad := func(format string, a ...any) error {
		return usagef("RULE: %q: %s (consensus, supermajority:PERCENT or threshold:STATES)", spec, fmt.Sprintf(format, a...))
	}
	switch name {
	case "consensus":
		if hasArg {
			return nil, bad("consensus takes no number")
		}
		return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Consensus{Consensus: &pocnetv1.ConsensusRule{}}}, nil
	case "supermajority":
		p, err := strconv.ParseUint(strings.TrimSuffix(arg, "%"), 10, 32)
		if err != nil || p < governance.MinSupermajority || p > 100 {
			return nil, bad("the percentage must be a whole number from %d to 100, so that two conflicting decisions cannot both pass", governance.MinSupermajority)
		}
		return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: uint32(p)}}}, nil
	case "threshold":
		n, err := strconv.ParseUint(arg, 10, 32)
		if err != nil || n < 1 {
			return nil, bad("the number of states must be a whole number of at least 1")
		}
		return &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Threshold{Threshold: &pocnetv1.ThresholdRule{States: uint32(n)}}}, nil
	default:
		return nil, bad("not a rule")
	}
}

// parseSilence reads a silence period: a positive duration up to
// governance.MaxSilencePeriod, with "d" for days.
func parseSilence(s string) (*durationpb.Duration, error) {
	d, err := parseDuration(strings.TrimSpace(s))
	if err != nil {
		return nil, usagef("--silence-period: %q is not a duration (e.g. 72h, 14d)", s)
	}
	if d <= 0 || d > governance.MaxSilencePeriod {
		return nil, usagef("--silence-period: %s is not between 0 and %s", d, governance.MaxSilencePeriod)
	}
	return durationpb.New(d), nil
}

// entryFlags are the flags of directory update.
type entryFlags struct {
	entry     string
	endpoints []string
	addCA     []string
	removeCA  []string
	revoke    []string
	reason    string
	languages []string
	accepts   []string
	hours     []string
}

func (f *entryFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.entry, "entry", "", "replace the whole entry with this pocnet.v1.Member in protobuf JSON ('-': standard input)")
	fs.StringArrayVar(&f.endpoints, "endpoint", nil, "the node's endpoint HOST:PORT; replaces all endpoints (repeat for several)")
	fs.StringArrayVar(&f.addCA, "add-ca", nil, "add the root CA certificate in this PEM file (repeatable)")
	fs.StringArrayVar(&f.removeCA, "remove-ca", nil, "remove the root CA certificate in this PEM file (repeatable)")
	fs.StringArrayVar(&f.revoke, "revoke-cert", nil, "revoke the certificate in this PEM file, or with this hex SHA-256 of its DER (repeatable; needs --reason)")
	fs.StringVar(&f.reason, "reason", "", "why the certificates are revoked, for the other members (e.g. \"key compromise\")")
	fs.StringArrayVar(&f.languages, "set-poc-languages", nil, "ROLE=en,fr: the languages a PoC accepts; ROLE= for any (repeatable)")
	fs.StringArrayVar(&f.accepts, "set-poc-accepts", nil, "ROLE=rfi,notification: the kinds of communication a PoC accepts (repeatable)")
	fs.StringArrayVar(&f.hours, "set-poc-hours", nil, `ROLE=24/7 or ROLE=TEXT, optionally ending "(Time/Zone)": when a PoC is staffed (repeatable)`)
}

// entryEdit is the checked form of entryFlags, files read.
type entryEdit struct {
	replace   *pocnetv1.Member
	endpoints []string
	addCAs    []caFile
	removeCAs []caFile
	revoke    []revocation
	reason    string
	languages []pocEdit[[]string]
	accepts   []pocEdit[[]pocnetv1.Kind]
	hours     []pocEdit[*pocnetv1.Hours]
}

type caFile struct {
	file string
	pem  string
	cert *x509.Certificate
}

type revocation struct {
	what string // the file or fingerprint given
	sha  [sha256.Size]byte
}

type pocEdit[T any] struct {
	role  string
	value T
}

// parse checks every flag and reads every file, so that a mistake is found
// before anything is asked of the node.
func (f *entryFlags) parse(stdin io.Reader) (*entryEdit, error) {
	edits := len(f.endpoints) + len(f.addCA) + len(f.removeCA) + len(f.revoke) + len(f.languages) + len(f.accepts) + len(f.hours)
	if f.entry == "" && edits == 0 {
		return nil, usagef("nothing to change: give --entry FILE, or --endpoint, --add-ca, --remove-ca, --revoke-cert, --set-poc-languages, --set-poc-accepts or --set-poc-hours")
	}
	if f.entry != "" && edits > 0 {
		return nil, usagef("--entry replaces the whole entry and cannot be combined with edits such as --endpoint")
	}
	if len(f.revoke) > 0 && strings.TrimSpace(f.reason) == "" {
		return nil, usagef("--revoke-cert needs --reason: the other members see why the certificate was withdrawn")
	}
	if len(f.revoke) == 0 && f.reason != "" {
		return nil, usagef("--reason is only for --revoke-cert")
	}
	e := &entryEdit{reason: strings.TrimSpace(f.reason)}
	var err error
	if f.entry != "" {
		if e.replace, err = readMember(f.entry, stdin); err != nil {
			return nil, usagef("--entry: %v", err)
		}
		return e, nil
	}
	for _, ep := range f.endpoints {
		if _, port, err := net.SplitHostPort(ep); err != nil || port == "" {
			return nil, usagef("--endpoint: %q is not HOST:PORT", ep)
		}
		if slices.Contains(e.endpoints, ep) {
			return nil, usagef("--endpoint: %s is given twice", ep)
		}
		e.endpoints = append(e.endpoints, ep)
	}
	for _, p := range f.addCA {
		ca, err := readCert(p)
		if err != nil {
			return nil, usagef("--add-ca: %v", err)
		}
		if !ca.cert.IsCA {
			return nil, usagef("--add-ca: %s: %q is not a CA certificate", p, ca.cert.Subject)
		}
		e.addCAs = append(e.addCAs, ca)
	}
	for _, p := range f.removeCA {
		ca, err := readCert(p)
		if err != nil {
			return nil, usagef("--remove-ca: %v", err)
		}
		e.removeCAs = append(e.removeCAs, ca)
	}
	for _, r := range f.revoke {
		rv, err := readRevocation(r)
		if err != nil {
			return nil, usagef("--revoke-cert: %v", err)
		}
		e.revoke = append(e.revoke, rv)
	}
	seen := map[string]bool{}
	roleOf := func(flag, v string) (string, string, error) {
		role, val, ok := strings.Cut(v, "=")
		role = strings.TrimSpace(role)
		if !ok {
			return "", "", usagef("--%s %q: want ROLE=VALUE", flag, v)
		}
		if err := identity.ValidateRole(role); err != nil {
			return "", "", usagef("--%s %q: %v", flag, v, err)
		}
		if seen[flag+" "+role] {
			return "", "", usagef("--%s: role %s is given twice", flag, role)
		}
		seen[flag+" "+role] = true
		return role, strings.TrimSpace(val), nil
	}
	for _, v := range f.languages {
		role, val, err := roleOf("set-poc-languages", v)
		if err != nil {
			return nil, err
		}
		var langs []string
		for l := range strings.SplitSeq(val, ",") {
			if l = strings.TrimSpace(l); l == "" {
				continue
			}
			if _, err := language.Parse(l); err != nil {
				return nil, usagef("--set-poc-languages %q: %q is not a BCP 47 language tag (e.g. en, fr, es-419)", v, l)
			}
			langs = append(langs, l)
		}
		e.languages = append(e.languages, pocEdit[[]string]{role, langs})
	}
	for _, v := range f.accepts {
		role, val, err := roleOf("set-poc-accepts", v)
		if err != nil {
			return nil, err
		}
		var ks []pocnetv1.Kind
		for s := range strings.SplitSeq(val, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			k, err := client.ParseKind(s)
			if err != nil {
				return nil, usagef("--set-poc-accepts %q: %v", v, err)
			}
			if !slices.Contains(ks, k) {
				ks = append(ks, k)
			}
		}
		if len(ks) == 0 {
			return nil, usagef("--set-poc-accepts %q: give at least one kind (one of: %s)", v, strings.Join(client.KindNames(), ", "))
		}
		e.accepts = append(e.accepts, pocEdit[[]pocnetv1.Kind]{role, ks})
	}
	for _, v := range f.hours {
		role, val, err := roleOf("set-poc-hours", v)
		if err != nil {
			return nil, err
		}
		e.hours = append(e.hours, pocEdit[*pocnetv1.Hours]{role, parseHours(val)})
	}
	return e, nil
}

// parseHours reads "24/7" or a description, either optionally followed by
// a time zone in parentheses: what hours() prints. Empty means unset.
func parseHours(s string) *pocnetv1.Hours {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	h := &pocnetv1.Hours{}
	if strings.HasSuffix(s, ")") {
		if i := strings.LastIndex(s, "("); i >= 0 {
			h.TimeZone = strings.TrimSpace(s[i+1 : len(s)-1])
			s = strings.TrimSpace(s[:i])
		}
	}
	if strings.EqualFold(s, "24/7") {
		h.AroundTheClock = true
	} else {
		h.Description = s
	}
	return h
}

// readCert reads the one certificate of a PEM file.
func readCert(path string) (caFile, error) {
	if path == "-" {
		return caFile{}, fmt.Errorf("give a certificate file, not standard input")
	}
	data, err := readFile(path, nil, maxCertFile)
	if err != nil {
		return caFile{}, err
	}
	var block *pem.Block
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if block != nil {
			return caFile{}, fmt.Errorf("%s holds more than one certificate; give one per file", path)
		}
		block = b
	}
	if block == nil {
		return caFile{}, fmt.Errorf("%s: no PEM CERTIFICATE found", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return caFile{}, fmt.Errorf("%s: %v", path, err)
	}
	return caFile{file: path, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})), cert: c}, nil
}

// readRevocation reads a certificate to revoke: a PEM file, or the hex
// SHA-256 of its DER (for a certificate whose file is gone).
func readRevocation(s string) (revocation, error) {
	if len(s) == hex.EncodedLen(sha256.Size) {
		if b, err := hex.DecodeString(s); err == nil {
			if _, statErr := os.Stat(s); statErr != nil {
				return revocation{what: "sha256 " + strings.ToLower(s), sha: [sha256.Size]byte(b)}, nil
			}
		}
	}
	c, err := readCert(s)
	if err != nil {
		return revocation{}, err
	}
	return revocation{what: fmt.Sprintf("%q (%s)", c.cert.Subject.String(), s), sha: sha256.Sum256(c.cert.Raw)}, nil
}

// sameCert says whether a PEM string of an entry holds cert.
func sameCert(pemText string, cert *x509.Certificate) bool {
	for rest := []byte(pemText); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return false
		}
		if b.Type == "CERTIFICATE" && string(b.Bytes) == string(cert.Raw) {
			return true
		}
	}
}

// apply returns a copy of old with the edits made. An edit that cannot
// apply to the entry (a role it does not list, a CA it does not hold) is
// refused, naming what the entry has.
func (e *entryEdit) apply(old *pocnetv1.Member, now time.Time) (*pocnetv1.Member, error) {
	if e.replace != nil {
		m := proto.Clone(e.replace).(*pocnetv1.Member)
		if m.GetState() == "" {
			m.State = old.GetState()
		}
		if m.GetState() != old.GetState() {
			return nil, usagef("--entry: the entry is of %s, not of your state %s", m.GetState(), old.GetState())
		}
		if m.GetKind() == pocnetv1.MemberKind_MEMBER_KIND_UNSPECIFIED {
			m.Kind = old.GetKind()
		}
		return m, nil
	}
	m := proto.Clone(old).(*pocnetv1.Member)
	if len(e.endpoints) > 0 {
		m.Endpoints = slices.Clone(e.endpoints)
	}
	for _, ca := range e.addCAs {
		if slices.ContainsFunc(m.CaCertificates, func(p string) bool { return sameCert(p, ca.cert) }) {
			return nil, usagef("--add-ca: %s: %q is already a CA of %s", ca.file, ca.cert.Subject, m.GetState())
		}
		m.CaCertificates = append(m.CaCertificates, ca.pem)
	}
	for _, ca := range e.removeCAs {
		i := slices.IndexFunc(m.CaCertificates, func(p string) bool { return sameCert(p, ca.cert) })
		if i < 0 {
			return nil, usagef("--remove-ca: %s: %q is not a CA of %s", ca.file, ca.cert.Subject, m.GetState())
		}
		m.CaCertificates = slices.Delete(m.CaCertificates, i, i+1)
	}
	if len(e.removeCAs) > 0 && len(m.CaCertificates) == 0 {
		return nil, usagef("--remove-ca: %s would have no CA left, and nobody could vouch for its node or operators", m.GetState())
	}
	for _, r := range e.revoke {
		if slices.ContainsFunc(m.RevokedCertificates, func(rc *pocnetv1.RevokedCertificate) bool { return string(rc.GetSha256()) == string(r.sha[:]) }) {
			return nil, usagef("--revoke-cert: %s is already revoked", r.what)
		}
		m.RevokedCertificates = append(m.RevokedCertificates, &pocnetv1.RevokedCertificate{
			Sha256: slices.Clone(r.sha[:]), RevokedAt: timestamppb.New(now), Reason: e.reason,
		})
	}
	poc := func(flag, role string) (*pocnetv1.PointOfContact, error) {
		for _, p := range m.PointsOfContact {
			if p.GetRole() == role {
				return p, nil
			}
		}
		roles := make([]string, len(m.PointsOfContact))
		for i, p := range m.PointsOfContact {
			roles[i] = p.GetRole()
		}
		return nil, usagef("--%s: %s lists no point of contact %q (it lists: %s)", flag, m.GetState(), role, orDash(strings.Join(roles, ", ")))
	}
	for _, l := range e.languages {
		p, err := poc("set-poc-languages", l.role)
		if err != nil {
			return nil, err
		}
		p.Languages = slices.Clone(l.value)
	}
	for _, k := range e.accepts {
		p, err := poc("set-poc-accepts", k.role)
		if err != nil {
			return nil, err
		}
		p.AcceptedKinds = slices.Clone(k.value)
	}
	for _, h := range e.hours {
		p, err := poc("set-poc-hours", h.role)
		if err != nil {
			return nil, err
		}
		p.Hours = h.value
	}
	return m, nil
}

// diffMember says in words what differs between two versions of an entry,
// one line per change; none if they are equal.
func diffMember(old, cur *pocnetv1.Member) []string {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	if old.GetName() != cur.GetName() {
		add("name: %q → %q", old.GetName(), cur.GetName())
	}
	if old.GetKind() != cur.GetKind() {
		add("kind: %s → %s", client.MemberKindName(old.GetKind()), client.MemberKindName(cur.GetKind()))
	}
	if !slices.Equal(old.GetEndpoints(), cur.GetEndpoints()) {
		add("endpoints: %s → %s", orDash(strings.Join(old.GetEndpoints(), ", ")), orDash(strings.Join(cur.GetEndpoints(), ", ")))
	}
	for _, p := range cur.GetCaCertificates() {
		if !slices.Contains(old.GetCaCertificates(), p) {
			add("CA certificate added: %s", describePEM(p))
		}
	}
	for _, p := range old.GetCaCertificates() {
		if !slices.Contains(cur.GetCaCertificates(), p) {
			add("CA certificate removed: %s", describePEM(p))
		}
	}
	revoked := func(ms []*pocnetv1.RevokedCertificate, r *pocnetv1.RevokedCertificate) bool {
		return slices.ContainsFunc(ms, func(o *pocnetv1.RevokedCertificate) bool { return proto.Equal(o, r) })
	}
	for _, r := range cur.GetRevokedCertificates() {
		if !revoked(old.GetRevokedCertificates(), r) {
			add("certificate revoked: sha256 %x at %s: %s", r.GetSha256(), utc(r.GetRevokedAt()), orDash(r.GetReason()))
		}
	}
	for _, r := range old.GetRevokedCertificates() {
		if !revoked(cur.GetRevokedCertificates(), r) {
			add("revocation withdrawn: sha256 %x", r.GetSha256())
		}
	}
	out = append(out, diffPoCs(old.GetPointsOfContact(), cur.GetPointsOfContact())...)
	out = append(out, diffKeys("signing key", signingKeys(old), signingKeys(cur))...)
	out = append(out, diffKeys("encryption key", encryptionKeys(old), encryptionKeys(cur))...)
	return out
}

// describePEM names a CA certificate by subject and fingerprint.
func describePEM(p string) string {
	b, _ := pem.Decode([]byte(p))
	if b == nil {
		return "(not PEM)"
	}
	sum := sha256.Sum256(b.Bytes)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return fmt.Sprintf("sha256 %s (does not parse)", shortHex(sum[:]))
	}
	return fmt.Sprintf("%q, sha256 %s", c.Subject.String(), shortHex(sum[:]))
}

func diffPoCs(old, cur []*pocnetv1.PointOfContact) []string {
	var out []string
	find := func(ps []*pocnetv1.PointOfContact, role string) *pocnetv1.PointOfContact {
		for _, p := range ps {
			if p.GetRole() == role {
				return p
			}
		}
		return nil
	}
	for _, c := range cur {
		o := find(old, c.GetRole())
		if o == nil {
			out = append(out, fmt.Sprintf("point of contact %s added", c.GetRole()))
			continue
		}
		var parts []string
		if o.GetOrganisation() != c.GetOrganisation() {
			parts = append(parts, fmt.Sprintf("organisation %q → %q", o.GetOrganisation(), c.GetOrganisation()))
		}
		if o.GetPosition() != c.GetPosition() {
			parts = append(parts, fmt.Sprintf("position %q → %q", o.GetPosition(), c.GetPosition()))
		}
		if !slices.Equal(o.GetLanguages(), c.GetLanguages()) {
			parts = append(parts, fmt.Sprintf("languages %s → %s", languages(o.GetLanguages()), languages(c.GetLanguages())))
		}
		if !proto.Equal(o.GetHours(), c.GetHours()) {
			parts = append(parts, fmt.Sprintf("hours %s → %s", hours(o.GetHours()), hours(c.GetHours())))
		}
		if !slices.Equal(o.GetAcceptedKinds(), c.GetAcceptedKinds()) {
			parts = append(parts, fmt.Sprintf("accepts %s → %s", kinds(o.GetAcceptedKinds()), kinds(c.GetAcceptedKinds())))
		}
		if len(parts) > 0 {
			out = append(out, fmt.Sprintf("point of contact %s: %s", c.GetRole(), strings.Join(parts, "; ")))
		}
	}
	for _, o := range old {
		if find(cur, o.GetRole()) == nil {
			out = append(out, fmt.Sprintf("point of contact %s removed", o.GetRole()))
		}
	}
	return out
}

// keyInfo is a published key as diffKeys compares it.
type keyInfo struct {
	id     string
	status pocnetv1.KeyStatus
}

func signingKeys(m *pocnetv1.Member) []keyInfo {
	var out []keyInfo
	for _, k := range m.GetSigningKeys() {
		out = append(out, keyInfo{k.GetKeyId(), k.GetStatus()})
	}
	return out
}

func encryptionKeys(m *pocnetv1.Member) []keyInfo {
	var out []keyInfo
	for _, k := range m.GetEncryptionKeys() {
		out = append(out, keyInfo{k.GetKeyId(), k.GetStatus()})
	}
	return out
}

func keyStatus(s pocnetv1.KeyStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "KEY_STATUS_"))
}

func diffKeys(what string, old, cur []keyInfo) []string {
	var out []string
	for _, c := range cur {
		i := slices.IndexFunc(old, func(o keyInfo) bool { return o.id == c.id })
		switch {
		case i < 0:
			out = append(out, fmt.Sprintf("%s added: %s (%s)", what, c.id, keyStatus(c.status)))
		case old[i].status != c.status:
			out = append(out, fmt.Sprintf("%s %s: %s → %s", what, c.id, keyStatus(old[i].status), keyStatus(c.status)))
		}
	}
	for _, o := range old {
		if !slices.ContainsFunc(cur, func(c keyInfo) bool { return c.id == o.id }) {
			out = append(out, fmt.Sprintf("%s removed: %s", what, o.id))
		}
	}
	return out
}
