package envelope

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Limits on what a node accepts from a peer, checked before any parsing.
const (
	MaxHeaderSize  = 16 << 10
	MaxPayloadSize = 3 << 20
)

// ErrMalformed is returned (wrapped) for an envelope whose bytes do not
// decode or lack a required part.
var ErrMalformed = errors.New("malformed envelope")

// Keys is what verification needs of the directory in force.
type Keys interface {
	// Federation is the federation id.
	Federation() string
	// SigningKeyValid returns state's public key id if a signature made
	// with it at madeAt is acceptable, and an error saying why not.
	SigningKeyValid(state, id string, madeAt time.Time) (ed25519.PublicKey, error)
}

// Built is an envelope a node built, with what only its two states may know.
type Built struct {
	Envelope *pocnetv1.Envelope
	// PayloadKey opens exactly this envelope's payload.
	PayloadKey []byte
	Digest     []byte
}

// Build seals p to the recipient's encryption key, serializes h with the
// sealing fields set, and signs header and sealed payload, alone (without
// a tree). A node signing many envelopes at once uses Seal and a Batcher.
func Build(s *Signer, sl *Sealer, to *pocnetv1.EncryptionKey, h *pocnetv1.EnvelopeHeader, p *pocnetv1.Payload) (*Built, error) {
	b, err := Seal(sl, to, h, p)
	if err != nil {
		return nil, err
	}
	signAlone(s, b.Envelope)
	return b, nil
}

// Seal is Build without the signature: the envelope is to be signed
// (SignTogether, Batcher) before it leaves the node. Deterministic
// marshaling is not needed for verification (the signature covers the
// bytes as produced here) but keeps the encoding stable.
func Seal(sl *Sealer, to *pocnetv1.EncryptionKey, h *pocnetv1.EnvelopeHeader, p *pocnetv1.Payload) (*Built, error) {
	c, err := sl.context(h.GetToState(), to)
	if err != nil {
		return nil, err
	}
	// The payload key depends only on the context and the id: it is known
	// before the header, which commits to it.
	key, err := payloadKey(c.s, h.GetId())
	if err != nil {
		return nil, fmt.Errorf("envelope: payload key: %w", err)
	}
	h.PayloadEncoding = pocnetv1.PayloadEncoding_PAYLOAD_ENCODING_HPKE
	h.RecipientKeyIds = []string{to.GetKeyId()}
	h.SealingContext = c.id
	h.PayloadKeyCommitment = keyCommitment(key)
	mo := proto.MarshalOptions{Deterministic: true}
	hb, err := mo.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("envelope: header: %w", err)
	}
	pb, err := mo.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("envelope: payload: %w", err)
	}
	ct, err := sealPayload(key, hb, pb)
	if err != nil {
		return nil, fmt.Errorf("envelope: sealing: %w", err)
	}
	if len(hb) > MaxHeaderSize || len(ct) > MaxPayloadSize {
		return nil, fmt.Errorf("envelope: header %d bytes, sealed payload %d bytes: over the limits (%d, %d)", len(hb), len(ct), MaxHeaderSize, MaxPayloadSize)
	}
	env := &pocnetv1.Envelope{Header: hb, Payload: ct, EncapsulatedKey: c.enc}
	return &Built{Envelope: env, PayloadKey: key, Digest: Digest(env)}, nil
}

// Digest is the SHA-256 of an envelope's signed bytes. Two envelopes with the
// same id and a different digest are a conflict, never a retry.
func Digest(env *pocnetv1.Envelope) []byte {
	// Hashed as it streams, without building the signing input.
	d := sha256.New()
	d.Write([]byte(envelopeDomain))
	for _, p := range [][]byte{env.GetHeader(), env.GetPayload()} {
		l := len(p)
		d.Write([]byte{byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)})
		d.Write(p)
	}
	return d.Sum(nil)
}

// Opened is a verified and decrypted envelope.
type Opened struct {
	Header     *pocnetv1.EnvelopeHeader
	Payload    *pocnetv1.Payload
	Digest     []byte
	PayloadKey []byte
}

// DecodeHeader parses an envelope's header without verifying anything. It
// is used to route and to report; trust nothing in it before Verify.
func DecodeHeader(env *pocnetv1.Envelope) (*pocnetv1.EnvelopeHeader, error) {
	if len(env.GetHeader()) == 0 {
		return nil, fmt.Errorf("%w: empty header", ErrMalformed)
	}
	if len(env.GetHeader()) > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header of %d bytes exceeds %d", ErrMalformed, len(env.GetHeader()), MaxHeaderSize)
	}
	var h pocnetv1.EnvelopeHeader
	if err := proto.Unmarshal(env.GetHeader(), &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	return &h, nil
}

