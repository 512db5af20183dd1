// Command pocfed creates a development federation: a root CA per state, node
// and operator certificates, the directory, the genesis signed by every
// state, and the configuration files of pocnode and pocctl.
//
//	pocfed [--out _fed] [--states 3 | --state-codes XAA,XBB] [--federation pocnet.example]
//	       [--host 127.0.0.1] [--base-port 7401] [--validity 2160h]
//	       [--rule consensus|supermajority:<percent>|threshold:<states>]
//	       [--silence-period 72h] [--force]
//
// pocfed member makes the material of one participant joining a federation
// pocfed wrote, without touching the existing members' files: its own CA,
// certificates and keys, a node configuration reading a copy of the
// federation's genesis, and member.json, the directory entry the members
// propose to admit.
//
//	pocfed member --dir _fed --state XDD [--observer] [--name "Republic of XDD"]
//	       [--listen 127.0.0.1:7404] [--out _fed/XDD] [--validity 2160h]
//
// The keys it writes are unencrypted development keys: never commit them.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// maxStates bounds --states: enough for every member state of the UN with
// room to spare, and small enough to generate in seconds.
const maxStates = 400

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	out   string
	opts  certs.Options
	force bool
}

// run is the whole command; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "member" {
		return runMember(args[1:], stdout, stderr)
	}
	cfg, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		// Every error of parse is bad input.
		fmt.Fprintln(stderr, "pocfed:", err)
		fmt.Fprintln(stderr, "run 'pocfed -h' for usage")
		return 2
	}
	fed, err := certs.Generate(cfg.opts)
	if err != nil {
		fmt.Fprintln(stderr, "pocfed:", err)
		return 1
	}
	if cfg.force {
		if err := removeFederation(cfg.out); err != nil {
			fmt.Fprintln(stderr, "pocfed:", err)
			return 1
		}
	}
	if err := fed.Write(cfg.out); err != nil {
		fmt.Fprintln(stderr, "pocfed:", err)
		if errors.Is(err, certs.ErrExists) {
			fmt.Fprintln(stderr, "pocfed: use --force to replace it")
		}
		return 1
	}
	summary(stdout, cfg.out, fed)
	return 0
}

func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("pocfed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg   config
		codes string
		count int
		host  string
		port  int
		valid time.Duration
		fedID string
		rule  string
		quiet time.Duration
	)
	fs.StringVar(&cfg.out, "out", "_fed", "`folder` to write the federation to")
	fs.IntVar(&count, "states", certs.DefaultCount, "number of states, with codes XAA, XBB, ... (1 to 400)")
	fs.StringVar(&codes, "state-codes", "", "comma-separated state `codes` (three upper-case letters each), instead of --states")
	fs.StringVar(&fedID, "federation", certs.DefaultFederation, "federation `id` (trust domain)")
	fs.StringVar(&host, "host", certs.DefaultHost, "`host` of every node endpoint")
	fs.IntVar(&port, "base-port", certs.DefaultBasePort, "`port` of the first state's node; state i gets base-port+i (0: every node on port 0)")
	fs.DurationVar(&valid, "validity", certs.DefaultValidity, "lifetime of node and operator certificates")
	fs.StringVar(&rule, "rule", fmt.Sprintf("supermajority:%d", certs.DefaultSupermajority), "decision `rule` of the genesis: consensus, supermajority:<percent> (51 to 100) or threshold:<states>")
	fs.DurationVar(&quiet, "silence-period", certs.DefaultSilencePeriod, "how long an observer admission stays open for objections")
	fs.BoolVar(&cfg.force, "force", false, "replace a federation already written to --out")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pocfed [flags]\n       pocfed member --dir <federation folder> --state <code> [flags]\n\nCreates a development federation: a root CA per state, node and operator\ncertificates, the directory, the genesis signed by every state and the\npocnode/pocctl configuration files. 'pocfed member -h' tells how to make\nthe material of a participant joining it.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		// The flag package has already printed the message and the usage.
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q: pocfed takes flags only", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if cfg.out == "" {
		return cfg, fmt.Errorf("--out: must not be empty")
	}
	if err := identity.ValidateFederation(fedID); err != nil {
		return cfg, fmt.Errorf("--federation: %v", err)
	}
	cfg.opts.Federation = fedID
	switch {
	case set["state-codes"] && set["states"]:
		return cfg, fmt.Errorf("--states and --state-codes: give one or the other")
	case set["state-codes"]:
		if codes == "" {
			return cfg, fmt.Errorf("--state-codes: must list at least one code")
		}
		seen := map[string]bool{}
		for _, c := range strings.Split(codes, ",") {
			c = strings.TrimSpace(c)
			if err := identity.ValidateState(c); err != nil {
				return cfg, fmt.Errorf("--state-codes: %v", err)
			}
			if seen[c] {
				return cfg, fmt.Errorf("--state-codes: %s is listed twice", c)
			}
			seen[c] = true
			cfg.opts.States = append(cfg.opts.States, c)
		}
		if len(cfg.opts.States) > maxStates {
			return cfg, fmt.Errorf("--state-codes: %d codes, at most %d", len(cfg.opts.States), maxStates)
		}
	default:
		if count < 1 || count > maxStates {
			return cfg, fmt.Errorf("--states: %d: must be between 1 and %d", count, maxStates)
		}
		cfg.opts.Count = count
	}
	n := count
	if len(cfg.opts.States) > 0 {
		n = len(cfg.opts.States)
	}
	if port < 0 || port > 65535 || (port != 0 && port+n-1 > 65535) {
		return cfg, fmt.Errorf("--base-port: %d: ports %d..%d are not all between 0 and 65535", port, port, port+n-1)
	}
	cfg.opts.BasePort = port
	if err := certs.ValidateHost(host); err != nil {
		return cfg, fmt.Errorf("--host: %v", err)
	}
	cfg.opts.Host = host
	if valid <= 0 {
		return cfg, fmt.Errorf("--validity: %s: must be positive", valid)
	}
	if valid > certs.CAValidity {
		return cfg, fmt.Errorf("--validity: %s: must not exceed the CA lifetime %s", valid, certs.CAValidity)
	}
	cfg.opts.Validity = valid
	r, err := parseRule(rule, quiet, n)
	if err != nil {
		return cfg, err
	}
	cfg.opts.Rule = r
	return cfg, nil
}

