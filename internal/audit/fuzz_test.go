package audit

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// FuzzVerifyFile feeds arbitrary bytes, as an edited or damaged export file
// could hold them, to the file decoder and the verifier: they must never
// panic, and a file they accept must be a whole chain from its start to at
// least its header's head. Its seed corpus is testdata/fuzz/FuzzVerifyFile.
func FuzzVerifyFile(f *testing.F) {
	entries, head := chain(f, 4)
	good := export(f, entries, head)
	f.Add(good)
	f.Add([]byte{})
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := VerifyFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		if res.Head.Seq < res.Header.Head.Seq || uint64(res.Records) != res.Head.Seq-res.Header.Start.Seq {
			t.Fatalf("accepted %d records from %v to %v, header head %v", res.Records, res.Header.Start, res.Head, res.Header.Head)
		}
	})
}

// FuzzVerifyEntry appends one arbitrary entry to an intact chain: the
// verifier must never panic, and must accept only an entry that is the
// honest next link, its hash the chain hash of its bytes.
func FuzzVerifyEntry(f *testing.F) {
	entries, head := chain(f, 3)
	next, _, err := Seal(head, &pocnetv1.AuditRecord{Action: pocnetv1.AuditAction_AUDIT_ACTION_ADMIN, Detail: "key rotated"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(next.GetRecord(), next.GetHash())
	f.Add(entries[1].GetRecord(), entries[1].GetHash())
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0x08, 0x04}, Hash(head.Hash, []byte{0x08, 0x04}))
	f.Fuzz(func(t *testing.T, record, hash []byte) {
		v := NewVerifier(Head{})
		for _, e := range entries {
			if err := v.Add(e); err != nil {
				t.Fatal(err)
			}
		}
		if v.Add(&pocnetv1.AuditEntry{Record: record, Hash: hash}) != nil {
			return
		}
		got, err := v.Finish()
		if err != nil {
			return // a gap, reported at the end
		}
		var rec pocnetv1.AuditRecord
		if proto.Unmarshal(record, &rec) != nil || rec.GetSeq() != 4 || !bytes.Equal(rec.GetPrevHash(), head.Hash) ||
			!bytes.Equal(hash, Hash(head.Hash, record)) || !bytes.Equal(got.Hash, hash) {
			t.Fatalf("accepted a dishonest entry: record %x, hash %x", record, hash)
		}
	})
}
