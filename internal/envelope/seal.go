package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pocnet/pocnet/internal/directory"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Sealing, as documented on PAYLOAD_ENCODING_HPKE: an HPKE context from the
// sending state to one key of the recipient state is set up once and serves
// many envelopes. Each envelope's payload key is the context's export for
// the envelope id; the payload is AES-256-GCM under that key with the header
// bytes as additional data, so that the header cannot be swapped. Setting up
// a context (an ML-KEM-768+X25519 encapsulation, about 150 µs, and as much
// again to decapsulate) per envelope would cost more than everything else a
// node does per message; exporting and sealing cost about a microsecond.
//
// What amortizing gives up is limited and deliberate: HPKE base mode has no
// forward secrecy against the recipient's key anyway, and a context lives at
// most ContextLifetime or ContextUses envelopes in the sender's memory.
//
// The signed header names its context by ContextID, 32 bytes, and the
// context's encapsulated key (1120 bytes for ML-KEM-768+X25519) travels
// beside the header, unsigned, in Envelope.encapsulated_key. Had the
// header carried the key, every envelope would store and hash it again:
// about 40% of a 1 KiB communication's envelope. The recipient checks
// that the key hashes to the signed id before it decapsulates, and needs
// the key only for a context it has not set up yet.

const (
	// ContextLifetime bounds how long a sender uses one HPKE context.
	ContextLifetime = 10 * time.Minute
	// ContextUses bounds how many envelopes one HPKE context seals.
	ContextUses = 10000

	payloadKeySize = 32
	nonceSize      = 12
	payloadLabel   = "pocnet/v1 payload\x00"
	contextLabel   = "pocnet/v1 sealing context\x00"
	// maxOpenContexts bounds the recipient's cache of decapsulated contexts.
	maxOpenContexts = 4096
)

var (
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES256GCM()
)

// ErrUndecryptable is returned (wrapped) for a payload this node cannot
// open: sealed to a key it does not hold, or not authentic.
var ErrUndecryptable = errors.New("payload cannot be decrypted")

// sealInfo binds an HPKE context to the federation, the two states and the
// recipient key: a context set up for one pair can never open another's.
func sealInfo(federation, from, to, keyID string) []byte {
	return []byte("pocnet/v1 seal\x00" + federation + "\x00" + from + "\x00" + to + "\x00" + keyID)
}

// ContextIDSize is the size of a header's sealing_context.
const ContextIDSize = sha256.Size

// ContextID returns the name of the HPKE context set up with the
// encapsulated key enc, as a header's sealing_context carries it.
func ContextID(enc []byte) []byte {
	d := sha256.New()
	d.Write([]byte(contextLabel))
	d.Write(enc)
	return d.Sum(nil)
}

// Sealer holds a sending node's HPKE contexts, one per recipient key.
type Sealer struct {
	federation, state string
	now               func() time.Time

	mu   sync.Mutex
	ctxs map[string]*sendContext // by recipient state and key id
}

type sendContext struct {
	enc     []byte
	id      []byte // ContextID(enc)
	s       *hpke.Sender
	created time.Time
	uses    int
}

// NewSealer returns a Sealer for the node of state in federation.
func NewSealer(federation, state string, now func() time.Time) *Sealer {
	if now == nil {
		now = time.Now
	}
	return &Sealer{federation: federation, state: state, now: now, ctxs: map[string]*sendContext{}}
}

// seal sets the sealing fields of h for the recipient key, and returns a
// function that seals the payload once h is serialized.
func (sl *Sealer) context(to string, key *pocnetv1.EncryptionKey) (*sendContext, error) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	ck := to + "\x00" + key.GetKeyId() // the context's info binds both
	c := sl.ctxs[ck]
	if c == nil || c.uses >= ContextUses || sl.now().Sub(c.created) >= ContextLifetime {
		pk, err := directory.KEM().NewPublicKey(key.GetPublicKey())
		if err != nil {
			return nil, fmt.Errorf("envelope: encryption key %s of %s: %w", key.GetKeyId(), to, err)
		}
		enc, s, err := hpke.NewSender(pk, kdf, aead, sealInfo(sl.federation, sl.state, to, key.GetKeyId()))
		if err != nil {
			return nil, fmt.Errorf("envelope: sealing to %s: %w", to, err)
		}
		c = &sendContext{enc: enc, id: ContextID(enc), s: s, created: sl.now()}
		sl.ctxs[ck] = c
	}
	c.uses++
	return c, nil
}

// exporter is the part of an HPKE context that derives payload keys.
type exporter interface {
	Export(exporterContext string, length int) ([]byte, error)
}

func payloadKey(ctx exporter, envelopeID string) ([]byte, error) {
	return ctx.Export(payloadLabel+envelopeID, payloadKeySize)
}

