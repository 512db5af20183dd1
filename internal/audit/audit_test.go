package audit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

var t0 = time.Date(2026, 3, 14, 3, 0, 0, 0, time.UTC)

// chain seals n records from the genesis.
func chain(t testing.TB, n int) ([]*pocnetv1.AuditEntry, Head) {
	t.Helper()
	var head Head
	out := make([]*pocnetv1.AuditEntry, 0, n)
	for i := range n {
		e, h, err := Seal(head, &pocnetv1.AuditRecord{
			OccurredAt: timestamppb.New(t0.Add(time.Duration(i) * time.Second)),
			Action:     pocnetv1.AuditAction_AUDIT_ACTION_SENT,
			Actor:      "spiffe://pocnet.test/state/XAA/operator/technical/alice",
			MessageId:  fmt.Sprintf("0198c0de-0000-7000-8000-%012d", i+1),
			PeerState:  "XBB",
			Detail:     "communication to XBB/technical",
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
		head = h
	}
	return out, head
}

func TestSealChainsFromGenesis(t *testing.T) {
	entries, head := chain(t, 3)
	prev := Genesis()
	for i, e := range entries {
		rec, err := Decode(e)
		if err != nil {
			t.Fatal(err)
		}
		if rec.GetSeq() != uint64(i+1) || !bytes.Equal(rec.GetPrevHash(), prev) {
			t.Fatalf("record %d: seq %d, prev_hash %x, want %d, %x", i+1, rec.GetSeq(), rec.GetPrevHash(), i+1, prev)
		}
		// The rule of doc.go, spelled out independently.
		want := Hash(prev, e.GetRecord())
		if !bytes.Equal(e.GetHash(), want) {
			t.Fatalf("record %d: hash %x, want %x", i+1, e.GetHash(), want)
		}
		prev = e.GetHash()
	}
	if head.Seq != 3 || !bytes.Equal(head.Hash, prev) {
		t.Fatalf("head %v", head)
	}
	got, err := Verify(entries, Anchor{Head: head, Label: "the node's head"})
	if err != nil || got.String() != head.String() {
		t.Fatalf("Verify = %v, %v", got, err)
	}
}

func TestHashIsDomainSeparated(t *testing.T) {
	rec := []byte("record")
	if bytes.Equal(Hash(Genesis(), rec), Hash(nil, append(Genesis(), rec...))) == false {
		t.Fatal("Hash is not SHA-256 over prefix || prev || record")
	}
	plain := Hash(nil, nil)
	if len(plain) != HashLen {
		t.Fatalf("hash length %d", len(plain))
	}
	// Not the bare SHA-256 of the bytes.
	var zero [HashLen]byte
	if bytes.Equal(Hash(zero[:], rec)[:4], []byte{0, 0, 0, 0}) {
		t.Fatal("implausible hash")
	}
}

// tamper returns a copy of entries changed by fn.
func tamper(entries []*pocnetv1.AuditEntry, fn func([]*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
	c := make([]*pocnetv1.AuditEntry, len(entries))
	for i, e := range entries {
		c[i] = proto.Clone(e).(*pocnetv1.AuditEntry)
	}
	return fn(c)
}

// alter changes record i's detail and re-serializes it; fix says whether
// the entry's hash is recomputed too (a forger who knows the rule).
func alter(e *pocnetv1.AuditEntry, fix bool) {
	rec, err := Decode(e)
	if err != nil {
		panic(err)
	}
	rec.Detail = "nothing happened"
	e.Record, _ = proto.Marshal(rec)
	if fix {
		e.Hash = Hash(rec.GetPrevHash(), e.GetRecord())
	}
}

func TestVerifySaysWhereAndWhat(t *testing.T) {
	entries, head := chain(t, 8)
	nodeHead := Anchor{Head: head, Label: "the node's head"}
	tests := []struct {
		name    string
		edit    func([]*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry
		problem Problem
		seq     uint64
		msg     string
	}{
		{"altered record", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			alter(es[4], false)
			return es
		}, Altered, 5, "record 5 altered: hash does not match its contents"},
		{"altered hash", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			es[2].Hash[0] ^= 1
			return es
		}, Altered, 3, "record 3 altered: hash does not match its contents"},
		{"garbage record", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			es[3].Record = []byte{0xff, 0xff}
			return es
		}, Altered, 4, "record 4 altered: not a valid audit record"},
		{"altered record with a recomputed hash", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			alter(es[4], true)
			return es
		}, Unlinked, 6, "record 6 does not link to record 5: prev_hash "},
		{"first record replaced", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			rec, _ := Decode(es[0])
			rec.PrevHash = bytes.Repeat([]byte{1}, HashLen)
			es[0].Record, _ = proto.Marshal(rec)
			es[0].Hash = Hash(rec.GetPrevHash(), es[0].GetRecord())
			return es
		}, Unlinked, 1, "record 1 does not link to the start of the log"},
		{"one record removed", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			return append(es[:2], es[3:]...)
		}, Missing, 3, "record 3 missing: seq goes from 2 to 4"},
		{"three records removed", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			return append(es[:2], es[5:]...)
		}, Missing, 3, "records 3 to 5 missing: seq goes from 2 to 6"},
		{"first record removed", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			return es[1:]
		}, Missing, 1, "record 1 missing: seq goes from 0 to 2"},
		{"removed before the last", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			return append(es[:6], es[7])
		}, Missing, 7, "record 7 missing: seq goes from 6 to 8"},
		{"removed, then the next altered", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			alter(es[4], false)
			return append(es[:3], es[4:]...)
		}, Missing, 4, "record 4 missing: seq goes from 3 to 5"},
		{"two records swapped", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			es[3], es[4] = es[4], es[3]
			return es
		}, OutOfOrder, 4, "records out of order at 4: record 4 comes after record 5"},
		{"a record moved back", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			moved := es[2]
			es = append(es[:2], es[3:]...)
			return append(es[:5], append([]*pocnetv1.AuditEntry{moved}, es[5:]...)...)
		}, OutOfOrder, 3, "records out of order at 3: record 3 comes after record 6"},
		{"a record repeated", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			return append(es[:4], append([]*pocnetv1.AuditEntry{es[3]}, es[4:]...)...)
		}, OutOfOrder, 5, "records out of order at 5: record 4 appears twice"},
		{"records removed from the end", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			return es[:6]
		}, Truncated, 7, "log ends at 6 but the node's head is 8 (records removed from the end)"},
		{"everything removed", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			return nil
		}, Truncated, 1, "log ends at 0 but the node's head is 8 (records removed from the end)"},
		{"chain rewritten from a point on", func(es []*pocnetv1.AuditEntry) []*pocnetv1.AuditEntry {
			prev := Head{Seq: 5, Hash: es[4].GetHash()}
			es = es[:5]
			for range 3 {
				e, h, err := Seal(prev, &pocnetv1.AuditRecord{Action: pocnetv1.AuditAction_AUDIT_ACTION_ADMIN, OccurredAt: timestamppb.New(t0)})
				if err != nil {
					panic(err)
				}
				es, prev = append(es, e), h
			}
			return es
		}, Rewritten, 8, "record 8 differs from the node's head: hash "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tamper(entries, tt.edit), nodeHead)
			var ae *Error
			if !errors.As(err, &ae) || !errors.Is(err, ErrBroken) {
				t.Fatalf("Verify = %v, want an *Error wrapping ErrBroken", err)
			}
			if ae.Problem != tt.problem || ae.Seq != tt.seq || !strings.HasPrefix(err.Error(), tt.msg) {
				t.Fatalf("Verify = %v (%v at %d), want %v at %d: %q", err, ae.Problem, ae.Seq, tt.problem, tt.seq, tt.msg)
			}
		})
	}
	if _, err := Verify(entries, nodeHead); err != nil {
		t.Fatalf("the untouched log: %v", err)
	}
}

