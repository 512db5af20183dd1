package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
	"github.com/pocnet/pocnet/server/config"
)

// The directory scenario: five founding states govern their signed
// directory, each through its own node, with the commands an operator uses
// (pocfed for the material, pocctl for the node) and the Go client library
// to check that what is shown really happened. No node is ever restarted:
// every change reaches every node live, and the demo checks at the end that
// each node is still the process it started.

// The participants of the directory scenario, beyond XAA, XBB and XCC.
const (
	xdd = "XDD"
	xee = "XEE"
	// xff is the state the founders admit; its node is started before.
	xff = "XFF"
	// xoo is the observer admitted by silence, xpp the one objected to.
	xoo = "XOO"
	xpp = "XPP"

	diplomatic = "diplomatic"
)

var founders = []string{xaa, xbb, xcc, xdd, xee}

const (
	// silencePeriod is how long an observer admission stays open for
	// objections in the demo's federation (72h by default).
	silencePeriod = 8 * time.Second
	// fedFolder is where pocfed writes the federation, under _demo.
	fedFolder = "fed"
	// pollEvery is the pace of every wait for something to happen.
	pollEvery = 50 * time.Millisecond
	// revocationReason is what XDD tells the other members.
	revocationReason = "laptop of the diplomatic desk lost on mission"
)

// dirDemo runs the directory scenario on top of demo's nodes, operators
// and output.
type dirDemo struct {
	*demo
	// fedDir is _demo/fed: pocfed writes there, pocctl runs there, so that
	// the commands shown use short relative paths.
	fedDir string
	// members are the state members whose nodes run, in order; XFF joins.
	members []string
	// pids are the nodes' process ids when they started.
	pids map[string]int
	// start is when the scenario began, after the build.
	start time.Time
}

func (x *dirDemo) run(ctx context.Context) error {
	fmt.Fprintln(x.out, "pocnet demo: the signed directory, governed by its members, live")
	fmt.Fprintln(x.out, "=================================================================")
	if err := x.setUp(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	for _, scene := range []func(context.Context) error{
		x.sceneAdmission, x.sceneObservers, x.sceneRotation, x.sceneRevocation, x.sceneRenewal, x.sceneHistory,
	} {
		if err := scene(ctx); err != nil {
			if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%w (the demo's overall limit of %s was reached)", err, scenarioTimeout)
			}
			return err
		}
	}
	fmt.Fprintf(x.out, "\n  The scenario took %.1fs after the build.\n", time.Since(x.start).Seconds())
	return nil
}

// setUp builds the three commands, writes the federation with pocfed,
// starts the five founders' nodes and connects their operators.
func (x *dirDemo) setUp(ctx context.Context) error {
	section(x.out, "Setting up", "")
	root, err := findModuleRoot()
	if err != nil {
		return err
	}
	x.root = root
	x.dir = filepath.Join(root, demoDir)
	x.fedDir = filepath.Join(x.dir, fedFolder)
	x.pids = map[string]int{}
	if err := os.RemoveAll(x.dir); err != nil {
		return fmt.Errorf("remove the previous demo folder: %w", err)
	}
	if err := x.build(ctx, pocnodeTool, pocfedTool, pocctlTool); err != nil {
		return err
	}
	x.t0 = time.Now()
	x.start = x.t0
	fmt.Fprintf(x.out, "  Times below are relative to this moment. The commands shown are the binaries just built,\n  run in %s (pocfed) and %s (pocctl).\n", x.path(x.dir), x.path(x.fedDir))
	base, err := freePortRun(len(founders))
	if err != nil {
		return err
	}
	out, err := x.pocfed(ctx, "--out", fedFolder, "--state-codes", strings.Join(founders, ","),
		"--rule", "supermajority:70", "--silence-period", silencePeriod.String(), "--base-port", strconv.Itoa(base))
	if err != nil {
		return err
	}
	x.printOutput(firstLines(out, 2), "... (the nodes and operators written for each state)")
	x.note("Each state has its own root CA, node certificate, signing and encryption keys. The genesis, version 1 of the directory chain, is signed by all five; under the rule of 70%, admitting a state takes 4 of the 5 states' signatures.")
	for _, s := range founders {
		if err := x.startMember(ctx, s); err != nil {
			return err
		}
	}
	for _, s := range founders {
		if err := x.connect(ctx, s, identity.AdminRole, false); err != nil {
			return err
		}
	}
	for _, s := range []string{xaa, xcc} {
		if err := x.connect(ctx, s, technical, true); err != nil {
			return err
		}
	}
	x.members = slices.Clone(founders)
	v, err := x.waitConverged(ctx, 1, "every founder's node to hold the genesis")
	if err != nil {
		return err
	}
	x.step("all five nodes are healthy and hold version %d (hash %s)", v.number, v.short())
	x.note("Below, \"XAA/admin $ pocctl ...\" is XAA's admin operator running pocctl with its own pocctl.yaml, so at XAA's node, signing with XAA's key. Nobody ever acts at another state's node.")
	return nil
}

// startMember tunes state's node configuration written by pocfed and
// starts the node.
func (x *dirDemo) startMember(ctx context.Context, state string) error {
	path := filepath.Join(x.fedDir, state, "node", "pocnode.yaml")
	if err := tuneNodeConfig(path); err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if err := x.startProc(ctx, state, cfg.Listen, path); err != nil {
		return err
	}
	x.pids[state] = x.nodes[state].cmd.Process.Pid
	return nil
}

// freePortRun returns the first of n consecutive free TCP ports on
// 127.0.0.1: pocfed gives state i the port base+i.
func freePortRun(n int) (int, error) {
	for range 100 {
		base := 20000 + rand.N(40000)
		var open []net.Listener
		ok := true
		for i := range n {
			lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i)))
			if err != nil {
				ok = false
				break
			}
			open = append(open, lis)
		}
		for _, l := range open {
			l.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("found no %d consecutive free ports on 127.0.0.1", n)
}