func sealPayload(key, header, payload []byte) ([]byte, error) {
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	// The key is unique to the envelope; a random nonce on top keeps even a
	// buggy second sealing of the same id safe.
	out := make([]byte, nonceSize, nonceSize+len(payload)+g.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return g.Seal(out, out, payload, header), nil
}

// keyCommitment binds a header (and so the signature) to one payload key.
func keyCommitment(key []byte) []byte {
	sum := sha256.Sum256(append([]byte(keyCommitmentLabel), key...))
	return sum[:]
}

const keyCommitmentLabel = "pocnet/v1 payload key commitment\x00"

// decryptPayload opens a sealed payload with its payload key; h is env's
// decoded header. Anyone given an envelope and its payload key (a
// transcript) can read exactly that envelope. The key must be the one the
// signed header commits to, and the AEAD then proves the payload is the one
// that was sealed under it: without the commitment, one ciphertext could be
// made to open under two keys.
func decryptPayload(h *pocnetv1.EnvelopeHeader, env *pocnetv1.Envelope, key []byte) ([]byte, error) {
	if c := h.GetPayloadKeyCommitment(); len(c) != sha256.Size || subtle.ConstantTimeCompare(c, keyCommitment(key)) != 1 {
		return nil, fmt.Errorf("%w: the payload key is not the one the header commits to", ErrUndecryptable)
	}
	g, err := newGCM(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUndecryptable, err)
	}
	ct := env.GetPayload()
	if len(ct) < nonceSize+g.Overhead() {
		return nil, fmt.Errorf("%w: sealed payload of %d bytes is too short", ErrUndecryptable, len(ct))
	}
	pt, err := g.Open(nil, ct[:nonceSize], ct[nonceSize:], env.GetHeader())
	if err != nil {
		return nil, fmt.Errorf("%w: the payload does not authenticate with its key and header", ErrUndecryptable)
	}
	return pt, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != payloadKeySize {
		return nil, fmt.Errorf("payload key of %d bytes, want %d", len(key), payloadKeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Opener holds a receiving node's encryption private keys and the contexts
// it has already decapsulated.
type Opener struct {
	federation, state string
	keys              atomic.Pointer[map[string]hpke.PrivateKey] // by key id; replaced, never modified

	mu    sync.Mutex
	ctxs  map[[sha256.Size]byte]*hpke.Recipient
	order [][sha256.Size]byte // insertion order, for eviction
}

// NewOpener returns an Opener for the node of state with its private
// encryption keys, by directory key id.
func NewOpener(federation, state string, keys map[string]hpke.PrivateKey) *Opener {
	o := &Opener{federation: federation, state: state, ctxs: map[[sha256.Size]byte]*hpke.Recipient{}}
	keys = maps.Clone(keys)
	o.keys.Store(&keys)
	return o
}

// AddKey adds a private key (a new key of the state, made while the node
// runs), so that payloads sealed to it open from now on.
func (o *Opener) AddKey(id string, key hpke.PrivateKey) {
	o.mu.Lock()
	defer o.mu.Unlock()
	keys := maps.Clone(*o.keys.Load())
	keys[id] = key
	o.keys.Store(&keys)
}

// Holds reports whether the opener has the private key id.
func (o *Opener) Holds(id string) bool {
	_, ok := (*o.keys.Load())[id]
	return ok
}

// payloadKey derives the payload key of a verified header addressed to
// this node. enc is the envelope's encapsulated key: it is needed only for
// a context the opener has not set up yet, and must then be the key the
// header's sealing_context names.
func (o *Opener) payloadKey(h *pocnetv1.EnvelopeHeader, enc []byte) ([]byte, error) {
	if len(h.GetRecipientKeyIds()) != 1 {
		return nil, fmt.Errorf("%w: header.recipient_key_ids must name exactly one key, has %d", ErrMalformed, len(h.GetRecipientKeyIds()))
	}
	keyID := h.GetRecipientKeyIds()[0]
	priv, ok := (*o.keys.Load())[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: sealed to key %s, which the node of %s does not hold", ErrUndecryptable, keyID, o.state)
	}
	id := h.GetSealingContext()
	if len(id) != ContextIDSize {
		return nil, fmt.Errorf("%w: header.sealing_context has %d bytes, want %d", ErrMalformed, len(id), ContextIDSize)
	}
	// The context is known by what sets it up: the info and the
	// encapsulated key, which the signed id commits to.
	info := sealInfo(o.federation, h.GetFromState(), h.GetToState(), keyID)
	d := sha256.New()
	in := getInput("", info, id)
	d.Write(*in)
	putInput(in)
	var ck [sha256.Size]byte
	d.Sum(ck[:0])
	o.mu.Lock()
	r := o.ctxs[ck]
	o.mu.Unlock()
	if r == nil {
		if len(enc) == 0 {
			return nil, fmt.Errorf("%w: encapsulated_key is missing, and the node of %s has not set up sealing context %x", ErrUndecryptable, o.state, id)
		}
		if subtle.ConstantTimeCompare(ContextID(enc), id) != 1 {
			return nil, fmt.Errorf("%w: encapsulated_key is not the key header.sealing_context names", ErrMalformed)
		}
		var err error
		if r, err = hpke.NewRecipient(enc, priv, kdf, aead, info); err != nil {
			return nil, fmt.Errorf("%w: encapsulated_key: %v", ErrUndecryptable, err)
		}
		o.mu.Lock()
		if _, ok := o.ctxs[ck]; !ok {
			if len(o.order) >= maxOpenContexts {
				delete(o.ctxs, o.order[0])
				o.order = o.order[1:]
			}
			o.ctxs[ck] = r
			o.order = append(o.order, ck)
		}
		o.mu.Unlock()
	}
	// Export is stateless: one context serves concurrent callers.
	return payloadKey(r, h.GetId())
}
