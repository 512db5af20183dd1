package main

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts a node in its own process group, so that a Ctrl-C in the
// terminal reaches the demo only and the demo stops the nodes in order, and
// asks the kernel to send the node SIGTERM should the demo itself die.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
