package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/governance"
	"github.com/pocnet/pocnet/internal/identity"
	"github.com/pocnet/pocnet/server/config"
)

// modulePath is the module whose root the demo runs from.
const modulePath = "github.com/pocnet/pocnet"

// demoDir is the demo's folder at the module root (git-ignored).
const demoDir = "_demo"

// setUp builds pocnode, writes the federation, starts the three nodes and
// connects the operators.
func (d *demo) setUp(ctx context.Context) error {
	section(d.out, "Setting up", "")
	root, err := findModuleRoot()
	if err != nil {
		return err
	}
	d.root = root
	d.dir = filepath.Join(root, demoDir)
	if err := os.RemoveAll(d.dir); err != nil {
		return fmt.Errorf("remove the previous demo folder: %w", err)
	}
	if err := d.build(ctx, pocnodeTool); err != nil {
		return err
	}
	d.t0 = time.Now()
	fmt.Fprintln(d.out, "  Times below are relative to this moment.")
	if err := d.writeFederation(); err != nil {
		return err
	}
	for _, s := range states {
		if err := d.startNode(ctx, s); err != nil {
			return err
		}
	}
	for _, s := range states {
		if err := d.waitHealthy(ctx, s); err != nil {
			return err
		}
	}
	for _, s := range states {
		if err := d.connect(ctx, s); err != nil {
			return err
		}
	}
	d.step("all three nodes are healthy; operators of each state are connected to their own node")
	return nil
}

// findModuleRoot walks up from the working directory to the go.mod of the
// pocnet module.
func findModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if p := moduleOf(data); p != modulePath {
				return "", fmt.Errorf("%s belongs to module %q, not %s: run the demo from inside the pocnet checkout", filepath.Join(dir, "go.mod"), p, modulePath)
			}
			return dir, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod in %s or any folder above it: run the demo from inside the pocnet checkout", wd)
		}
		dir = parent
	}
}

// moduleOf returns the module path declared in a go.mod file.
func moduleOf(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			rest, _, _ = strings.Cut(rest, "//")
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// goTool finds the go command: the one of GOROOT, then the one this program
// was built with, then the one on PATH.
func goTool() (string, error) {
	exe := "go"
	if runtime.GOOS == "windows" {
		exe = "go.exe"
	}
	var roots []string
	if r := os.Getenv("GOROOT"); r != "" {
		roots = append(roots, r)
	}
	if r := runtime.GOROOT(); r != "" {
		roots = append(roots, r)
	}
	for _, r := range roots {
		p := filepath.Join(r, "bin", exe)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("cannot find the go command (looked in GOROOT and PATH): %w", err)
	}
	return p, nil
}

// tool is a command of the module the demo builds.
type tool struct{ name, pkg string }

var (
	pocnodeTool = tool{"pocnode", "./server/cmd/pocnode"}
	pocfedTool  = tool{"pocfed", "./certs/cmd/pocfed"}
	pocctlTool  = tool{"pocctl", "./client/cmd/pocctl"}
)

// build compiles the tools into _demo/bin; the first is pocnode.
func (d *demo) build(ctx context.Context, tools ...tool) error {
	goCmd, err := goTool()
	if err != nil {
		return err
	}
	binDir := filepath.Join(d.dir, "bin")
	names := make([]string, len(tools))
	pkgs := make([]string, len(tools))
	for i, t := range tools {
		names[i], pkgs[i] = t.name, t.pkg
	}
	d.bin = d.exe(pocnodeTool.name)
	// With several commands, go build writes them into the folder that -o
	// names with a trailing separator.
	out, shown := d.bin, d.path(d.bin)
	if len(tools) > 1 {
		out = binDir + string(filepath.Separator)
		shown = d.path(binDir) + "/"
	}
	fmt.Fprintf(d.out, "  building %s: go build -o %s %s ...\n", strings.Join(names, ", "), shown, strings.Join(pkgs, " "))
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, goCmd, append([]string{"build", "-o", out}, pkgs...)...)
	cmd.Dir = d.root
	b, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("build %s: %w", strings.Join(names, ", "), ctx.Err())
		}
		return fmt.Errorf("build %s (%s build %s): %w\n%s", strings.Join(names, ", "), goCmd, strings.Join(pkgs, " "), err, strings.TrimSpace(string(b)))
	}
	fmt.Fprintf(d.out, "  built in %.1fs\n", time.Since(start).Seconds())
	return nil
}

// exe is the path of a built tool.
func (d *demo) exe(name string) string {
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return filepath.Join(d.dir, "bin", name)
}

