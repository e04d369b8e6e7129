package main

import (
	"strings"
	"testing"
)

// TestEveryCommandHelpAndUsageErrors walks the command table: every
// command's help (three ways of asking) goes to stdout with exit 0 and
// shows its arguments, description and example; a flag it does not take
// and a wrong number of arguments are usage errors (exit 2, one line and
// a pointer to the command's help).
func TestEveryCommandHelpAndUsageErrors(t *testing.T) {
	a := &app{}
	for _, c := range a.commands() {
		t.Run(c.Name, func(t *testing.T) {
			words := strings.Fields(c.Name)
			var first string
			for i, args := range [][]string{
				append([]string{"help"}, words...),
				append(append([]string{}, words...), "--help"),
				append(append([]string{}, words...), "-h"),
			} {
				code, out, errs := runCmd(t, "", nil, args...)
				if code != 0 || errs != "" {
					t.Fatalf("%q: exit %d, stderr %q", args, code, errs)
				}
				for _, want := range []string{"Usage: sealpostd " + c.Name, c.Args, c.Help, "Example:", strings.Split(c.Example, "\n")[0]} {
					if !strings.Contains(out, want) {
						t.Errorf("%q: help lacks %q:\n%s", args, want, out)
					}
				}
				if i == 0 {
					first = out
				} else if out != first {
					t.Errorf("%q shows other help than help %s", args, c.Name)
				}
			}
			see := "see sealpostd help " + c.Name + "\n"
			code, _, errs := runCmd(t, "", nil, append(words, "--no-such-flag")...)
			if code != 2 || !strings.HasSuffix(errs, see) || strings.Count(errs, "\n") != 2 || !strings.Contains(errs, "no-such-flag") {
				t.Errorf("unknown flag: exit %d, stderr %q", code, errs)
			}
			if c.NArgs >= 0 {
				args := append(words, strings.Fields(strings.Repeat("x ", c.NArgs+1))...)
				code, _, errs := runCmd(t, "", nil, args...)
				if code != 2 || !strings.HasSuffix(errs, see) || strings.Count(errs, "\n") != 2 {
					t.Errorf("%d arguments: exit %d, stderr %q", c.NArgs+1, code, errs)
				}
			}
		})
	}
}

func TestProgramHelpAndVersion(t *testing.T) {
	a := &app{}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		code, out, errs := runCmd(t, "", nil, args...)
		if code != 0 || errs != "" {
			t.Fatalf("%q: exit %d, stderr %q", args, code, errs)
		}
		for _, c := range a.commands() {
			if !strings.Contains(out, "  "+c.Name) || !strings.Contains(out, c.Help) {
				t.Errorf("%q: no line for %s", args, c.Name)
			}
		}
		// Every setting is listed with its variable.
		for _, s := range a.cfg.settings() {
			if !strings.Contains(out, "--"+s.name) || !strings.Contains(out, "SEALPOST_"+envName(s.name)) {
				t.Errorf("%q: setting %s or its variable missing", args, s.name)
			}
		}
	}
	code, out, errs := runCmd(t, "", nil, "--version")
	if code != 0 || !strings.HasPrefix(out, "sealpostd ") || !strings.Contains(out, "commit") || errs != "" {
		t.Errorf("--version: exit %d %q %q", code, out, errs)
	}
	// A group alone lists its commands; nothing was done, so exit 2.
	code, _, errs = runCmd(t, "", nil, "user")
	if code != 2 || !strings.Contains(errs, "user add NAME") || !strings.Contains(errs, "user list") {
		t.Errorf("user alone: exit %d %q", code, errs)
	}
	code, _, errs = runCmd(t, "", nil, "frobnicate")
	if code != 2 || errs != "sealpostd: unknown command \"frobnicate\"\nsee sealpostd help\n" {
		t.Errorf("unknown command: exit %d %q", code, errs)
	}
	code, _, errs = runCmd(t, "", nil, "help", "frobnicate")
	if code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("help of an unknown command: exit %d %q", code, errs)
	}
}

func TestMessagesListRefusesAnUnknownStatus(t *testing.T) {
	data := t.TempDir()
	code, _, errs := runCmd(t, "", nil, "--data", data, "messages", "list", "--status", "pending")
	if code != 2 || !strings.Contains(errs, `--status "pending"`) || !strings.Contains(errs, "enqueued, delivered and expired") {
		t.Fatalf("exit %d %q", code, errs)
	}
	if code, out, errs := runCmd(t, "", nil, "--data", data, "messages", "list", "--status", "Delivered"); code != 0 || !strings.HasPrefix(out, "RECEIVED") {
		t.Fatalf("a known status: exit %d %q %q", code, out, errs)
	}
}

func TestShortPasswordsAreRefused(t *testing.T) {
	data := t.TempDir()
	code, _, errs := runCmd(t, "x\n", nil, "--data", data, "user", "add", "alice", "--password-stdin")
	if code != 1 || !strings.Contains(errs, "the password has 1 characters; it needs at least 12 (--min-password-length)") {
		t.Fatalf("x: exit %d %q", code, errs)
	}
	// Characters, not bytes: eleven of them in 22 bytes are still too few.
	if code, _, errs = runCmd(t, "ééééééééééé\n", nil, "--data", data, "user", "add", "alice", "--password-stdin"); code != 1 {
		t.Fatalf("11 characters: exit %d %q", code, errs)
	}
	if code, _, errs = runCmd(t, "twelve-chars\n", nil, "--data", data, "user", "add", "alice", "--password-stdin"); code != 0 {
		t.Fatalf("12 characters: exit %d %q", code, errs)
	}
	if code, _, errs = runCmd(t, "short\n", map[string]string{"SEALPOST_MIN_PASSWORD_LENGTH": "4"}, "--data", data, "user", "passwd", "alice", "--password-stdin"); code != 0 {
		t.Fatalf("the setting lowered: exit %d %q", code, errs)
	}
}

func TestLogFormat(t *testing.T) {
	var b strings.Builder
	log, err := newLogger(&b, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("message accepted", "id", "5f0c", "from", "alice")
	if got := b.String(); !strings.HasPrefix(got, "{") || !strings.Contains(got, `"msg":"message accepted"`) || !strings.Contains(got, `"id":"5f0c"`) {
		t.Fatalf("json line: %q", got)
	}
	code, _, errs := runCmd(t, "", nil, "--data", t.TempDir(), "--log-format", "xml", "user", "list")
	if code != 2 || !strings.Contains(errs, `--log-format "xml": use text or json`) {
		t.Fatalf("xml: exit %d %q", code, errs)
	}
}
