package governance_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/governance"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// now is when every version of these tests is verified: after all of them
// were issued and after the silence deadlines they use.
var now = t0.Add(60 * 24 * time.Hour)

var five = ten[:5]

// apply verifies sv as parent's child and fails the test if it does not.
func (w *world) apply(parent *governance.Version, sv *pocnetv1.SignedVersion) *governance.Version {
	w.t.Helper()
	v, err := governance.Verify(parent, sv, now)
	if err != nil {
		w.t.Fatalf("Verify: %v", err)
	}
	return v
}

// rotate returns an edit that gives state a new active signing key and
// sets its old keys to status, retired at the version's issued_at.
func rotate(state string, next ed25519.PrivateKey, status pocnetv1.KeyStatus) func(*pocnetv1.DirectoryVersion) {
	return func(v *pocnetv1.DirectoryVersion) {
		for _, m := range v.Directory.Members {
			if m.State != state {
				continue
			}
			for _, k := range m.SigningKeys {
				k.Status = status
				if status == pocnetv1.KeyStatus_KEY_STATUS_RETIRED {
					k.RetiredAt = v.IssuedAt
				}
			}
			m.SigningKeys = append(m.SigningKeys, certs.PublishSigningKey(next))
		}
	}
}

func newKey(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signWith signs data as state with key.
func signWith(t testing.TB, sv *pocnetv1.SignedVersion, state string, key ed25519.PrivateKey) *pocnetv1.SignedVersion {
	sig, err := governance.Sign(state, key, sv.GetVersion())
	if err != nil {
		t.Fatal(err)
	}
	sv.Signatures = append(sv.Signatures, sig)
	return sv
}

func TestVerifyRefuses(t *testing.T) {
	w := newWorld(t)
	g := w.genesis(consensus(), five...)
	tests := []struct {
		name  string
		build func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion)
		is    error
		want  string
	}{
		{"update of XBB's entry signed by XAA", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), rename("XBB", "Renamed")), "XAA")
		}, governance.ErrUnauthorized, "version 2: entry of XBB changed but signed by XAA only"},
		{"update of XBB's entry signed by nobody", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), rename("XBB", "Renamed")))
		}, governance.ErrUnauthorized, "version 2: entry of XBB changed but not signed"},
		{"update of XBB's entry signed by every state", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), rename("XBB", "Renamed")), five...)
		}, governance.ErrUnauthorized, "version 2: entry update of XBB also signed by XAA, XCC, XDD, XEE: an entry is changed by its own member's signature alone"},
		{"update of XBB declared, XCC's entry changed", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), rename("XCC", "Renamed")), "XBB")
		}, governance.ErrInvalid, "version 2: entry update of XBB declared, but the directory has changed XCC"},
		{"update of XBB changes XCC too", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), both(rename("XBB", "B"), rename("XCC", "C"))), "XBB")
		}, governance.ErrInvalid, "version 2: entry update of XBB declared, but the directory has changed XBB, XCC"},
		{"update of XBB changes nothing", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), nil), "XBB")
		}, governance.ErrInvalid, "version 2: entry update of XBB declared, but the directory has no member change"},
		{"update of XBB makes it an observer", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), func(v *pocnetv1.DirectoryVersion) {
				v.Directory.Members[1].Kind = pocnetv1.MemberKind_MEMBER_KIND_OBSERVER
			}), "XBB")
		}, governance.ErrInvalid, "version 2: entry update of XBB: kind changed from MEMBER_KIND_STATE to MEMBER_KIND_OBSERVER"},
		{"update of XBB changes the rule", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), both(rename("XBB", "B"), setRule(threshold(1)))), "XBB")
		}, governance.ErrInvalid, "version 2: entry update of XBB: the rule changed too"},
		{"update of a state not in the directory", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XKK"), add(w.member("XKK"))), "XAA")
		}, governance.ErrInvalid, "version 2: entry update: XKK is not a member (a new member is admitted)"},
		{"update leaves an invalid directory", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), func(v *pocnetv1.DirectoryVersion) { v.Directory.Members[1].Endpoints = nil }), "XBB")
		}, directory.ErrInvalid, "version 2: directory: invalid directory: members[1].endpoints: at least one host:port is required"},
		{"update changes the federation id", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), both(rename("XBB", "B"), func(v *pocnetv1.DirectoryVersion) { v.Directory.FederationId = "other.example" })), "XBB")
		}, governance.ErrInvalid, `version 2: directory.federation_id: "other.example" is not the federation's "pocnet.example"`},
		{"admission one signature short", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, admission("XKK"), add(w.member("XKK"))), "XAA", "XBB", "XCC", "XDD")
		}, governance.ErrUnauthorized, "version 2: 4 signatures of the 5 needed under consensus; not signed by: XEE"},
		{"admission signed by the admitted state", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, admission("XKK"), add(w.member("XKK"))), "XAA", "XBB", "XCC", "XDD", "XKK")
		}, governance.ErrUnauthorized, `version 2: signatures[4]: "XKK" is not a member of the directory in force`},
		{"admission signed twice by one state", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, admission("XKK"), add(w.member("XKK"))), "XAA", "XBB", "XCC", "XDD", "XDD")
		}, governance.ErrUnauthorized, "version 2: signatures[4]: XDD signed twice"},
		{"admission with a signature that does not verify", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			sv := w.sign(w.child(g, admission("XKK"), add(w.member("XKK"))), five...)
			sv.Signatures[2].Signature[0] ^= 1
			return g, sv
		}, governance.ErrUnauthorized, "version 2: signatures[2]: signature of XCC does not verify with key ed25519:"},
		{"admission with a truncated signature", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			sv := w.sign(w.child(g, admission("XKK"), add(w.member("XKK"))), five...)
			sv.Signatures[0].Signature = sv.Signatures[0].Signature[:10]
			return g, sv
		}, governance.ErrUnauthorized, "version 2: signatures[0]: signature of XAA does not verify"},
		{"admission with an objection-domain signature", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			sv := w.sign(w.child(g, admission("XKK"), add(w.member("XKK"))), "XAA", "XBB", "XCC", "XDD")
			o := w.object(&pocnetv1.SignedVersion{Version: sv.Version}, "XEE")
			sv.Signatures = append(sv.Signatures, o.Objections[0])
			return g, sv
		}, governance.ErrUnauthorized, "version 2: signatures[4]: signature of XEE does not verify"},
		{"admission signed with a key of another state", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			sv := w.sign(w.child(g, admission("XKK"), add(w.member("XKK"))), "XAA", "XBB", "XCC", "XDD")
			return g, signWith(t, sv, "XEE", w.keys["XAA"])
		}, governance.ErrUnauthorized, "version 2: signatures[4]: key id \"ed25519:"},
		{"admission of an observer", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, admission("XLL"), add(w.observer("XLL"))), five...)
		}, governance.ErrInvalid, "version 2: admission of XLL: kind is MEMBER_KIND_OBSERVER; observers are admitted by observer_admission"},
		{"admission adds two members", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, admission("XKK"), both(add(w.member("XKK")), add(w.member("XLL")))), five...)
		}, governance.ErrInvalid, "version 2: admission of XKK declared, but the directory has added XKK, XLL"},
		{"admission changes the rule", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, admission("XKK"), both(add(w.member("XKK")), setRule(threshold(1)))), five...)
		}, governance.ErrInvalid, "version 2: admission of XKK: the rule changed too"},
		{"removal one signature short", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, removal("XEE"), drop("XEE")), "XAA", "XBB", "XCC")
		}, governance.ErrUnauthorized, "version 2: 3 signatures of the 4 needed under consensus; not signed by: XDD"},
		{"removal of the last state by itself", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			g1 := w.genesis(consensus(), "XAA")
			return g1, w.sign(w.child(g1, removal("XAA"), drop("XAA")), "XAA")
		}, governance.ErrInvalid, "version 2: removal of XAA would leave no state member"},
		{"a signature from a removed member", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			v2 := w.apply(g, w.sign(w.child(g, removal("XEE"), drop("XEE")), "XAA", "XBB", "XCC", "XDD"))
			return v2, w.sign(w.child(v2, admission("XKK"), add(w.member("XKK"))), "XAA", "XBB", "XCC", "XDD", "XEE")
		}, governance.ErrUnauthorized, `version 3: signatures[4]: "XEE" is not a member of the directory in force`},
		{"rule change to a threshold above the membership", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, ruleChange(), setRule(threshold(6))), five...)
		}, governance.ErrInvalid, "version 2: rule change: rule.threshold.states: 6 is more than the 5 state members: no decision could be taken"},
		{"rule change to half", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, ruleChange(), setRule(supermajority(50))), five...)
		}, governance.ErrInvalid, "version 2: rule change: rule.supermajority.percent: 50 is not between 51 and 100"},
		{"rule change to the same rule", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, ruleChange(), nil), five...)
		}, governance.ErrInvalid, "version 2: rule change: the rule is unchanged"},
		{"rule change one signature short", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, ruleChange(), setRule(threshold(1))), "XAA", "XBB", "XCC", "XEE")
		}, governance.ErrUnauthorized, "version 2: 4 signatures of the 5 needed under consensus; not signed by: XDD"},
		{"rule change with a member change", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, ruleChange(), both(setRule(threshold(1)), rename("XAA", "A"))), five...)
		}, governance.ErrInvalid, "version 2: rule change: the directory also has changed XAA"},
		{"an observer signs a decision", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			gobs := w.apply(nil, w.sign(w.genesisBytes(consensus(), append(w.states(five...), w.observer("XLL"))...), five...))
			return gobs, w.sign(w.child(gobs, admission("XKK"), add(w.member("XKK"))), "XAA", "XBB", "XCC", "XDD", "XEE", "XLL")
		}, governance.ErrUnauthorized, "version 2: signature of XLL may not count: observers and a member being removed do not sign decisions"},
		{"observer admission with one objection", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			sv := w.sign(w.child(g, observerAdmission("XLL", t0.Add(time.Hour+silence)), add(w.observer("XLL"))), "XAA")
			return g, w.object(sv, "XCC")
		}, governance.ErrObjected, "version 2: admission of XLL objected to by XCC"},
		{"observer admission before its deadline", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, observerAdmission("XLL", now.Add(time.Second)), add(w.observer("XLL"))), "XAA")
		}, governance.ErrNotYetEffective, "version 2: admission of XLL takes effect at "},
		{"observer admission with a short silence", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, observerAdmission("XLL", t0.Add(silence)), add(w.observer("XLL"))), "XAA")
		}, governance.ErrInvalid, "version 2: observer admission of XLL: silence_deadline 2030-03-15T12:00:00Z is before issued_at plus the silence period of 336h0m0s (2030-03-15T13:00:00Z)"},
		{"observer admission proposed by nobody", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, observerAdmission("XLL", t0.Add(time.Hour+silence)), add(w.observer("XLL"))))
		}, governance.ErrUnauthorized, "version 2: observer admission of XLL is proposed by no state member"},
		{"observer admission of a state", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, observerAdmission("XKK", t0.Add(time.Hour+silence)), add(w.member("XKK"))), "XAA")
		}, governance.ErrInvalid, "version 2: observer admission of XKK: kind is MEMBER_KIND_STATE, not MEMBER_KIND_OBSERVER"},
		{"observer admission with a forged objection", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			sv := w.sign(w.child(g, observerAdmission("XLL", t0.Add(time.Hour+silence)), add(w.observer("XLL"))), "XAA")
			// An approving signature offered as an objection.
			sv.Objections = append(sv.Objections, w.sign(sv.Version, "XCC").Signatures[0])
			return g, sv
		}, governance.ErrUnauthorized, "version 2: objections[0]: signature of XCC does not verify"},
		{"an objection to an admission", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.object(w.sign(w.child(g, admission("XKK"), add(w.member("XKK"))), five...), "XAA")
		}, governance.ErrInvalid, "version 2: objections: only an observer admission can be objected to"},
		{"issued in the future", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), both(rename("XBB", "B"), func(v *pocnetv1.DirectoryVersion) {
				v.IssuedAt = timestamppb.New(now.Add(governance.MaxClockSkew + time.Second))
			})), "XBB")
		}, governance.ErrInvalid, "version 2: issued_at 2030-04-30T12:05:01Z is in the future"},
		{"issued before the parent", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), both(rename("XBB", "B"), func(v *pocnetv1.DirectoryVersion) {
				v.IssuedAt = timestamppb.New(t0.Add(-time.Second))
			})), "XBB")
		}, governance.ErrInvalid, "version 2: issued_at 2030-03-01T11:59:59Z is before version 1's 2030-03-01T12:00:00Z"},
		{"no issued_at", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), both(rename("XBB", "B"), func(v *pocnetv1.DirectoryVersion) { v.IssuedAt = nil })), "XBB")
		}, governance.ErrInvalid, "version 2: issued_at: required"},
		{"wrong parent hash", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), both(rename("XBB", "B"), func(v *pocnetv1.DirectoryVersion) { v.ParentHash[0] ^= 1 })), "XBB")
		}, governance.ErrInvalid, "is not the hash of version 1"},
		{"wrong version number", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, entryUpdate("XBB"), both(rename("XBB", "B"), func(v *pocnetv1.DirectoryVersion) { v.Version = 3 })), "XBB")
		}, governance.ErrInvalid, "version 3: does not follow version 1"},
		{"no change declared", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, w.sign(w.child(g, nil, rename("XBB", "B")), "XBB")
		}, governance.ErrInvalid, "version 2: change: required after the genesis"},
		{"unknown field in the version", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			b := w.child(g, entryUpdate("XBB"), rename("XBB", "B"))
			b = append(b, 0xf8, 0x06, 0x01) // field 111, varint 1
			return g, w.sign(b, "XBB")
		}, governance.ErrInvalid, "version 2: unknown fields"},
		{"no version bytes", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, &pocnetv1.SignedVersion{}
		}, governance.ErrInvalid, "version: required"},
		{"version bytes that do not decode", func(t *testing.T) (*governance.Version, *pocnetv1.SignedVersion) {
			return g, &pocnetv1.SignedVersion{Version: []byte{0xff}}
		}, governance.ErrInvalid, "version: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, sv := tt.build(t)
			v, err := governance.Verify(parent, sv, now)
			if err == nil {
				t.Fatalf("Verify accepted version %d", v.Number())
			}
			if v != nil {
				t.Error("Verify returned a version and an error")
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestVerifyKeys(t *testing.T) {
	w := newWorld(t)
	g := w.genesis(consensus(), five...)
	next := newKey(t)

	// A state rotating its key signs with its old key, the one in force.
	t.Run("rotation signed with the new key", func(t *testing.T) {
		sv := signWith(t, &pocnetv1.SignedVersion{Version: w.child(g, entryUpdate("XBB"), rotate("XBB", next, pocnetv1.KeyStatus_KEY_STATUS_RETIRED))}, "XBB", next)
		_, err := governance.Verify(g, sv, now)
		if !errors.Is(err, governance.ErrUnauthorized) || !strings.Contains(err.Error(), "is not a signing key of XBB in the directory") {
			t.Fatalf("Verify = %v", err)
		}
	})
	retired := w.apply(g, w.sign(w.child(g, entryUpdate("XBB"), rotate("XBB", next, pocnetv1.KeyStatus_KEY_STATUS_RETIRED)), "XBB"))
	revoked := w.apply(g, w.sign(w.child(g, entryUpdate("XBB"), rotate("XBB", next, pocnetv1.KeyStatus_KEY_STATUS_REVOKED)), "XBB"))

	t.Run("old key after retirement", func(t *testing.T) {
		_, err := governance.Verify(retired, w.sign(w.child(retired, entryUpdate("XBB"), rename("XBB", "B")), "XBB"), now)
		if !errors.Is(err, governance.ErrUnauthorized) || !strings.Contains(err.Error(), "version 3: signatures[0]: signing key ed25519:") ||
			!strings.Contains(err.Error(), "of XBB was retired at 2030-03-01T13:00:00Z, before this was made") {
			t.Fatalf("Verify = %v", err)
		}
	})
	t.Run("revoked key", func(t *testing.T) {
		sv := w.sign(w.child(revoked, admission("XKK"), add(w.member("XKK"))), five...)
		_, err := governance.Verify(revoked, sv, now)
		if !errors.Is(err, governance.ErrUnauthorized) || !strings.Contains(err.Error(), "of XBB is revoked") {
			t.Fatalf("Verify = %v", err)
		}
	})
	t.Run("new key after rotation", func(t *testing.T) {
		for _, parent := range []*governance.Version{retired, revoked} {
			sv := signWith(t, &pocnetv1.SignedVersion{Version: w.child(parent, entryUpdate("XBB"), rename("XBB", "B"))}, "XBB", next)
			w.apply(parent, sv)
		}
	})
}

func TestVerifyAccepts(t *testing.T) {
	w := newWorld(t)
	g := w.genesis(consensus(), five...)
	tests := []struct {
		name    string
		sv      *pocnetv1.SignedVersion
		signers []string
	}{
		{"a state updates its own entry", w.sign(w.child(g, entryUpdate("XBB"), rename("XBB", "Renamed")), "XBB"), []string{"XBB"}},
		{"a member moves in the list", w.sign(w.child(g, entryUpdate("XBB"), both(rename("XBB", "B"), func(v *pocnetv1.DirectoryVersion) {
			m := v.Directory.Members
			m[0], m[4] = m[4], m[0]
		})), "XBB"), []string{"XBB"}},
		// The removed state is not asked, and cannot veto.
		{"removal by all the others", w.sign(w.child(g, removal("XEE"), drop("XEE")), "XDD", "XCC", "XBB", "XAA"), []string{"XDD", "XCC", "XBB", "XAA"}},
		// A withdrawal: the member's own signature suffices.
		{"a member removes itself", w.sign(w.child(g, removal("XCC"), drop("XCC")), "XCC"), []string{"XCC"}},
		{"a member removes itself with others", w.sign(w.child(g, removal("XCC"), drop("XCC")), "XCC", "XAA"), []string{"XCC", "XAA"}},
		{"admission by consensus", w.sign(w.child(g, admission("XKK"), add(w.member("XKK"))), five...), five},
		{"rule change by consensus", w.sign(w.child(g, ruleChange(), setRule(threshold(5))), five...), five},
		{"observer admission after silence", w.sign(w.child(g, observerAdmission("XLL", t0.Add(time.Hour+silence)), add(w.observer("XLL"))), "XDD"), []string{"XDD"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := governance.Verify(g, tt.sv, now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if v.Number() != 2 || v.Hash() != governance.Hash(tt.sv.GetVersion()) || !proto.Equal(v.Signed(), tt.sv) {
				t.Errorf("version %d, hash %x", v.Number(), v.Hash())
			}
			if got := v.Signers(); strings.Join(got, ",") != strings.Join(tt.signers, ",") {
				t.Errorf("Signers = %v, want %v", got, tt.signers)
			}
		})
	}
}

func TestGenesis(t *testing.T) {
	w := newWorld(t)
	withObserver := append(w.states(five...), w.observer("XLL"))
	tests := []struct {
		name string
		sv   *pocnetv1.SignedVersion
		is   error
		want string
	}{
		{"one founder did not sign", w.sign(w.genesisBytes(consensus(), w.states(five...)...), "XAA", "XBB", "XCC", "XDD"),
			governance.ErrUnauthorized, "version 1: 4 signatures of the 5 needed for a genesis (every state member); not signed by: XEE"},
		{"an observer signs", w.sign(w.genesisBytes(consensus(), withObserver...), "XAA", "XBB", "XCC", "XDD", "XEE", "XLL"),
			governance.ErrUnauthorized, "version 1: signature of XLL may not count: a genesis is signed by its state members"},
		{"a threshold above the founders", w.sign(w.genesisBytes(threshold(6), w.states(five...)...), five...),
			governance.ErrInvalid, "version 1: rule.threshold.states: 6 is more than the 5 state members"},
		{"no rule", w.sign(w.genesisBytes(nil, w.states(five...)...), five...), governance.ErrInvalid, "version 1: rule: required"},
		{"observers only", w.sign(w.genesisBytes(consensus(), w.observer("XLL")), "XLL"),
			governance.ErrInvalid, "version 1: directory: a genesis needs at least one state member"},
		{"a change", w.sign(w.marshal(&pocnetv1.DirectoryVersion{Version: 1, IssuedAt: timestamppb.New(t0), Directory: w.directory(w.states(five...)...), Rule: consensus(), Change: admission("XAA")}), five...),
			governance.ErrInvalid, "version 1: change: a genesis has none"},
		{"a parent", w.sign(w.marshal(&pocnetv1.DirectoryVersion{Version: 1, ParentHash: []byte{1}, IssuedAt: timestamppb.New(t0), Directory: w.directory(w.states(five...)...), Rule: consensus()}), five...),
			governance.ErrInvalid, "version 1: parent_hash: a genesis has none"},
		{"version 2", w.sign(w.marshal(&pocnetv1.DirectoryVersion{Version: 2, IssuedAt: timestamppb.New(t0), Directory: w.directory(w.states(five...)...), Rule: consensus()}), five...),
			governance.ErrInvalid, "version 2: a genesis is version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := governance.Verify(nil, tt.sv, now)
			if !errors.Is(err, tt.is) || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want %v containing %q", err, tt.is, tt.want)
			}
		})
	}
	t.Run("with an observer", func(t *testing.T) {
		v := w.apply(nil, w.sign(w.genesisBytes(supermajority(70), withObserver...), five...))
		if got := governance.StateMembers(v.Directory()); strings.Join(got, ",") != strings.Join(five, ",") {
			t.Errorf("StateMembers = %v", got)
		}
		if v.Change() != nil || v.Number() != 1 {
			t.Errorf("genesis change %v, number %d", v.Change(), v.Number())
		}
	})
}
