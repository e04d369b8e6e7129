package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The client talks to the server only through its public interfaces: the
// binary must not link any server-side package.
func TestClientDoesNotLinkTheServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/sealpost/sealpost/cmd/sealpost").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"/internal/store", "/internal/server", "/internal/queue", "/internal/sipserver",
			"/internal/apiserver", "/internal/registrar", "/internal/seal", "/internal/auth"} {
			if strings.Contains(pkg, "github.com/sealpost/sealpost"+banned) {
				t.Errorf("sealpost links %s", pkg)
			}
		}
	}
}
