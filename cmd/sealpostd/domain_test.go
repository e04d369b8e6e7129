package main

import (
	"strings"
	"testing"
)

// TestCommandsUseTheRecordedDomain is the case: a folder first used
// with --domain sp.test, then `user add` without --domain.
func TestCommandsUseTheRecordedDomain(t *testing.T) {
	data := t.TempDir() + "/d"
	if code, _, errs := runCmd(t, "", nil, "--data", data, "--domain", "sp.test", "user", "list"); code != 0 {
		t.Fatalf("first use: %d %q", code, errs)
	}
	code, out, errs := runCmd(t, "", nil, "--data", data, "user", "add", "frank")
	if code != 0 || !strings.Contains(out, "(sip:frank@sp.test)") {
		t.Fatalf("user add: %d %q %q", code, out, errs)
	}
	code, out, _ = runCmd(t, "", nil, "--data", data, "user", "list")
	if code != 0 || !strings.Contains(out, "sip:frank@sp.test") {
		t.Fatalf("user list: %d %q", code, out)
	}
	code, _, errs = runCmd(t, "", map[string]string{"SEALPOST_DOMAIN": "localhost"}, "--data", data, "user", "list")
	if code != 1 || !strings.Contains(errs, "domain set localhost") || !strings.Contains(errs, "user passwd") {
		t.Fatalf("another domain: %d %q", code, errs)
	}
	code, out, errs = runCmd(t, "", nil, "--data", data, "domain", "set", "sp.example.org")
	if code != 0 || !strings.Contains(out, "user passwd") {
		t.Fatalf("domain set: %d %q %q", code, out, errs)
	}
	if code, out, _ = runCmd(t, "", nil, "--data", data, "user", "list"); !strings.Contains(out, "sip:frank@sp.example.org") {
		t.Fatalf("user list after domain set: %d %q", code, out)
	}
}
