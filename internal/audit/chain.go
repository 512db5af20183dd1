package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Domain is the domain-separation prefix of every chain hash.
const Domain = "pocnet/v1 audit"

// HashLen is the length of a chain hash.
const HashLen = sha256.Size

// MaxDetail bounds a record's detail, in bytes: the log says what happened,
// it does not copy content.
const MaxDetail = 1024

var genesis = make([]byte, HashLen)

// Genesis returns the prev_hash of record 1: 32 zero bytes.
func Genesis() []byte { return append([]byte(nil), genesis...) }

// Hash returns the chain hash of record bytes that follow a record with
// hash prev.
func Hash(prev, record []byte) []byte {
	h := sha256.New()
	h.Write([]byte(Domain))
	h.Write(prev)
	h.Write(record)
	return h.Sum(nil)
}

// Head is a position in a chain: a record's seq and hash. The head of an
// empty log is seq 0 with the genesis hash.
type Head struct {
	Seq  uint64
	Hash []byte
}

// norm returns h with the genesis hash filled in for the empty log (a
// copy: a caller may keep and change what it is given).
func (h Head) norm() Head {
	if h.Seq == 0 && len(h.Hash) == 0 {
		h.Hash = Genesis()
	}
	return h
}

// String formats h as "SEQ:HEX", the form ParseHead reads.
func (h Head) String() string {
	h = h.norm()
	return strconv.FormatUint(h.Seq, 10) + ":" + hex.EncodeToString(h.Hash)
}

// ParseHead parses "SEQ:HEX" (as Head.String writes it).
func ParseHead(s string) (Head, error) {
	seqText, hashText, ok := strings.Cut(s, ":")
	if !ok {
		return Head{}, fmt.Errorf("head %q: want SEQ:HASH, e.g. 72:%s", s, strings.Repeat("ab", HashLen))
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return Head{}, fmt.Errorf("head %q: seq %q is not a number", s, seqText)
	}
	hash, err := hex.DecodeString(hashText)
	if err != nil || len(hash) != HashLen {
		return Head{}, fmt.Errorf("head %q: hash must be %d hexadecimal digits", s, 2*HashLen)
	}
	return Head{Seq: seq, Hash: hash}, nil
}

// Seal makes rec the record after prev: it sets rec's seq and prev_hash,
// serializes it once, and returns the entry to store and the new head. The
// caller must seal records in the order it commits them, in one goroutine:
// the chain order is the commit order. A record without a time gets the
// current time; a detail longer than MaxDetail is cut (on a UTF-8
// boundary) and marked.
func Seal(prev Head, rec *pocnetv1.AuditRecord) (*pocnetv1.AuditEntry, Head, error) {
	prev = prev.norm()
	if len(prev.Hash) != HashLen {
		return nil, Head{}, fmt.Errorf("audit: head %d has a %d-byte hash", prev.Seq, len(prev.Hash))
	}
	if rec.GetOccurredAt() == nil {
		rec.OccurredAt = timestamppb.New(time.Now())
	}
	rec.Detail = cut(rec.GetDetail(), MaxDetail)
	rec.Seq = prev.Seq + 1
	rec.PrevHash = append([]byte(nil), prev.Hash...)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		return nil, Head{}, fmt.Errorf("audit: record %d: %w", rec.Seq, err)
	}
	h := Hash(prev.Hash, b)
	return &pocnetv1.AuditEntry{Record: b, Hash: h}, Head{Seq: rec.Seq, Hash: h}, nil
}

// cut shortens s to at most n bytes, ending on a UTF-8 boundary, and marks
// the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	i := n - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return strings.ToValidUTF8(s[:i], "") + mark
}

// Decode decodes an entry's record. It never re-serializes: the entry's
// bytes stay what is hashed.
func Decode(e *pocnetv1.AuditEntry) (*pocnetv1.AuditRecord, error) {
	var rec pocnetv1.AuditRecord
	if err := proto.Unmarshal(e.GetRecord(), &rec); err != nil {
		// protobuf's own wording is deliberately unstable; say it plainly.
		return nil, errors.New("its bytes do not decode")
	}
	if rec.GetSeq() == 0 {
		return nil, errors.New("record has no seq")
	}
	return &rec, nil
}
