package governance_test

import (
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/governance"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

var sentinels = []error{governance.ErrInvalid, governance.ErrUnauthorized, governance.ErrObjected, governance.ErrNotYetEffective}

// fuzzSeeds returns a fixed parent and valid and broken children of it.
func fuzzSeeds(f *testing.F) (*world, *governance.Version, [][]byte) {
	w := newWorld(f)
	g := w.genesis(consensus(), "XAA", "XBB", "XCC")
	three := []string{"XAA", "XBB", "XCC"}
	children := []*pocnetv1.SignedVersion{
		w.sign(w.child(g, entryUpdate("XBB"), rename("XBB", "B")), "XBB"),
		w.sign(w.child(g, entryUpdate("XBB"), rename("XBB", "B")), "XAA"),
		w.sign(w.child(g, admission("XKK"), add(w.member("XKK"))), three...),
		w.sign(w.child(g, admission("XKK"), add(w.member("XKK"))), "XAA", "XBB"),
		w.sign(w.child(g, removal("XCC"), drop("XCC")), "XCC"),
		w.sign(w.child(g, ruleChange(), setRule(threshold(2))), three...),
		w.sign(w.child(g, observerAdmission("XLL", t0.Add(time.Hour+silence)), add(w.observer("XLL"))), "XAA"),
		w.object(w.sign(w.child(g, observerAdmission("XLL", t0.Add(time.Hour+silence)), add(w.observer("XLL"))), "XAA"), "XBB"),
		{Version: w.child(g, entryUpdate("XBB"), rename("XBB", "B"))},
	}
	var seeds [][]byte
	for _, sv := range children {
		b, err := proto.Marshal(sv)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return w, g, seeds
}

// checkAccepted asserts what every accepted child of parent must satisfy,
// recomputed here independently of the package: a change that is what it
// declares, signed as its kind requires, by signatures that verify with the
// parent's keys over the documented signing input.
func checkAccepted(t *testing.T, parent, v *governance.Version) {
	t.Helper()
	sv := v.Signed()
	if len(sv.GetSignatures()) == 0 {
		t.Fatal("accepted an unsigned version")
	}
	input := append([]byte("pocnet/v1 directory version\x00"), byte(len(sv.Version)>>24), byte(len(sv.Version)>>16), byte(len(sv.Version)>>8), byte(len(sv.Version)))
	input = append(input, sv.Version...)
	var signers []string
	for _, s := range sv.GetSignatures() {
		k, ok := parent.Directory().SigningKey(s.GetState(), s.GetKeyId())
		if !ok || k.GetStatus() == pocnetv1.KeyStatus_KEY_STATUS_REVOKED || !ed25519.Verify(k.GetPublicKey(), input, s.GetSignature()) {
			t.Fatalf("accepted a signature of %s that does not verify with the parent's keys", s.GetState())
		}
		signers = append(signers, s.GetState())
	}
	if v.Number() != parent.Number()+1 || v.IssuedAt().Before(parent.IssuedAt()) {
		t.Fatalf("accepted version %d issued %s after version %d issued %s", v.Number(), v.IssuedAt(), parent.Number(), parent.IssuedAt())
	}
	if _, err := directory.New(v.Directory().Proto()); err != nil {
		t.Fatalf("accepted an invalid directory: %v", err)
	}
	states := governance.StateMembers(parent.Directory())
	needed, eligible, err := governance.Required(parent.Rule(), states, v.Change())
	if err != nil {
		t.Fatalf("accepted a change Required refuses: %v", err)
	}
	same := proto.Equal(parent.Directory().Proto(), v.Directory().Proto()) && proto.Equal(parent.Rule(), v.Rule())
	if same {
		t.Fatal("accepted a version that changes nothing")
	}
	switch c := v.Change().GetChange().(type) {
	case *pocnetv1.Change_EntryUpdate:
		if !slices.Equal(signers, []string{c.EntryUpdate.GetState()}) {
			t.Fatalf("entry of %s changed with signatures of %v", c.EntryUpdate.GetState(), signers)
		}
	case *pocnetv1.Change_Removal:
		if slices.Contains(signers, c.Removal.GetState()) {
			return // a withdrawal
		}
		if n := countIn(signers, eligible); n < needed {
			t.Fatalf("removal with %d of %d signatures", n, needed)
		}
	case *pocnetv1.Change_ObserverAdmission:
		if len(sv.GetObjections()) > 0 || countIn(signers, states) == 0 {
			t.Fatalf("observer admission with objections %v, signed by %v", sv.GetObjections(), signers)
		}
	default:
		if n := countIn(signers, eligible); n < needed {
			t.Fatalf("%T with %d of %d signatures", c, n, needed)
		}
	}
}

func countIn(signers, eligible []string) int {
	n := 0
	for _, s := range signers {
		if slices.Contains(eligible, s) {
			n++
		}
	}
	return n
}

func checkRefused(t *testing.T, v *governance.Version, err error) {
	t.Helper()
	if v != nil {
		t.Fatal("a version and an error")
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error %q wraps none of the package's errors", err)
}

// FuzzVerifyVersion decodes arbitrary bytes as a signed version and
// verifies it against a fixed parent. It must never panic, and whatever it
// accepts must be signed as its change requires.
func FuzzVerifyVersion(f *testing.F) {
	_, g, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
		f.Add(s[:len(s)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		sv, err := governance.Parse(data)
		if err != nil {
			if !errors.Is(err, governance.ErrInvalid) || sv != nil {
				t.Fatalf("Parse = %v, %v", sv, err)
			}
			return
		}
		v, err := governance.Verify(g, sv, now)
		if err != nil {
			checkRefused(t, v, err)
			return
		}
		checkAccepted(t, g, v)
	})
}

// FuzzVerifyVersionBytes takes arbitrary bytes as a version's exact bytes,
// signed by every state of the parent, so that the fuzzer reaches past the
// signatures into the decoding and the change checks. A version every state
// signed may still only change what it declares.
func FuzzVerifyVersionBytes(f *testing.F) {
	w, g, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		sv, err := governance.Parse(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sv.GetVersion())
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		sv := &pocnetv1.SignedVersion{Version: data}
		for _, s := range []string{"XAA", "XBB", "XCC"} {
			sig, err := governance.Sign(s, w.keys[s], data)
			if err != nil {
				t.Fatal(err)
			}
			sv.Signatures = append(sv.Signatures, sig)
		}
		v, err := governance.Verify(g, sv, now)
		if err != nil {
			checkRefused(t, v, err)
			return
		}
		checkAccepted(t, g, v)
	})
}