// writeFederation generates the three states' PKI and directory, with the
// nodes on free ports, writes it under _demo and tunes the node settings.
func (d *demo) writeFederation() error {
	fed, err := certs.Generate(certs.Options{States: states})
	if err != nil {
		return err
	}
	ports, err := freePorts(len(fed.Directory.GetMembers()))
	if err != nil {
		return err
	}
	for i, m := range fed.Directory.GetMembers() {
		m.Endpoints = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i]))}
	}
	if err := fed.Write(d.dir); err != nil {
		return err
	}
	d.fed = fed
	// The demo trusts what the nodes trust: the directory of the genesis,
	// once every state's signature on it verifies.
	genesisFile := filepath.Join(d.dir, certs.GenesisFile)
	genesis, err := governance.LoadGenesis(genesisFile)
	if err != nil {
		return err
	}
	chain, err := governance.NewChain(genesis, time.Now())
	if err != nil {
		return fmt.Errorf("genesis %s: %w", genesisFile, err)
	}
	dir := chain.Latest().Directory()
	d.bundle = dir.Bundle()
	d.directory = dir
	for _, s := range states {
		if err := tuneNodeConfig(d.nodeConfig(s)); err != nil {
			return err
		}
	}
	d.step("created the development federation %q in %s:", fed.ID, d.path(d.dir))
	d.detail("each state has its own root CA (no shared CA), a node certificate and four operators")
	d.detail("(admin, technical, policy, diplomatic); %s lists every state's CA, node address", certs.GenesisFile)
	d.detail("and PoCs, signed by all three states: it is every node's trust anchor")
	return nil
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer lis.Close()
		ports = append(ports, lis.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (d *demo) nodeConfig(state string) string {
	return filepath.Join(d.dir, state, "node", "pocnode.yaml")
}

// tuneNodeConfig makes a written pocnode.yaml suit a short demonstration:
// an unreachable peer is retried at least every 2 seconds, and logs are
// human-readable. The result is checked with the node's own loader.
func tuneNodeConfig(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("%s: not a YAML mapping", path)
	}
	top := doc.Content[0]
	for _, s := range []struct {
		path  []string
		value string
	}{
		{[]string{"relay", "max_backoff"}, "2s"},
		{[]string{"relay", "deliver_timeout"}, "5s"},
		{[]string{"shutdown_timeout"}, "5s"},
		{[]string{"log", "format"}, "console"},
		{[]string{"log", "level"}, "info"},
	} {
		setYAML(top, s.path, s.value)
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return err
	}
	if _, err := config.Load(path); err != nil {
		return fmt.Errorf("adjusted node configuration does not load: %w", err)
	}
	return nil
}

// setYAML sets the scalar at path in mapping m, creating what is missing.
func setYAML(m *yaml.Node, path []string, value string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != path[0] {
			continue
		}
		if len(path) == 1 {
			m.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Value: value}
			return
		}
		if m.Content[i+1].Kind != yaml.MappingNode {
			m.Content[i+1] = &yaml.Node{Kind: yaml.MappingNode}
		}
		setYAML(m.Content[i+1], path[1:], value)
		return
	}
	key := &yaml.Node{Kind: yaml.ScalarNode, Value: path[0]}
	if len(path) == 1 {
		m.Content = append(m.Content, key, &yaml.Node{Kind: yaml.ScalarNode, Value: value})
		return
	}
	sub := &yaml.Node{Kind: yaml.MappingNode}
	m.Content = append(m.Content, key, sub)
	setYAML(sub, path[1:], value)
}

// nodeProc is one pocnode process.
type nodeProc struct {
	state, addr, config, log string
	cmd                      *exec.Cmd
	done                     chan struct{}
	// err is cmd.Wait's result, set before done is closed.
	err error
}

