// Package pocctl is the pocctl command: an operator's tool to send, read,
// answer and watch communications through the state's own node. It is built
// on package client only, and lives here rather than in package main so that
// tests can run its commands in-process.
//
// It must never print a Go stack trace or a raw gRPC error: every failure is
// one line naming what failed, and bad usage names the flag.
package pocctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/client"
)

// Exit codes of pocctl.
const (
	ExitOK     = 0
	ExitError  = 1 // the node, the network or a file failed
	ExitUsage  = 2 // bad flags, arguments or configuration
	ExitBroken = 3 // audit verify: the audit log is broken
)

// Env is what pocctl reads and writes besides its arguments.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads environment variables (POCCTL_CONFIG); nil means os.Getenv.
	Getenv func(string) string
	// Now is the clock used for relative times and durations; nil means
	// time.Now.
	Now func() time.Time
}

// usageError is bad usage: a flag, an argument or the configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// opError is a failure while doing what was asked, after the usage was
// found good.
type opError struct{ err error }

func (e opError) Error() string { return e.err.Error() }
func (e opError) Unwrap() error { return e.err }

// app holds the global flags and the environment of one run.
type app struct {
	env        Env
	configPath string
	output     string
	timeout    time.Duration
}

// Run runs pocctl with args (without the program name) and returns the exit
// code. ctx ends long-running commands such as watch.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Stdin == nil {
		env.Stdin = os.Stdin
	}
	if env.Stdout == nil {
		env.Stdout = os.Stdout
	}
	if env.Stderr == nil {
		env.Stderr = os.Stderr
	}
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	a := &app{env: env}
	root := a.root()
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var broken brokenError
	if errors.As(err, &broken) {
		fmt.Fprintf(env.Stderr, "pocctl: %v\n", broken.err)
		return ExitBroken
	}
	var op opError
	if errors.As(err, &op) {
		fmt.Fprintf(env.Stderr, "pocctl: %v\n", op.err)
		return ExitError
	}
	// Everything else comes from parsing the command line (cobra's own
	// errors included) or from checking flags and configuration.
	fmt.Fprintf(env.Stderr, "pocctl: %v\n", err)
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(env.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return ExitUsage
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "pocctl",
		Short: "Send, read and answer communications through your state's pocnet node",
		Long: `pocctl is the operator's tool for pocnet: it sends communications to other
states' points of contact, lists and shows what arrived, acknowledges,
responds or declines, and watches events as they happen.

It connects to your state's own node with your operator certificate, as
configured in a YAML file (address, cert, key, ca).`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			switch a.output {
			case "text", "json":
			default:
				return usagef("--output: %q is not an output format (text or json)", a.output)
			}
			if a.timeout <= 0 {
				return usagef("--timeout: must be positive, got %s", a.timeout)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "configuration file (default $POCCTL_CONFIG, else ./pocctl.yaml)")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text or json (protobuf JSON; one document per line for watch)")
	pf.DurationVar(&a.timeout, "timeout", 30*time.Second, "how long to wait for the node")

	root.AddCommand(
		a.sendCmd(), a.inboxCmd(), a.sentCmd(), a.showCmd(), a.threadCmd(),
		a.ackCmd(), a.respondCmd(), a.declineCmd(), a.archiveCmd(),
		a.watchCmd(), a.directoryCmd(), a.policyCmd(), a.statusCmd(), a.auditCmd(),
		a.disclosureCmd(),
	)
	return root
}

// runE adapts a command's work so that every error it returns after the
// usage checks counts as a failure (exit 1), unless it is a usageError.
func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		var ue usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return opError{err}
	}
}

// exactArgs is cobra.ExactArgs with an error naming what is missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			if len(names) == 0 {
				return usagef("%s takes no arguments, got %q", cmd.Name(), args)
			}
			return usagef("%s needs %d argument(s): %v, got %d", cmd.Name(), len(names), names, len(args))
		}
		return nil
	}
}

// configFile returns the configuration path: --config, else $POCCTL_CONFIG,
// else ./pocctl.yaml.
func (a *app) configFile() string {
	if a.configPath != "" {
		return a.configPath
	}
	if p := a.env.Getenv("POCCTL_CONFIG"); p != "" {
		return p
	}
	return "pocctl.yaml"
}

// dial loads the configuration and connects to the node within --timeout.
func (a *app) dial(ctx context.Context) (*client.Client, error) {
	path := a.configFile()
	cfg, err := client.LoadConfig(path)
	if err != nil {
		return nil, usagef("%v (choose the file with --config or $POCCTL_CONFIG)", err)
	}
	dctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	c, err := client.Dial(dctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w (configuration %s)", err, path)
	}
	return c, nil
}

// call runs fn with a connected client and a context bounded by --timeout.
func (a *app) call(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
	defer cancel()
	c, err := a.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(ctx, c)
}

func (a *app) json() bool { return a.output == "json" }

// printJSON writes m as one protobuf JSON document. protojson's spacing is
// deliberately unstable, so the document is re-indented with encoding/json:
// the same message always prints the same bytes.
func (a *app) printJSON(m proto.Message, oneLine bool) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	var buf bytes.Buffer
	if oneLine {
		err = json.Compact(&buf, b)
	} else {
		err = json.Indent(&buf, b, "", "  ")
	}
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err = a.env.Stdout.Write(buf.Bytes())
	return err
}

func (a *app) now() time.Time { return a.env.Now() }
