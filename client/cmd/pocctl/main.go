// Command pocctl is the operator's tool for pocnet: it sends communications
// to other states' points of contact through the state's own node, lists,
// shows and answers what arrived, and watches events as they happen.
//
// Exit codes: 0 success, 1 a failure of the node, network or a file, 2 bad
// usage (the message names the flag, argument or configuration field), 3 the
// audit log is broken (audit verify).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pocnet/pocnet/client/internal/pocctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := pocctl.Run(ctx, os.Args[1:], pocctl.Env{})
	stop()
	os.Exit(code)
}