func TestVerifierFromAStart(t *testing.T) {
	entries, head := chain(t, 6)
	start := Head{Seq: 3, Hash: entries[2].GetHash()}
	v := NewVerifier(start, Anchor{Head: head})
	for _, e := range entries[3:] {
		if err := v.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := v.Finish(); err != nil || got.Seq != 6 || v.Records() != 3 {
		t.Fatalf("Finish = %v, %v; %d records", got, err, v.Records())
	}
	// A start that is not where the entries come from.
	v = NewVerifier(Head{Seq: 3, Hash: entries[1].GetHash()})
	if err := v.Add(entries[3]); err == nil || !strings.HasPrefix(err.Error(), "record 4 does not link to record 3") {
		t.Fatalf("Add after a wrong start = %v", err)
	}
	// An anchor at the start must match it.
	v = NewVerifier(start, Anchor{Head: Head{Seq: 3, Hash: entries[0].GetHash()}, Label: "the noted head"})
	if _, err := v.Finish(); err == nil || !strings.HasPrefix(err.Error(), "record 3 differs from the noted head") {
		t.Fatalf("Finish with a contradicting anchor = %v", err)
	}
}

func TestEmptyLog(t *testing.T) {
	if h, err := Verify(nil, Anchor{Head: Head{}}); err != nil || h.Seq != 0 || !bytes.Equal(h.Hash, Genesis()) {
		t.Fatalf("empty log: %v, %v", h, err)
	}
}

func TestHeadText(t *testing.T) {
	_, head := chain(t, 2)
	got, err := ParseHead(head.String())
	if err != nil || got.String() != head.String() {
		t.Fatalf("ParseHead(%q) = %v, %v", head.String(), got, err)
	}
	if (Head{}).String() != "0:"+strings.Repeat("0", 2*HashLen) {
		t.Fatalf("empty head %q", Head{}.String())
	}
	for _, bad := range []string{"", "12", "x:00", "1:zz", "1:abcd", "-1:" + strings.Repeat("0", 64)} {
		if _, err := ParseHead(bad); err == nil {
			t.Errorf("ParseHead(%q) accepted", bad)
		}
	}
}

func TestSealCutsLongDetail(t *testing.T) {
	long := strings.Repeat("é", MaxDetail)
	e, _, err := Seal(Head{}, &pocnetv1.AuditRecord{Action: pocnetv1.AuditAction_AUDIT_ACTION_ADMIN, Detail: long})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := Decode(e)
	if d := rec.GetDetail(); len(d) > MaxDetail || !utf8.ValidString(d) || !strings.HasSuffix(d, "…") || rec.GetOccurredAt() == nil {
		t.Fatalf("detail of %d bytes, valid %v, time %v", len(d), utf8.ValidString(d), rec.GetOccurredAt())
	}
	if _, _, err := Seal(Head{Seq: 4, Hash: []byte{1}}, &pocnetv1.AuditRecord{}); err == nil {
		t.Fatal("sealed after a head with a short hash")
	}
}