// Verify checks that env was signed, over its exact header and payload
// bytes, by a key the sending state named in its header publishes and may
// use for an envelope created when this one says it was: directly, or
// through the tree of the envelopes it was signed with. It needs no private
// key: a node checks this before storing or forwarding, and anyone holding
// the directory can check it offline.
func Verify(env *pocnetv1.Envelope, keys Keys) (*pocnetv1.EnvelopeHeader, error) {
	return NewVerifier(keys).Verify(env)
}

// Open verifies env (see Verify), then derives its payload key with the
// recipient's private key and decrypts it. The signature is checked first:
// only a member can make this node spend a decapsulation.
func Open(env *pocnetv1.Envelope, keys Keys, o *Opener) (*Opened, error) {
	return NewVerifier(keys).Open(env, o)
}

// Verifier verifies envelopes (Verify, Open), checking each distinct tree
// signature once: the envelopes a node signed together usually arrive
// together. It is safe for concurrent use.
type Verifier struct {
	keys Keys
	mu   sync.Mutex
	seen map[string]*treeResult
}

type treeResult struct {
	once sync.Once
	err  error
}

// NewVerifier returns a Verifier against keys.
func NewVerifier(keys Keys) *Verifier {
	return &Verifier{keys: keys, seen: map[string]*treeResult{}}
}

// Parsed is an envelope with its header decoded, once, from the envelope's
// own header bytes: a caller that reads the header before verifying (to
// check addressing first) and the verification then read the same decoding
// of the bytes the signature covers. Its header must not be changed.
type Parsed struct {
	env *pocnetv1.Envelope
	h   *pocnetv1.EnvelopeHeader
}

// Parse decodes env's header (see DecodeHeader).
func Parse(env *pocnetv1.Envelope) (*Parsed, error) {
	h, err := DecodeHeader(env)
	if err != nil {
		return nil, err
	}
	return &Parsed{env: env, h: h}, nil
}

// Header returns the decoded header; it is not to be changed.
func (p *Parsed) Header() *pocnetv1.EnvelopeHeader { return p.h }

// WithKey returns p with enc as its envelope's encapsulated key, for an
// envelope that came without its own (SplitKeys). p is not changed.
func (p *Parsed) WithKey(enc []byte) *Parsed {
	return &Parsed{env: WithKey(p.env, enc), h: p.h}
}

// WithKey returns a shallow copy of env with enc as its encapsulated key,
// nil for none: what is signed is shared, env is not changed.
func WithKey(env *pocnetv1.Envelope, enc []byte) *pocnetv1.Envelope {
	return &pocnetv1.Envelope{Header: env.Header, Payload: env.Payload, Signature: env.Signature, Tree: env.Tree, EncapsulatedKey: enc}
}

// SplitKeys returns envs without their encapsulated keys, and those keys,
// each once, for a DeliverRequest: envs sealed with one context share a
// key. envs are not changed: those that carried a key are copied.
func SplitKeys(envs []*pocnetv1.Envelope) ([]*pocnetv1.Envelope, [][]byte) {
	var (
		out  []*pocnetv1.Envelope
		keys [][]byte
		seen map[string]struct{}
	)
	for i, e := range envs {
		enc := e.GetEncapsulatedKey()
		if len(enc) == 0 {
			continue
		}
		if out == nil {
			out = slices.Clone(envs)
			seen = map[string]struct{}{}
		}
		out[i] = WithKey(e, nil)
		if _, ok := seen[string(enc)]; !ok {
			seen[string(enc)] = struct{}{}
			keys = append(keys, enc)
		}
	}
	if out == nil {
		return envs, nil
	}
	return out, keys
}

// KeysByContext indexes the encapsulated keys of a DeliverRequest by the
// sealing context each sets up (ContextID).
func KeysByContext(keys [][]byte) map[string][]byte {
	m := make(map[string][]byte, len(keys))
	for _, k := range keys {
		m[string(ContextID(k))] = k
	}
	return m
}

// Verify is Verify, with v's memo of tree signatures.
func (v *Verifier) Verify(env *pocnetv1.Envelope) (*pocnetv1.EnvelopeHeader, error) {
	p, err := Parse(env)
	if err != nil {
		return nil, err
	}
	if err := v.verify(p); err != nil {
		return nil, err
	}
	return p.h, nil
}

