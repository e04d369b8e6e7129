//go:build !linux

package interop

import "os/exec"

// dieWithTest: only Linux can tie a child's life to its parent's; elsewhere
// the test's cleanup stops the clients.
func dieWithTest(cmd *exec.Cmd) {}
