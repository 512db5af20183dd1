package audit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// ErrBroken is what every verification failure wraps: errors.Is(err,
// ErrBroken) tells a broken log from a failure to read one.
var ErrBroken = errors.New("audit log broken")

// Problem classifies where a chain breaks.
type Problem int

// Problems a verifier finds.
const (
	// Altered: a record's bytes do not match its hash, or do not decode.
	Altered Problem = iota + 1
	// Missing: the seq skips one or more records.
	Missing
	// OutOfOrder: records come in another order than their seqs.
	OutOfOrder
	// Unlinked: a record's prev_hash is not the hash of the record before
	// it (a record was replaced, with a hash recomputed over its new bytes).
	Unlinked
	// Truncated: the log ends before a head it must contain.
	Truncated
	// Rewritten: the log has a record at a head's seq, with another hash.
	Rewritten
	// Malformed: an export file is not in the format.
	Malformed
)

var problemNames = map[Problem]string{
	Altered: "altered", Missing: "missing", OutOfOrder: "out of order", Unlinked: "unlinked",
	Truncated: "truncated", Rewritten: "rewritten", Malformed: "malformed",
}

// String returns the problem's name, e.g. "altered".
func (p Problem) String() string {
	if s, ok := problemNames[p]; ok {
		return s
	}
	return fmt.Sprintf("problem %d", int(p))
}

// Error says where a log is broken and what is wrong there.
type Error struct {
	Problem Problem
	// Seq is the record where the log breaks (for Malformed, the line of the
	// file).
	Seq uint64
	msg string
}

// Error returns the account, e.g. "record 57 altered: hash does not match
// its contents".
func (e *Error) Error() string { return e.msg }

// Unwrap returns ErrBroken.
func (e *Error) Unwrap() error { return ErrBroken }

func broken(p Problem, seq uint64, format string, args ...any) *Error {
	return &Error{Problem: p, Seq: seq, msg: fmt.Sprintf(format, args...)}
}

// Anchor is a head that a log must contain, from a source other than the
// log itself: the node's current head, or a head noted earlier. Only an
// anchor shows records removed from the end or a chain rewritten with fresh
// hashes.
type Anchor struct {
	Head
	// Label names the anchor in errors, e.g. "the node's head".
	Label string
}

// Verifier checks a chain one entry at a time, in the order given, so that
// a log of any length is verified in constant memory. The first problem
// found is final: every later call returns it.
type Verifier struct {
	start   Head
	last    Head
	anchors []Anchor
	n       int
	// gap holds the seqs skipped when a record came ahead of its turn.
	// Whether they are missing or merely out of order shows later: the chain
	// goes on being verified from the record that came ahead.
	gap *gap
	err error
}

type gap struct{ from, to uint64 }

// NewVerifier returns a verifier of the entries that follow start (Head{}
// for a log from its first record), which must contain every anchor after
// start. Anchors at or before start cannot be checked, except one at start
// itself, which must match start.
func NewVerifier(start Head, anchors ...Anchor) *Verifier {
	start = start.norm()
	v := &Verifier{start: start, last: start}
	for _, a := range anchors {
		a.Head = a.norm()
		if a.Label == "" {
			a.Label = "the expected head"
		}
		if a.Seq == start.Seq && !bytes.Equal(a.Hash, start.Hash) {
			v.err = broken(Rewritten, a.Seq, "record %d differs from %s: hash %x, %s has %x (the log was rewritten)", a.Seq, a.Label, start.Hash, a.Label, a.Hash)
		}
		if a.Seq > start.Seq {
			v.anchors = append(v.anchors, a)
		}
	}
	return v
}

// Add verifies the next entry.
func (v *Verifier) Add(e *pocnetv1.AuditEntry) error {
	if v.err != nil {
		return v.err
	}
	v.err = v.add(e)
	return v.err
}

