package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/governance"
)

// verifyGenesis loads the genesis written under dir and builds a chain of
// it: every state signed it.
func verifyGenesis(t *testing.T, dir string) *governance.Chain {
	t.Helper()
	sv, err := governance.LoadGenesis(filepath.Join(dir, "genesis.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := governance.NewChain(sv, time.Now())
	if err != nil {
		t.Fatalf("genesis.json does not verify: %v", err)
	}
	return c
}

func TestRuleFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "supermajority:70 72h0m0s"},
		{[]string{"--rule", "consensus"}, "consensus 72h0m0s"},
		{[]string{"--rule", "supermajority:100", "--silence-period", "1h"}, "supermajority:100 1h0m0s"},
		{[]string{"--rule", "threshold:2", "--silence-period", "336h"}, "threshold:2 336h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "fed")
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"--out", out, "--states", "3", "--base-port", "0"}, tt.args...), &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			r := verifyGenesis(t, out).Latest().Rule()
			got := "consensus"
			switch {
			case r.GetSupermajority() != nil:
				got = "supermajority:" + strconv.Itoa(int(r.GetSupermajority().GetPercent()))
			case r.GetThreshold() != nil:
				got = "threshold:" + strconv.Itoa(int(r.GetThreshold().GetStates()))
			}
			if got += " " + r.GetSilencePeriod().AsDuration().String(); got != tt.want {
				t.Fatalf("genesis rule %s, want %s", got, tt.want)
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--state-codes", "XAA,xbb"}, `--state-codes: "xbb" is not an ISO 3166-1 alpha-3 state code`},
		{[]string{"--state-codes", "XAA,XBBB"}, `--state-codes: "XBBB"`},
		{[]string{"--state-codes", "XAA,XA"}, `--state-codes: "XA"`},
		{[]string{"--state-codes", "XAA,XBB,XAA"}, "--state-codes: XAA is listed twice"},
		{[]string{"--state-codes", ""}, "--state-codes: must list at least one code"},
		{[]string{"--states", "0"}, "--states: 0: must be between 1 and 400"},
		{[]string{"--states", "401"}, "--states: 401: must be between 1 and 400"},
		{[]string{"--states", "-3"}, "--states: -3"},
		{[]string{"--states", "three"}, `invalid value "three" for flag -states`},
		{[]string{"--states", "2", "--state-codes", "XAA,XBB"}, "--states and --state-codes: give one or the other"},
		{[]string{"--federation", "Pocnet.Example"}, "--federation:"},
		{[]string{"--host", "a b"}, `--host: "a b" is neither an IP address nor a DNS name`},
		{[]string{"--host", ""}, "--host:"},
		{[]string{"--base-port", "-1"}, "--base-port: -1"},
		{[]string{"--base-port", "65534", "--states", "3"}, "--base-port: 65534: ports 65534..65536"},
		{[]string{"--validity", "0s"}, "--validity: 0s: must be positive"},
		{[]string{"--validity", "ninety days"}, `invalid value "ninety days" for flag -validity`},
		{[]string{"--validity", "100000h"}, "--validity: 100000h0m0s: must not exceed the CA lifetime"},
		{[]string{"--out", ""}, "--out: must not be empty"},
		{[]string{"--colour"}, "flag provided but not defined: -colour"},
		{[]string{"--rule", "unanimity"}, `--rule: "unanimity" is not consensus, supermajority:<percent> or threshold:<states>`},
		{[]string{"--rule", "consensus:3"}, `--rule: "consensus:3" is not consensus`},
		{[]string{"--rule", "supermajority"}, `--rule: "supermajority" is not consensus`},
		{[]string{"--rule", "supermajority:high"}, `--rule: "supermajority:high": the percent after "supermajority:" must be a whole number`},
		{[]string{"--rule", "supermajority:50"}, "--rule: rule.supermajority.percent: 50 is not between 51 and 100"},
		{[]string{"--rule", "supermajority:101"}, "--rule: rule.supermajority.percent: 101"},
		{[]string{"--rule", "threshold:-1"}, `--rule: "threshold:-1": the number of states after "threshold:" must be a whole number`},
		{[]string{"--rule", "threshold:0"}, "--rule: rule.threshold.states: must be at least 1"},
		{[]string{"--rule", "threshold:4", "--states", "3"}, "--rule: rule.threshold.states: 4 is more than the 3 state members"},
		{[]string{"--silence-period", "0s"}, "--silence-period: 0s is not between 0 and"},
		{[]string{"--silence-period", "-1h", "--rule", "threshold:9"}, "--silence-period: -1h0m0s"},
		{[]string{"--silence-period", "10000h"}, "--silence-period: 10000h0m0s is not between"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "fed")
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"--out", out}, tt.args...), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, stderr.String(), tt.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("bad input still wrote the federation")
			}
		})
	}
}

func TestWriteAndForce(t *testing.T) {
	out := filepath.Join(t.TempDir(), "_fed")
	var stdout, stderr bytes.Buffer
	args := []string{"--out", out, "--state-codes", "FRA, DEU", "--base-port", "9100", "--host", "localhost"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{
		"federation pocnet.example: 2 states written to " + out,
		"  genesis    " + filepath.Join(out, "genesis.json") + "  (version 1: supermajority of 70%, silence period 72h0m0s; signed by FRA, DEU)",
		"FRA  node spiffe://pocnet.example/state/FRA/node at localhost:9100",
		"DEU  node spiffe://pocnet.example/state/DEU/node at localhost:9101",
		"operator spiffe://pocnet.example/state/DEU/operator/technical/duty-officer",
		filepath.Join(out, "DEU", "operators", "policy-desk", "pocctl.yaml"),
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout.String())
		}
	}
	d, err := directory.Load(filepath.Join(out, "directory.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.States(); len(got) != 2 || got[0] != "DEU" || got[1] != "FRA" {
		t.Errorf("States = %v", got)
	}
	if c := verifyGenesis(t, out); !proto.Equal(c.Latest().Directory().Proto(), d.Proto()) {
		t.Error("the genesis's directory is not directory.json's")
	}
	keyBefore, _ := os.ReadFile(filepath.Join(out, "FRA", "ca-key.pem"))

	// Without --force an existing federation is kept.
	stdout.Reset()
	stderr.Reset()
	if code := run(args, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "a federation already exists there") || !strings.Contains(stderr.String(), "--force") {
		t.Fatalf("second run: exit %d, stderr %s", code, stderr.String())
	}
	if k, _ := os.ReadFile(filepath.Join(out, "FRA", "ca-key.pem")); !bytes.Equal(k, keyBefore) {
		t.Fatal("a refused run replaced a key")
	}

	// With --force it is replaced, and states no longer listed disappear.
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"--out", out, "--states", "1", "--force"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--force: exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(out, "FRA")); !os.IsNotExist(err) {
		t.Errorf("--force left the old state FRA: %v", err)
	}
	if d, err := directory.Load(filepath.Join(out, "directory.json")); err != nil || len(d.States()) != 1 || d.States()[0] != "XAA" {
		t.Errorf("after --force: %v", err)
	}
}

func TestForceKeepsUnrelatedFolder(t *testing.T) {
	out := t.TempDir()
	precious := filepath.Join(out, "thesis.txt")
	if err := os.WriteFile(precious, []byte("do not delete"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"--out", out, "--force"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "refusing to remove "+out) {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	if _, err := os.Stat(precious); err != nil {
		t.Fatalf("--force deleted an unrelated file: %v", err)
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "-state-codes") {
		t.Fatalf("exit %d, usage:\n%s", code, stderr.String())
	}
}
