package directory_test

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func revoked(der []byte, reason string) *pocnetv1.RevokedCertificate {
	fp := sha256.Sum256(der)
	return &pocnetv1.RevokedCertificate{Sha256: fp[:], RevokedAt: timestamppb.New(t0), Reason: reason}
}

func TestNewRefusesInvalidRevocations(t *testing.T) {
	f := federation(t)
	xaaNode := f.State("XAA").Node.Cert.Raw
	xaaAdmin := f.State("XAA").Operator("admin").Cert.Raw
	tests := []struct {
		name   string
		mutate func(*pocnetv1.Directory)
		want   string // the whole message after "invalid directory: "
	}{
		{"fingerprint too short", func(d *pocnetv1.Directory) {
			d.Members[1].RevokedCertificates = []*pocnetv1.RevokedCertificate{{Sha256: make([]byte, 31), RevokedAt: timestamppb.New(t0)}}
		}, "members[1].revoked_certificates[0].sha256: 31 bytes, want the 32-byte SHA-256 of the certificate's DER"},
		{"fingerprint missing", func(d *pocnetv1.Directory) {
			d.Members[1].RevokedCertificates = []*pocnetv1.RevokedCertificate{revoked(xaaNode, ""), {RevokedAt: timestamppb.New(t0)}}
		}, "members[1].revoked_certificates[1].sha256: 0 bytes, want"},
		{"certificate instead of its fingerprint", func(d *pocnetv1.Directory) {
			d.Members[1].RevokedCertificates = []*pocnetv1.RevokedCertificate{{Sha256: xaaNode, RevokedAt: timestamppb.New(t0)}}
		}, "members[1].revoked_certificates[0].sha256: "},
		{"revoked twice", func(d *pocnetv1.Directory) {
			d.Members[1].RevokedCertificates = []*pocnetv1.RevokedCertificate{revoked(xaaNode, "key compromise"), revoked(xaaAdmin, ""), revoked(xaaNode, "again")}
		}, "members[1].revoked_certificates[2].sha256: "},
		{"no revoked_at", func(d *pocnetv1.Directory) {
			r := revoked(xaaNode, "key compromise")
			r.RevokedAt = nil
			d.Members[1].RevokedCertificates = []*pocnetv1.RevokedCertificate{r}
		}, "members[1].revoked_certificates[0].revoked_at: required"},
		{"revoked_at out of range", func(d *pocnetv1.Directory) {
			r := revoked(xaaNode, "key compromise")
			r.RevokedAt = &timestamppb.Timestamp{Seconds: 1, Nanos: -1}
			d.Members[1].RevokedCertificates = []*pocnetv1.RevokedCertificate{r}
		}, "members[1].revoked_certificates[0].revoked_at: "},
		{"reason too long", func(d *pocnetv1.Directory) {
			d.Members[2].RevokedCertificates = []*pocnetv1.RevokedCertificate{revoked(xaaNode, strings.Repeat("x", directory.MaxRevocationReason+1))}
		}, "members[2].revoked_certificates[0].reason: 1025 bytes, more than 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb := proto.Clone(f.Directory).(*pocnetv1.Directory)
			tt.mutate(pb)
			_, err := directory.New(pb)
			if !errors.Is(err, directory.ErrInvalid) || !strings.HasPrefix(err.Error(), "invalid directory: "+tt.want) {
				t.Fatalf("New = %v\nwant: invalid directory: %s...", err, tt.want)
			}
			data, err := directory.Marshal(pb)
			if err != nil {
				if strings.Contains(tt.name, "out of range") {
					return // protojson cannot even write it
				}
				t.Fatal(err)
			}
			if _, err := directory.Parse(data); !errors.Is(err, directory.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse = %v", err)
			}
		})
	}
}

// TestRevocationsReachTheBundle: a member's revocations are enforced for
// identities naming it, and only for them.
func TestRevocationsReachTheBundle(t *testing.T) {
	f := federation(t)
	xaa, xbb := f.State("XAA"), f.State("XBB")
	pb := proto.Clone(f.Directory).(*pocnetv1.Directory)
	// XAA (members[1]) revokes its node's certificate. XBB (members[2])
	// lists the fingerprint of XAA's admin: that must change nothing, since
	// XBB cannot withdraw XAA's certificates.
	pb.Members[1].RevokedCertificates = []*pocnetv1.RevokedCertificate{revoked(xaa.Node.Cert.Raw, "key compromise")}
	pb.Members[2].RevokedCertificates = []*pocnetv1.RevokedCertificate{revoked(xaa.Operator("admin").Cert.Raw, "")}
	d, err := directory.New(pb)
	if err != nil {
		t.Fatal(err)
	}
	b := d.Bundle()
	_, _, err = b.Verify(xaa.Node.TLS.Certificate, x509.ExtKeyUsageClientAuth, t0)
	var re *identity.RevokedError
	if !errors.As(err, &re) || !errors.Is(err, identity.ErrUntrusted) || re.ID != identity.Node(f.ID, "XAA") || re.Reason != "key compromise" || !re.At.Equal(t0) {
		t.Fatalf("revoked node: Verify = %v", err)
	}
	for _, iss := range []*certIssued{{"XAA admin", xaa.Operator("admin").TLS.Certificate}, {"XBB node", xbb.Node.TLS.Certificate}} {
		if _, _, err := b.Verify(iss.raw, x509.ExtKeyUsageClientAuth, t0); err != nil {
			t.Errorf("%s: %v", iss.name, err)
		}
	}
	// The directory without the revocation trusts the node again.
	d2, err := directory.New(f.Directory)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d2.Bundle().Verify(xaa.Node.TLS.Certificate, x509.ExtKeyUsageClientAuth, t0); err != nil {
		t.Errorf("without the revocation: %v", err)
	}
}

type certIssued struct {
	name string
	raw  [][]byte
}