func (v *Verifier) add(e *pocnetv1.AuditEntry) error {
	want := v.last.Seq + 1
	rec, err := Decode(e)
	if err != nil {
		if v.gap != nil {
			return v.missing()
		}
		return broken(Altered, want, "record %d altered: not a valid audit record (%v)", want, err)
	}
	seq := rec.GetSeq()
	if v.gap != nil && seq >= v.gap.from && seq <= v.gap.to {
		return broken(OutOfOrder, v.gap.from, "records out of order at %d: record %d comes after record %d", v.gap.from, seq, v.last.Seq)
	}
	hashOK := bytes.Equal(e.GetHash(), Hash(rec.GetPrevHash(), e.GetRecord()))
	if !hashOK {
		if v.gap != nil {
			return v.missing()
		}
		// In its place, or naming its place by its link: this is the record
		// due here, altered (its seq perhaps too).
		if seq == want || bytes.Equal(rec.GetPrevHash(), v.last.Hash) {
			return broken(Altered, want, "record %d altered: hash does not match its contents", want)
		}
	}
	switch {
	case seq < want:
		if v.gap != nil {
			return v.missing()
		}
		if seq == v.last.Seq {
			return broken(OutOfOrder, want, "records out of order at %d: record %d appears twice", want, seq)
		}
		return broken(OutOfOrder, want, "records out of order at %d: record %d comes after record %d", want, seq, v.last.Seq)
	case seq > want:
		if v.gap != nil {
			return v.missing()
		}
		v.gap = &gap{from: want, to: seq - 1}
		if !hashOK {
			return v.missing()
		}
		// No link to check across the gap: go on from this record.
		return v.accept(seq, e)
	}
	if !bytes.Equal(rec.GetPrevHash(), v.last.Hash) {
		if v.last.Seq == 0 {
			return broken(Unlinked, want, "record %d does not link to the start of the log: prev_hash %x is not the genesis (32 zero bytes)", want, rec.GetPrevHash())
		}
		return broken(Unlinked, want, "record %d does not link to record %d: prev_hash %x, record %d has hash %x", want, v.last.Seq, rec.GetPrevHash(), v.last.Seq, v.last.Hash)
	}
	return v.accept(seq, e)
}

func (v *Verifier) accept(seq uint64, e *pocnetv1.AuditEntry) error {
	for _, a := range v.anchors {
		if a.Seq == seq && !bytes.Equal(a.Hash, e.GetHash()) {
			return broken(Rewritten, seq, "record %d differs from %s: hash %x, %s has %x (the log was rewritten)", seq, a.Label, e.GetHash(), a.Label, a.Hash)
		}
	}
	v.last = Head{Seq: seq, Hash: append([]byte(nil), e.GetHash()...)}
	v.n++
	return nil
}

func (v *Verifier) missing() error {
	from, to := v.gap.from, v.gap.to
	if from == to {
		return broken(Missing, from, "record %d missing: seq goes from %d to %d", from, from-1, to+1)
	}
	return broken(Missing, from, "records %d to %d missing: seq goes from %d to %d", from, to, from-1, to+1)
}

// Finish ends verification: it reports records missing at the very end of
// what was given and any anchor the log does not reach. It returns the head
// of the verified log.
func (v *Verifier) Finish() (Head, error) {
	if v.err != nil {
		return v.last, v.err
	}
	if v.gap != nil {
		v.err = v.missing()
		return v.last, v.err
	}
	for _, a := range v.anchors {
		if a.Seq > v.last.Seq {
			v.err = broken(Truncated, v.last.Seq+1, "log ends at %d but %s is %d (records removed from the end)", v.last.Seq, a.Label, a.Seq)
			return v.last, v.err
		}
	}
	return v.last, nil
}

// Records returns how many entries were verified so far.
func (v *Verifier) Records() int { return v.n }

// Verify verifies a whole log from its first record and returns its head.
func Verify(entries []*pocnetv1.AuditEntry, anchors ...Anchor) (Head, error) {
	v := NewVerifier(Head{}, anchors...)
	for _, e := range entries {
		if err := v.Add(e); err != nil {
			return v.last, err
		}
	}
	return v.Finish()
}

// HashString formats a hash for people: lower-case hexadecimal.
func HashString(h []byte) string { return hex.EncodeToString(h) }