// verify checks the signature of p (see Verify).
func (v *Verifier) verify(p *Parsed) error {
	keys, env, h := v.keys, p.env, p.h
	if len(env.GetPayload()) > MaxPayloadSize {
		return fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrMalformed, len(env.GetPayload()), MaxPayloadSize)
	}
	if h.GetFederationId() != keys.Federation() {
		return fmt.Errorf("%w: envelope of federation %q, not %q", ErrMalformed, h.GetFederationId(), keys.Federation())
	}
	sig := env.GetSignature()
	if err := checkSignatureForm(sig); err != nil {
		return err
	}
	if err := h.GetCreatedAt().CheckValid(); err != nil {
		return fmt.Errorf("%w: header.created_at: %v", ErrMalformed, err)
	}
	// The key must be one the state named as sender publishes: a valid
	// signature by any other participant's key proves nothing about what
	// that state sent.
	pub, err := keys.SigningKeyValid(h.GetFromState(), sig.GetKeyId(), h.GetCreatedAt().AsTime())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	t := env.GetTree()
	if t == nil {
		return verifySig(pub, sig, envelopeDomain, env.GetHeader(), env.GetPayload())
	}
	if t.GetSize() == 0 || t.GetSize() > MaxSignedTogether {
		return fmt.Errorf("%w: signature tree of %d envelopes, want 1 to %d", ErrMalformed, t.GetSize(), MaxSignedTogether)
	}
	root, err := rootFromPath(envelopeLeaf(env), uint64(t.GetIndex()), uint64(t.GetSize()), t.GetPath())
	if err != nil {
		return fmt.Errorf("%w: signature tree: leaf %d of %d: %v", ErrBadSignature, t.GetIndex(), t.GetSize(), err)
	}
	in := treeInput(root, t.GetSize())
	// The memo is keyed by everything the check depends on: the public
	// key, the signature and what it covers.
	k := string(signingInput("", pub, sig.GetValue(), in[0], in[1]))
	v.mu.Lock()
	r := v.seen[k]
	if r == nil {
		r = &treeResult{}
		v.seen[k] = r
	}
	v.mu.Unlock()
	r.once.Do(func() { r.err = verifySig(pub, sig, envelopeTreeDomain, in...) })
	if r.err != nil {
		return r.err
	}
	return nil
}

// Open is Open, with v's memo of tree signatures.
func (v *Verifier) Open(env *pocnetv1.Envelope, o *Opener) (*Opened, error) {
	p, err := Parse(env)
	if err != nil {
		return nil, err
	}
	return v.OpenParsed(p, o)
}

// OpenParsed is Open for an envelope already parsed.
func (v *Verifier) OpenParsed(parsed *Parsed, o *Opener) (*Opened, error) {
	if err := v.verify(parsed); err != nil {
		return nil, err
	}
	env, h := parsed.env, parsed.h
	if h.GetPayloadEncoding() != pocnetv1.PayloadEncoding_PAYLOAD_ENCODING_HPKE {
		return nil, fmt.Errorf("%w: payload encoding %v: this node takes sealed payloads only (PAYLOAD_ENCODING_HPKE)", ErrMalformed, h.GetPayloadEncoding())
	}
	if h.GetToState() != o.state {
		return nil, fmt.Errorf("%w: sealed to %s, this is the node of %s", ErrUndecryptable, h.GetToState(), o.state)
	}
	key, err := o.payloadKey(h, env.GetEncapsulatedKey())
	if err != nil {
		return nil, err
	}
	p, err := decode(h, env, key)
	if err != nil {
		return nil, err
	}
	return &Opened{Header: h, Payload: p, Digest: Digest(env), PayloadKey: key}, nil
}

// Decode decrypts and parses the payload of an envelope whose payload key
// is known: a node reading its own stored envelopes, or a transcript.
func Decode(env *pocnetv1.Envelope, payloadKey []byte) (*pocnetv1.Payload, error) {
	h, err := DecodeHeader(env)
	if err != nil {
		return nil, err
	}
	return decode(h, env, payloadKey)
}

// decode decrypts and parses env's payload; h is env's decoded header, so
// that Open does not parse it twice.
func decode(h *pocnetv1.EnvelopeHeader, env *pocnetv1.Envelope, key []byte) (*pocnetv1.Payload, error) {
	pb, err := decryptPayload(h, env, key)
	if err != nil {
		return nil, err
	}
	var p pocnetv1.Payload
	if err := proto.Unmarshal(pb, &p); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	return &p, nil
}
