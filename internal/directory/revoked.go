package directory

import (
	"crypto/sha256"
	"fmt"
	"unicode/utf8"

	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// MaxRevocationReason bounds the reason of one revoked certificate, in bytes:
// it is read by people in logs and refusals, not a document.
const MaxRevocationReason = 1024

// revocations validates a member's revoked certificates and returns them
// as the trust bundle holds them. An error starts with the index of the
// entry and names the field, e.g. "[0].sha256: 31 bytes, want 32".
//
// A member revokes only certificates of its own: the entries are kept per
// member and the bundle consults them only for identities naming that
// member, so that no state can withdraw another state's certificate.
func revocations(rs []*pocnetv1.RevokedCertificate) ([]identity.Revocation, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	out := make([]identity.Revocation, 0, len(rs))
	seen := make(map[[sha256.Size]byte]int, len(rs))
	for i, r := range rs {
		if n := len(r.GetSha256()); n != sha256.Size {
			return nil, fmt.Errorf("[%d].sha256: %d bytes, want the %d-byte SHA-256 of the certificate's DER", i, n, sha256.Size)
		}
		fp := [sha256.Size]byte(r.GetSha256())
		if j, dup := seen[fp]; dup {
			return nil, fmt.Errorf("[%d].sha256: %x is already revoked by entry [%d]", i, fp, j)
		}
		seen[fp] = i
		// A revocation without a time cannot be told apart from one made by
		// mistake with a zero value; the time is also what a refused peer
		// is told, so it must be real.
		if r.GetRevokedAt() == nil {
			return nil, fmt.Errorf("[%d].revoked_at: required", i)
		}
		if err := r.GetRevokedAt().CheckValid(); err != nil {
			return nil, fmt.Errorf("[%d].revoked_at: %v", i, err)
		}
		if len(r.GetReason()) > MaxRevocationReason {
			return nil, fmt.Errorf("[%d].reason: %d bytes, more than %d", i, len(r.GetReason()), MaxRevocationReason)
		}
		if !utf8.ValidString(r.GetReason()) {
			return nil, fmt.Errorf("[%d].reason: not valid UTF-8", i)
		}
		out = append(out, identity.Revocation{SHA256: fp, At: r.GetRevokedAt().AsTime(), Reason: r.GetReason()})
	}
	return out, nil
}