// parseRule reads --rule and --silence-period into a decision rule for n
// state members, checked with governance.ValidateRule; an error names the
// flag at fault.
func parseRule(s string, silence time.Duration, n int) (*pocnetv1.DecisionRule, error) {
	r := &pocnetv1.DecisionRule{SilencePeriod: durationpb.New(silence)}
	kind, arg, hasArg := strings.Cut(s, ":")
	number := func(what string) (uint32, error) {
		v, err := strconv.ParseUint(arg, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("--rule: %q: the %s after %q must be a whole number", s, what, kind+":")
		}
		return uint32(v), nil
	}
	switch {
	case kind == "consensus" && !hasArg:
		r.Rule = &pocnetv1.DecisionRule_Consensus{Consensus: &pocnetv1.ConsensusRule{}}
	case kind == "supermajority" && hasArg:
		p, err := number("percent")
		if err != nil {
			return nil, err
		}
		r.Rule = &pocnetv1.DecisionRule_Supermajority{Supermajority: &pocnetv1.SupermajorityRule{Percent: p}}
	case kind == "threshold" && hasArg:
		t, err := number("number of states")
		if err != nil {
			return nil, err
		}
		r.Rule = &pocnetv1.DecisionRule_Threshold{Threshold: &pocnetv1.ThresholdRule{States: t}}
	default:
		return nil, fmt.Errorf("--rule: %q is not consensus, supermajority:<percent> or threshold:<states>", s)
	}
	// The silence period first, alone, so that its fault is not reported
	// as the rule's.
	only := &pocnetv1.DecisionRule{Rule: &pocnetv1.DecisionRule_Consensus{Consensus: &pocnetv1.ConsensusRule{}}, SilencePeriod: r.SilencePeriod}
	if err := governance.ValidateRule(only, n); err != nil {
		return nil, fmt.Errorf("--silence-period: %s", strings.TrimPrefix(err.Error(), "rule.silence_period: "))
	}
	if err := governance.ValidateRule(r, n); err != nil {
		return nil, fmt.Errorf("--rule: %v", err)
	}
	return r, nil
}

// describeRule names a rule in the summary.
func describeRule(r *pocnetv1.DecisionRule) string {
	var s string
	switch {
	case r.GetSupermajority() != nil:
		s = fmt.Sprintf("supermajority of %d%%", r.GetSupermajority().GetPercent())
	case r.GetThreshold() != nil:
		s = fmt.Sprintf("threshold of %d states", r.GetThreshold().GetStates())
	default:
		s = "consensus"
	}
	return s + ", silence period " + r.GetSilencePeriod().AsDuration().String()
}

// removeFederation removes a federation written earlier. It refuses a folder
// that holds something else, so that a mistyped --out never deletes
// unrelated files.
func removeFederation(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, certs.DirectoryFile)); err != nil {
		return fmt.Errorf("--force: refusing to remove %s: it holds no %s, so it is not a federation written by pocfed", dir, certs.DirectoryFile)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("--force: remove %s: %w", dir, err)
	}
	return nil
}

func summary(w io.Writer, out string, fed *certs.Federation) {
	fmt.Fprintf(w, "federation %s: %d states written to %s\n", fed.ID, len(fed.States), out)
	codes := make([]string, len(fed.States))
	for i, st := range fed.States {
		codes[i] = st.Code
	}
	fmt.Fprintf(w, "  genesis    %s  (version 1: %s; signed by %s)\n", filepath.Join(out, certs.GenesisFile), describeRule(fed.Options().Rule), strings.Join(codes, ", "))
	fmt.Fprintf(w, "  directory  %s\n", filepath.Join(out, certs.DirectoryFile))
	for i, st := range fed.States {
		m := fed.Directory.GetMembers()[i]
		fmt.Fprintf(w, "%s  node %s at %s  (config %s)\n", st.Code, st.Node.ID, strings.Join(m.GetEndpoints(), ", "),
			filepath.Join(out, st.Code, "node", "pocnode.yaml"))
		for _, op := range st.Operators {
			fmt.Fprintf(w, "     operator %s  (config %s)\n", op.ID, filepath.Join(out, st.Code, "operators", certs.OperatorDir(op), "pocctl.yaml"))
		}
	}
	fmt.Fprintln(w, "The private keys are unencrypted development keys: never commit them.")
}
