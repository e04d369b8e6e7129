//go:build linux

package interop

import (
	"os/exec"
	"syscall"
)

// dieWithTest has the kernel kill the client when the test process dies
// first (a timeout's panic, a kill), so that no client outlives its test.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
