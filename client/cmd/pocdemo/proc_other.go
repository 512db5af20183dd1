//go:build !unix

package main

import "os/exec"

// setProcAttr leaves the node's process attributes as they are: process
// groups are a Unix notion.
func setProcAttr(*exec.Cmd) {}
