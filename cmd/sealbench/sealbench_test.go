package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/internal/loadtest"
	"github.com/sealpost/sealpost/internal/server/servertest"
)

// TestShortRun runs the command for about a second against an in-process
// server, as a user would against a running sealpostd, so the tool cannot
// rot: a relay over SIP with the table, then a store over HTTPS as JSON.
func TestShortRun(t *testing.T) {
	srv := servertest.Start(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	password := loadtest.NewPassword()
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := 0; i < 8; i++ {
		names = append(names, "sb0000"+string(rune('0'+i)))
	}
	if _, err := srv.AddUsers(context.Background(), names, password); err != nil {
		t.Fatal(err)
	}
	target := []string{"--https", srv.Server.HTTPSAddr(), "--sip", srv.SIPAddr, "--ca", srv.CAFile,
		"--admin", strings.TrimPrefix(srv.AdminURL, "http://"), "--pid", "0", "--password-file", pwFile}

	var out, errOut bytes.Buffer
	args := append([]string{"relay", "--via", "sip", "--recipients", "4", "--senders", "4", "--rate", "400", "--duration", "800ms", "--sources", "127.0.0.1-127.0.0.3"}, target...)
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("sealbench relay: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"## relay (via sip)", "| delivered/s |", "| submit→202 p99 |", "| submit→arrival p99 |", "| lost | 0 |", "| server peak RSS |", "| tool CPU |", "settings: via=sip recipients=4 senders=4 rate=400/s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	args = append([]string{"store", "--json", "--recipients", "4", "--senders", "2", "--messages", "50", "--duration", "5s"}, target...)
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("sealbench store: %v\n%s", err, errOut.String())
	}
	var res []loadtest.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if len(res) != 1 || res[0].Accepted != 50 || res[0].SubmitLatency.N != 50 || res[0].Server.PID != os.Getpid() {
		t.Errorf("store result: %+v", res)
	}
}

func TestSetup(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	var out bytes.Buffer
	args := []string{"--data", filepath.Join(dir, "data"), "--accounts", "5", "--password-file", pwFile}
	if err := run(context.Background(), append([]string{"setup"}, args...), &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "5 accounts created (0 existed)") {
		t.Errorf("setup said %q", out.String())
	}
	if fi, err := os.Stat(pwFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("password file: %v, %v", fi, err)
	}
	out.Reset()
	if err := run(context.Background(), append([]string{"setup"}, args...), &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "0 accounts created (5 existed)") {
		t.Errorf("second setup said %q", out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"flood"},
		{"relay"},
		{"relay", "--spawn", "x", "--sources", "10.0.0.1"},
		{"relay", "--spawn", "x", "--sources", "127.0.0.9-127.0.0.2"},
		{"connections", "--spawn", "x", "--steps", "10,5"},
		{"compare"},
		{"compare", "--spawn", "x", "--scenarios", "relay,flood"},
		{"compare", "--spawn", "x", "--pairs", "0"},
		{"compare", "--spawn", "x", "--kamailio", "/nonexistent/kamailio"},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), args, &out, &out); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	got, err := parseSources("127.0.0.1-127.0.0.3")
	if err != nil || strings.Join(got, ",") != "127.0.0.1,127.0.0.2,127.0.0.3" {
		t.Errorf("range: %v, %v", got, err)
	}
}
