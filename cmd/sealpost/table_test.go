package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	return stdout.String(), stderr.String(), code
}

// Every command in the table has help on standard output with its
// arguments, summary and example, and answers a misuse with one line, a
// pointer to its help and exit code 2.
func TestEveryCommandHelpAndExitCodes(t *testing.T) {
	home := t.TempDir() // no profile: a command that gets past its usage checks fails with 1
	table := (&app{}).commandTable()
	if len(table) == 0 {
		t.Fatal("empty command table")
	}
	for _, cmd := range table {
		t.Run(cmd.Name, func(t *testing.T) {
			if cmd.Help == "" || cmd.Example == "" {
				t.Errorf("no summary or example in the table")
			}
			for _, args := range [][]string{{"help", cmd.Name}, {cmd.Name, "--help"}, {cmd.Name, "-h"}} {
				out, errOut, code := runCLI(t, nil, args...)
				if code != 0 || errOut != "" {
					t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
				}
				for _, want := range []string{"Usage: sealpost " + cmd.Name, cmd.Args, cmd.Help, "Example:\n  ", "sealpost " + cmd.Name} {
					if !strings.Contains(out, want) {
						t.Errorf("%q: help lacks %q:\n%s", args, want, out)
					}
				}
			}
			out, errOut, code := runCLI(t, nil, cmd.Name, "--no-such-flag")
			wantErr := "sealpost " + cmd.Name + ": flag provided but not defined: -no-such-flag\nsee sealpost help " + cmd.Name + "\n"
			if code != 2 || out != "" || errOut != wantErr {
				t.Errorf("unknown flag: exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, wantErr)
			}
			if cmd.NArgs >= 0 {
				tooMany := append([]string{cmd.Name, "--home", home}, make([]string, cmd.NArgs+1)...)
				for i := 3; i < len(tooMany); i++ {
					tooMany[i] = "x"
				}
				_, errOut, code := runCLI(t, nil, tooMany...)
				if code != 2 || strings.Count(errOut, "\n") != 2 || !strings.HasSuffix(errOut, "see sealpost help "+cmd.Name+"\n") {
					t.Errorf("%d argument(s) for %d: exit %d, stderr %q", cmd.NArgs+1, cmd.NArgs, code, errOut)
				}
			}
		})
	}
}

func TestProgramHelpVersionAndUnknown(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		out, errOut, code := runCLI(t, nil, args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "Usage: sealpost") || !strings.Contains(out, "history") || !strings.Contains(out, "--home DIR") || !strings.Contains(out, "env SEALPOST_HOME") {
			t.Errorf("%q: exit %d, stderr %q, stdout %q", args, code, errOut, out)
		}
	}
	out, _, code := runCLI(t, nil, "--version")
	if code != 0 || !strings.HasPrefix(out, "sealpost ") || !strings.Contains(out, "commit") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	_, errOut, code := runCLI(t, nil, "sned")
	if code != 2 || errOut != "sealpost: unknown command \"sned\"\nsee sealpost help\n" {
		t.Errorf("unknown command: exit %d, %q", code, errOut)
	}
	if _, _, code := runCLI(t, nil); code != 2 {
		t.Errorf("no command: exit %d, want 2", code)
	}
}

// A runtime failure exits 1; the profile folder comes from SEALPOST_HOME
// when --home is not given.
func TestRuntimeErrorAndEnvHome(t *testing.T) {
	home := t.TempDir() + "/nobody"
	_, errOut, code := runCLI(t, map[string]string{envHome: home}, "contacts")
	if code != 1 || !strings.Contains(errOut, home) || !strings.Contains(errOut, "sealpost login") {
		t.Errorf("contacts without a profile: exit %d, %q", code, errOut)
	}
}
