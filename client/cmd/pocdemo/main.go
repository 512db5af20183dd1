// Command pocdemo shows pocnet at work on one machine, for newcomers.
//
//	make demo        (runs: go run ./client/cmd/pocdemo)
//
// It builds pocnode, creates a development federation of three states (XAA,
// XBB, XCC, each with its own root CA) in ./_demo at the root of the module,
// starts one node per state as a separate process on free 127.0.0.1 ports,
// and plays five short scenes with the Go client library, printing who sent
// what to whom and what each side saw:
//
//  1. an urgent request for information, delivered, acknowledged, answered;
//  2. a request declined by the recipient state, with its reason;
//  3. a request left unanswered past its respond-by time (a normal outcome);
//  4. a request refused by the recipient state's published policy;
//  5. two nodes killed with SIGKILL and restarted: nothing accepted is lost
//     and every communication arrives exactly once.
//
// It stops every node at the end, on failure and on Ctrl-C, and exits 1 if
// anything did not happen as described. Node logs stay in
// ./_demo/<STATE>/node.log; ./_demo is removed at the next run.
//
//	make demo-directory  (runs: go run ./client/cmd/pocdemo -scenario directory)
//
// plays the directory's governance instead, with five states and the
// pocfed, pocnode and pocctl commands, each state acting at its own node
// only: a sixth state admitted by four of five while its node waits, an
// observer admitted by silence and one stopped by an objection, a state
// rotating its keys, an operator certificate revoked (its open stream cut,
// its handshake refused), a node certificate renewed on SIGHUP and the old
// one refused by every node once revoked. No node is restarted; the demo
// checks that each is still the process it started (see directory.go). Its
// files and node logs are in ./_demo/fed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pocnet/pocnet/certs"
	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/directory"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// Bounds of every wait, so that the demo never hangs.
const (
	// stepTimeout bounds each wait for something to happen in the network.
	stepTimeout = 30 * time.Second
	// buildTimeout bounds building pocnode (a first build compiles Pebble).
	buildTimeout = 10 * time.Minute
	// scenarioTimeout bounds everything after the build.
	scenarioTimeout = 3 * time.Minute
	// stopTimeout is how long a node may take to stop after SIGTERM before
	// it is killed.
	stopTimeout = 10 * time.Second
)

// The three states of the demonstration and the PoC roles it uses.
const (
	xaa = "XAA"
	xbb = "XBB"
	xcc = "XCC"

	technical = "technical"
	policy    = "policy"
)

var states = []string{xaa, xbb, xcc}

func main() {
	os.Exit(run())
}

// Scenarios, chosen with -scenario.
const (
	scenarioMessaging = "messaging"
	scenarioDirectory = "directory"
)

func run() int {
	fs := flag.NewFlagSet("pocdemo", flag.ContinueOnError)
	scenario := fs.String("scenario", scenarioMessaging, "what to show: "+scenarioMessaging+" (three states exchange communications) or "+scenarioDirectory+" (five states govern their signed directory)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "pocdemo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{out: os.Stdout, t0: time.Now(), nodes: map[string]*nodeProc{}, ops: map[string]*operator{}}
	var err error
	switch *scenario {
	case scenarioMessaging:
		err = d.run(ctx)
	case scenarioDirectory:
		err = (&dirDemo{demo: d}).run(ctx)
	default:
		fmt.Fprintf(os.Stderr, "pocdemo: -scenario: %q is neither %s nor %s\n", *scenario, scenarioMessaging, scenarioDirectory)
		return 2
	}
	d.closeClients()
	stopped := d.stopNodes()
	if err == nil && !stopped {
		err = errors.New("not every node stopped cleanly after SIGTERM (see above)")
	}
	if err == nil {
		err = d.checkAtRest()
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(d.out, "\nInterrupted: everything the demo started has been stopped.")
		} else {
			fmt.Fprintf(d.out, "\nDEMO FAILED: %v\n", err)
			d.printLogTails(15)
		}
		return 1
	}
	fmt.Fprintln(d.out, "\nThe demo completed: every step happened as described.")
	return 0
}

// demo holds everything the demonstration started.
type demo struct {
	out io.Writer
	// t0 is the moment every printed time is relative to: just before the
	// federation is created.
	t0 time.Time
	// root is the module root, dir its _demo folder, bin the pocnode binary.
	root, dir, bin string
	fed            *certs.Federation
	// bundle holds every state's CA, from the directory, to verify receipts.
	bundle *identity.Bundle
	// directory has every state's signing keys, to verify receipts.
	directory *directory.Directory
	nodes     map[string]*nodeProc
	// order is the states whose nodes were started, in the order of their
	// first start: nodes are stopped and their logs shown in this order.
	order []string
	// ops are the connected operators, by "STATE/role".
	ops map[string]*operator
	// sent is every communication a node accepted during the demo, in order,
	// with the status last seen.
	sent []*pocnetv1.Message
}

// operator is one connected operator and the watch on its events.
type operator struct {
	state, role string
	c           *client.Client
	events      *collector
}

func (d *demo) run(ctx context.Context) error {
	fmt.Fprintln(d.out, "pocnet demo: three states, three nodes, five short scenes")
	fmt.Fprintln(d.out, "==========================================================")
	if err := d.setUp(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, scenarioTimeout)
	defer cancel()
	for _, scene := range []func(context.Context) error{
		d.sceneAnswered, d.sceneDeclined, d.sceneSilence, d.sceneRejected, d.sceneCrash,
	} {
		if err := scene(ctx); err != nil {
			if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%w (the demo's overall limit of %s was reached)", err, scenarioTimeout)
			}
			return err
		}
	}
	return d.summary(ctx)
}

// op returns the connected operator of state acting for role.
func (d *demo) op(state, role string) *operator { return d.ops[state+"/"+role] }

// track records a communication a node accepted, or its newer view.
func (d *demo) track(m *pocnetv1.Message) {
	for i, s := range d.sent {
		if s.GetId() == m.GetId() {
			d.sent[i] = m
			return
		}
	}
	d.sent = append(d.sent, m)
}

// closeClients stops every watch and closes every connection.
func (d *demo) closeClients() {
	for key, o := range d.ops {
		o.close()
		delete(d.ops, key)
	}
}

func (o *operator) close() {
	if o.events != nil {
		o.events.stop()
	}
	o.c.Close()
}
