package node_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/testfed"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/node"
)

// TestStartRefusesBadGenesis: a node trusts its genesis only once it
// verifies, and says which file is at fault and why.
func TestStartRefusesBadGenesis(t *testing.T) {
	f := testfed.Start(t, testfed.Options{Quiet: true})
	write := func(name string, sv *pocnetv1.SignedVersion) string {
		b, err := governance.MarshalSigned(sv)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unsigned := proto.Clone(f.Genesis).(*pocnetv1.SignedVersion)
	unsigned.Signatures = unsigned.Signatures[:1]
	forged := proto.Clone(f.Genesis).(*pocnetv1.SignedVersion)
	forged.Version = append([]byte(nil), forged.Version...)
	forged.Version[len(forged.Version)-1] ^= 1
	missing := filepath.Join(t.TempDir(), "genesis.json")

	tests := []struct {
		name, genesis, want string
	}{
		{"missing", missing, "genesis " + missing + ": open: no such file or directory"},
		{"not signed by every founder", write("unsigned.json", unsigned), "1 signatures of the 2 needed for a genesis (every state member); not signed by: XBB"},
		{"altered after signing", write("forged.json", forged), "does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := *f.Node("XAA").Config
			cfg.Genesis = tt.genesis
			cfg.DataDir = t.TempDir()
			n, err := node.Start(node.Options{Config: &cfg, Logger: zap.NewNop()})
			if err == nil {
				n.Stop()
				t.Fatal("the node started")
			}
			if !strings.HasPrefix(err.Error(), "genesis "+tt.genesis+": ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start = %v, want an error naming %s and containing %q", err, tt.genesis, tt.want)
			}
		})
	}
}