func (p *nodeProc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// exit describes how the process ended.
func (p *nodeProc) exit() string {
	if p.err == nil {
		return "exit status 0"
	}
	return p.err.Error()
}

// startNode starts state's node as a separate process, its output appended
// to _demo/<STATE>/node.log.
func (d *demo) startNode(ctx context.Context, state string) error {
	m, _ := d.member(state)
	return d.startProc(ctx, state, m.GetEndpoints()[0], d.nodeConfig(state))
}

// startProc starts pocnode with the configuration file config as state's
// node listening on addr, its output appended to node.log in the state's
// folder (the parent of the node folder holding config).
func (d *demo) startProc(ctx context.Context, state, addr, config string) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	p := &nodeProc{
		state: state, addr: addr, config: config,
		log: filepath.Join(filepath.Dir(filepath.Dir(config)), "node.log"), done: make(chan struct{}),
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== pocdemo: starting the node of %s at %s ===\n", state, time.Now().UTC().Format(time.RFC3339Nano))
	p.cmd = exec.Command(d.bin, "--config", p.config)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	setProcAttr(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start the node of %s: %w", state, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	d.nodes[state] = p
	if !slices.Contains(d.order, state) {
		d.order = append(d.order, state)
	}
	d.step("started the node of %s (pid %d) on %s, log in %s", state, p.cmd.Process.Pid, p.addr, d.path(p.log))
	return nil
}

// waitHealthy waits until state's node answers the gRPC health check with
// SERVING, checked over mutual TLS as state's admin operator.
func (d *demo) waitHealthy(ctx context.Context, state string) error {
	p := d.nodes[state]
	admin := d.fed.State(state).Operator(identity.AdminRole)
	tlsCfg := identity.ClientConfig(&admin.TLS, identity.Static{B: d.bundle}, identity.Node(d.fed.ID, state), nil)
	conn, err := grpc.NewClient(p.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.5, MaxDelay: 300 * time.Millisecond},
			MinConnectTimeout: 2 * time.Second,
		}))
	if err != nil {
		return fmt.Errorf("health check of %s: %w", state, err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(stepTimeout)
	var last error
	for {
		if !p.running() {
			return fmt.Errorf("the node of %s exited at start (%s); see %s", state, p.exit(), d.path(p.log))
		}
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("health status %s", resp.GetStatus())
		}
		last = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the node of %s is not healthy after %s: %v; see %s", state, stepTimeout, last, d.path(p.log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// connect dials state's technical, policy and admin operators with the
// configuration files Write made, and watches the new events of the first
// two. Operators connected before (to a node since restarted) are closed.
func (d *demo) connect(ctx context.Context, state string) error {
	for _, role := range []string{technical, policy, identity.AdminRole} {
		if old := d.op(state, role); old != nil {
			old.close()
		}
		iss := d.fed.State(state).Operator(role)
		path := filepath.Join(d.dir, state, "operators", certs.OperatorDir(iss), "pocctl.yaml")
		cfg, err := client.LoadConfig(path)
		if err != nil {
			return err
		}
		dctx, cancel := context.WithTimeout(ctx, stepTimeout)
		c, err := client.Dial(dctx, cfg)
		cancel()
		if err != nil {
			return fmt.Errorf("connect %s/%s: %w", state, role, err)
		}
		o := &operator{state: state, role: role, c: c}
		d.ops[state+"/"+role] = o
		if role == identity.AdminRole {
			continue
		}
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		o.events = watch(ctx, c, st.GetLastEventSeq())
	}
	return nil
}

// kill ends state's node with SIGKILL: no graceful stop, no flush.
func (d *demo) kill(state string) error {
	p := d.nodes[state]
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill the node of %s: %w", state, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stepTimeout):
		return fmt.Errorf("the node of %s did not end after SIGKILL", state)
	}
}

// stopNodes stops every running node with SIGTERM, killing those that do
// not stop within stopTimeout. It reports whether all stopped cleanly.
func (d *demo) stopNodes() bool {
	var running []*nodeProc
	for _, s := range d.order {
		if p := d.nodes[s]; p != nil && p.running() {
			running = append(running, p)
		}
	}
	if len(running) == 0 {
		return true
	}
	section(d.out, "Stopping the nodes", "")
	for _, p := range running {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			p.cmd.Process.Kill()
		}
	}
	clean := true
	deadline := time.After(stopTimeout)
	for _, p := range running {
		select {
		case <-p.done:
		case <-deadline:
		}
		if p.running() {
			p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
			}
			d.step("the node of %s did not stop within %s of SIGTERM and was killed", p.state, stopTimeout)
			clean = false
			continue
		}
		if p.err != nil {
			d.step("the node of %s stopped with %s; see %s", p.state, p.exit(), d.path(p.log))
			clean = false
			continue
		}
		d.step("the node of %s stopped (SIGTERM, graceful)", p.state)
	}
	return clean
}

// printLogTails prints the last n lines of every node log, for a failure.
func (d *demo) printLogTails(n int) {
	for _, s := range d.order {
		p := d.nodes[s]
		if p == nil {
			continue
		}
		data, err := os.ReadFile(p.log)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(d.out, "\n--- last lines of %s ---\n%s\n", d.path(p.log), strings.Join(lines, "\n"))
	}
}

// path returns path relative to the module root, for display.
func (d *demo) path(path string) string {
	if r, err := filepath.Rel(d.root, path); err == nil && !strings.HasPrefix(r, "..") {
		return "./" + filepath.ToSlash(r)
	}
	return path
}
