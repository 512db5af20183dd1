package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
)

// memberConfig is what pocfed member is asked to make.
type memberConfig struct {
	dir, out, state, name, listen string
	observer                      bool
	validity                      time.Duration
}

// runMember is pocfed member; it returns the exit status.
func runMember(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseMember(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "pocfed member:", err)
		fmt.Fprintln(stderr, "run 'pocfed member -h' for usage")
		return 2
	}
	if err := makeMember(cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "pocfed member:", err)
		return 1
	}
	return 0
}

func parseMember(args []string, stderr io.Writer) (memberConfig, error) {
	fs := flag.NewFlagSet("pocfed member", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg memberConfig
	fs.StringVar(&cfg.dir, "dir", "", "`folder` of the federation joined, as pocfed wrote it (with genesis.json); required")
	fs.StringVar(&cfg.state, "state", "", "`code` of the joining participant (three upper-case letters); required")
	fs.BoolVar(&cfg.observer, "observer", false, "join as an observer (admitted by the silence procedure) rather than a state member")
	fs.StringVar(&cfg.name, "name", "", "`name` in the directory entry (default \"Testland <code>\")")
	fs.StringVar(&cfg.listen, "listen", "", "`host:port` of the participant's node (default: a free port on the federation's host)")
	fs.StringVar(&cfg.out, "out", "", "`folder` to write the material to, new or empty (default <dir>/<code>)")
	fs.DurationVar(&cfg.validity, "validity", certs.DefaultValidity, "lifetime of node and operator certificates")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pocfed member --dir <federation folder> --state <code> [flags]\n\nMakes the material of one participant joining a federation pocnet wrote:\nits own root CA, node and operator certificates, signing, encryption and\ndata keys, a node configuration reading a copy of the federation's\ngenesis.json, and member.json, the directory entry the members propose to\nadmit. The existing members' files are left untouched.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q: pocfed member takes flags only", fs.Arg(0))
	}
	if cfg.dir == "" {
		return cfg, errors.New("--dir: is required: the folder of the federation joined")
	}
	if cfg.state == "" {
		return cfg, errors.New("--state: is required: the code of the joining participant")
	}
	if err := identity.ValidateState(cfg.state); err != nil {
		return cfg, fmt.Errorf("--state: %v", err)
	}
	if cfg.listen != "" {
		host, port, err := net.SplitHostPort(cfg.listen)
		if err != nil {
			return cfg, fmt.Errorf("--listen: %q is not host:port", cfg.listen)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return cfg, fmt.Errorf("--listen: port %q is not between 1 and 65535", port)
		}
		if err := certs.ValidateHost(host); err != nil {
			return cfg, fmt.Errorf("--listen: %v", err)
		}
	}
	if cfg.validity <= 0 || cfg.validity > certs.CAValidity {
		return cfg, fmt.Errorf("--validity: %s: must be positive and at most the CA lifetime %s", cfg.validity, certs.CAValidity)
	}
	if cfg.out == "" {
		cfg.out = filepath.Join(cfg.dir, cfg.state)
	}
	return cfg, nil
}

func makeMember(cfg memberConfig, w io.Writer) error {
	path := filepath.Join(cfg.dir, certs.GenesisFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--dir: %s holds no %s: it is not a federation written by pocfed", cfg.dir, certs.GenesisFile)
	}
	genesis, err := governance.LoadGenesis(path)
	if err != nil {
		return err
	}
	// The genesis is the participant's trust anchor: verify it before
	// making anything that relies on it.
	chain, err := governance.NewChain(genesis, time.Now())
	if err != nil {
		return fmt.Errorf("genesis %s: %w", path, err)
	}
	d := chain.Latest().Directory()
	if _, ok := d.Member(cfg.state); ok {
		return fmt.Errorf("--state: %s is already a member of the federation %s", cfg.state, d.Federation())
	}
	endpoint := cfg.listen
	if endpoint == "" {
		if endpoint, err = freeEndpoint(d); err != nil {
			return err
		}
	}
	m, err := certs.NewMember(certs.MemberOptions{
		Federation: d.Federation(), State: cfg.state, Observer: cfg.observer, Name: cfg.name,
		Endpoint: endpoint, Validity: cfg.validity,
	})
	if err != nil {
		return err
	}
	if err := m.Write(cfg.out, genesis); err != nil {
		return err
	}
	kind, admission := "a state member", "an admission, under the federation's rule"
	if cfg.observer {
		kind, admission = "an observer", "an observer admission, effective after the silence period unless a state member objects"
	}
	fmt.Fprintf(w, "%s joins federation %s as %s: material written to %s\n", cfg.state, d.Federation(), kind, cfg.out)
	fmt.Fprintf(w, "  entry      %s  (the members propose it as %s)\n", filepath.Join(cfg.out, certs.MemberFile), admission)
	fmt.Fprintf(w, "  genesis    %s  (copy of %s)\n", filepath.Join(cfg.out, certs.GenesisFile), path)
	fmt.Fprintf(w, "%s  node %s at %s  (config %s)\n", cfg.state, m.Node.ID, endpoint, filepath.Join(cfg.out, "node", "pocnode.yaml"))
	for _, op := range m.Operators {
		fmt.Fprintf(w, "     operator %s  (config %s)\n", op.ID, filepath.Join(cfg.out, "operators", certs.OperatorDir(op), "pocctl.yaml"))
	}
	fmt.Fprintf(w, "Nodes accept %s once their directory lists it.\n", cfg.state)
	fmt.Fprintln(w, "The private keys are unencrypted development keys: never commit them.")
	return nil
}

// freeEndpoint returns host:port for a new node: the host of the
// federation's first listed endpoint and the first port after the highest
// one listed that no member lists and that is free now on this machine (a
// member's node may be stopped, its port free). Without such a port, any
// free port.
func freeEndpoint(d *directory.Directory) (string, error) {
	host, highest := "", 0
	taken := map[int]bool{}
	for _, s := range d.States() {
		for _, ep := range d.Endpoints(s) {
			h, p, err := net.SplitHostPort(ep)
			if err != nil {
				continue
			}
			if host == "" {
				host = h
			}
			if n, err := strconv.Atoi(p); err == nil {
				taken[n] = true
				highest = max(highest, n)
			}
		}
	}
	if host == "" {
		host = certs.DefaultHost
	}
	free := func(port int) (int, bool) {
		lis, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return 0, false
		}
		defer lis.Close()
		return lis.Addr().(*net.TCPAddr).Port, true
	}
	if highest > 0 {
		for p := highest + 1; p <= min(highest+100, 65535); p++ {
			if _, ok := free(p); ok && !taken[p] {
				return net.JoinHostPort(host, strconv.Itoa(p)), nil
			}
		}
	}
	for range 100 {
		if p, ok := free(0); ok && !taken[p] {
			return net.JoinHostPort(host, strconv.Itoa(p)), nil
		}
	}
	return "", fmt.Errorf("find a free port on %s: none found; give --listen", host)
}