// opConfig returns the pocctl.yaml of state's operator acting for role,
// as pocfed wrote it: operators/<role>-<name>/pocctl.yaml.
func (x *dirDemo) opConfig(state, role string) (string, error) {
	m, err := filepath.Glob(filepath.Join(x.fedDir, state, "operators", role+"-*", "pocctl.yaml"))
	if err != nil {
		return "", err
	}
	if len(m) != 1 {
		return "", fmt.Errorf("%d configuration files for the %s operator of %s under %s, want 1", len(m), role, state, x.path(filepath.Join(x.fedDir, state, "operators")))
	}
	return m[0], nil
}

// dial connects as state's operator of role, retrying until the node
// answers (it may still be starting) within stepTimeout.
func (x *dirDemo) dial(ctx context.Context, state, role string) (*client.Client, error) {
	path, err := x.opConfig(state, role)
	if err != nil {
		return nil, err
	}
	cfg, err := client.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(stepTimeout)
	for {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := client.Dial(dctx, cfg)
		cancel()
		if err == nil {
			return c, nil
		}
		if p := x.nodes[state]; p != nil && !p.running() {
			return nil, fmt.Errorf("the node of %s exited (%s); see %s", state, p.exit(), x.path(p.log))
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect %s/%s: not answered within %s: %w", state, role, stepTimeout, err)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// connect dials state's operator of role and, with watching, follows its
// new events.
func (x *dirDemo) connect(ctx context.Context, state, role string, watching bool) error {
	c, err := x.dial(ctx, state, role)
	if err != nil {
		return err
	}
	o := &operator{state: state, role: role, c: c}
	x.ops[state+"/"+role] = o
	if !watching {
		return nil
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	o.events = watch(ctx, c, st.GetLastEventSeq())
	return nil
}

// admin returns state's connected admin client.
func (x *dirDemo) admin(state string) *client.Client { return x.op(state, identity.AdminRole).c }

// tool runs one of the built commands in dir with extra environment, as
// who (empty: the person running the demo), prints the command line and
// returns its standard output. A non-zero exit is an error carrying its
// output.
func (x *dirDemo) tool(ctx context.Context, who, name, dir string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, x.exe(name), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if who != "" {
		who += " "
	}
	x.step("%s$ %s %s", who, name, quoteArgs(args))
	if err := cmd.Run(); err != nil {
		x.printOutput(stdout.String()+stderr.String(), "")
		return "", fmt.Errorf("%s %s: %w", name, quoteArgs(args), err)
	}
	return stdout.String(), nil
}

// pocfed runs pocfed in _demo, so that --out and --dir name "fed".
func (x *dirDemo) pocfed(ctx context.Context, args ...string) (string, error) {
	return x.tool(ctx, "", pocfedTool.name, x.dir, nil, args...)
}

// ctl runs pocctl as state's operator of role, with that operator's
// pocctl.yaml (so at state's own node), prints the command and its whole
// output, and returns the output.
func (x *dirDemo) ctl(ctx context.Context, state, role string, args ...string) (string, error) {
	return x.ctlShown(ctx, false, state, role, args...)
}

// ctlBrief is ctl showing the output's first two lines and its last: what
// was done, where the proposal stands, what comes next.
func (x *dirDemo) ctlBrief(ctx context.Context, state, role string, args ...string) (string, error) {
	return x.ctlShown(ctx, true, state, role, args...)
}

func (x *dirDemo) ctlShown(ctx context.Context, brief bool, state, role string, args ...string) (string, error) {
	path, err := x.opConfig(state, role)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(x.fedDir, path)
	if err != nil {
		return "", err
	}
	out, err := x.tool(ctx, state+"/"+role, pocctlTool.name, x.fedDir, []string{"POCCTL_CONFIG=" + rel}, args...)
	if err != nil {
		return "", err
	}
	shown := out
	if lines := strings.Split(strings.TrimRight(out, "\n"), "\n"); brief && len(lines) > 3 {
		shown = strings.Join([]string{lines[0], lines[1], "  ...", lines[len(lines)-1]}, "\n")
	}
	x.printOutput(shown, "")
	return out, nil
}

// printOutput prints a command's output under the step, marked as such,
// then an optional remark.
func (x *dirDemo) printOutput(out, more string) {
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		fmt.Fprintf(x.out, "%s  | %s\n", stepIndent, l)
	}
	if more != "" {
		fmt.Fprintf(x.out, "%s  | %s\n", stepIndent, more)
	}
}

// firstLines returns the first n lines of s.
func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// quoteArgs joins command-line arguments as a shell would read them.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$;&|<>()") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// head is the directory version a node holds in force.
type head struct {
	number uint64
	hash   []byte
	v      *pocnetv1.DirectoryVersion
}

func (h head) short() string { return fmt.Sprintf("%x", h.hash[:4]) }

// headOf returns the version in force at state's node.
func (x *dirDemo) headOf(ctx context.Context, state string) (head, error) {
	resp, err := x.admin(state).DirectoryVersion(ctx, 0)
	if err != nil {
		return head{}, err
	}
	h := sha256.Sum256(resp.GetSigned().GetVersion())
	return head{number: resp.GetVersion().GetVersion(), hash: h[:], v: resp.GetVersion()}, nil
}

// waitConverged waits until every member's node holds version want, the
// same bytes everywhere, and returns it.
func (x *dirDemo) waitConverged(ctx context.Context, want uint64, what string) (head, error) {
	var last string
	err := x.poll(ctx, what, func() (bool, error) {
		var first head
		var seen []string
		for i, s := range x.members {
			h, err := x.headOf(ctx, s)
			if err != nil {
				return false, err
			}
			seen = append(seen, fmt.Sprintf("%s: version %d (%s)", s, h.number, h.short()))
			if h.number > want {
				return false, fmt.Errorf("the node of %s holds version %d, past the expected %d: %s", s, h.number, want, h.v.GetChange())
			}
			if i == 0 {
				first = h
			}
			if h.number != want || !bytes.Equal(h.hash, first.hash) {
				last = strings.Join(seen, ", ")
				return false, nil
			}
		}
		return true, nil
	}, func() string { return last })
	if err != nil {
		return head{}, err
	}
	return x.headOf(ctx, x.members[0])
}

// poll calls check until it reports done, at most stepTimeout. An error
// of check ends the wait. last, if set, says what was seen, for the
// error.
func (x *dirDemo) poll(ctx context.Context, what string, check func() (bool, error), last func() string) error {
	deadline := time.Now().Add(stepTimeout)
	for {
		done, err := check()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("waiting for %s: not after %s", what, stepTimeout)
			if last != nil && last() != "" {
				msg += "; last seen: " + last()
			}
			return errors.New(msg)
		}
		select {
		case <-time.After(pollEvery):
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// proposal returns the proposal state's node holds that matches, or nil.
func (x *dirDemo) proposal(ctx context.Context, state string, match func(*pocnetv1.Proposal) bool) (*pocnetv1.Proposal, error) {
	ps, err := x.admin(state).Proposals(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if match(p) {
			return p, nil
		}
	}
	return nil, nil
}

// waitProposal waits until state's node holds a proposal that matches and
// satisfies ok, and returns it.
func (x *dirDemo) waitProposal(ctx context.Context, state, what string, match, ok func(*pocnetv1.Proposal) bool) (*pocnetv1.Proposal, error) {
	var got *pocnetv1.Proposal
	err := x.poll(ctx, fmt.Sprintf("the node of %s to hold %s", state, what), func() (bool, error) {
		p, err := x.proposal(ctx, state, match)
		if err != nil {
			return false, err
		}
		got = p
		return p != nil && (ok == nil || ok(p)), nil
	}, func() string {
		if got == nil {
			return "no such proposal"
		}
		return fmt.Sprintf("%s, signed by %v, objected to by %v", client.ProposalStateName(got.GetState()), got.GetSigned(), got.GetObjected())
	})
	return got, err
}

// admissionOf matches the admission of state, as a member or an observer.
func admissionOf(state string) func(*pocnetv1.Proposal) bool {
	return func(p *pocnetv1.Proposal) bool {
		return p.GetChange().GetAdmission().GetState() == state || p.GetChange().GetObserverAdmission().GetState() == state
	}
}

// prefix is how the demo names a proposal to pocctl: 12 hex digits.
func prefix(p *pocnetv1.Proposal) string { return fmt.Sprintf("%x", p.GetHash()[:6]) }

// logEntry is one line of a node's console log.
type logEntry struct {
	level, msg string
	fields     map[string]any
}

// String is the level and message.
func (e logEntry) String() string { return e.level + " " + e.msg }

// field returns a field's value as text, or "".
func (e logEntry) field(name string) string {
	if v, ok := e.fields[name]; ok {
		return fmt.Sprint(v)
	}
	return ""
}

// parseLog reads a console log line: time, level, [logger,] caller,
// message, then the fields as JSON.
func parseLog(line string) logEntry {
	f := strings.Split(line, "\t")
	if len(f) < 4 {
		return logEntry{msg: line}
	}
	e := logEntry{level: f[1]}
	i := slices.IndexFunc(f[2:], func(s string) bool { return strings.Contains(s, ".go:") })
	if i < 0 || 2+i+1 >= len(f) {
		e.msg = strings.Join(f[2:], " ")
		return e
	}
	rest := f[2+i+1:]
	e.msg = rest[0]
	if len(rest) > 1 {
		_ = json.Unmarshal([]byte(strings.Join(rest[1:], "\t")), &e.fields)
	}
	return e
}

// waitLog waits until state's node log has a line containing text, and
// returns the first.
func (x *dirDemo) waitLog(ctx context.Context, state, text string) (logEntry, error) {
	p := x.nodes[state]
	var line string
	err := x.poll(ctx, fmt.Sprintf("%q in %s", text, x.path(p.log)), func() (bool, error) {
		data, err := os.ReadFile(p.log)
		if err != nil {
			return false, err
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, text) {
				line = l
				return true, nil
			}
		}
		if !p.running() {
			return false, fmt.Errorf("the node of %s exited (%s)", state, p.exit())
		}
		return false, nil
	}, nil)
	return parseLog(line), err
}

// countLog counts the lines of state's node log containing text.
func (x *dirDemo) countLog(state, text string) (int, error) {
	data, err := os.ReadFile(x.nodes[state].log)
	if err != nil {
		return 0, err
	}
	return strings.Count(string(data), text), nil
}
