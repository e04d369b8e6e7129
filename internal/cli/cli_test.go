package cli

import (
	"bytes"
	"errors"
	"flag"
	"runtime/debug"
	"strings"
	"testing"
)

func testProgram(got *[]string, verbose *bool) *Program {
	return &Program{
		Name: "prog", Summary: "prog: a test.",
		Commands: []Command{
			{Name: "greet", Args: "NAME", NArgs: 1, Help: "say hello", Example: "prog greet bob",
				Flags: func(fs *flag.FlagSet) { fs.BoolVar(verbose, "loud", false, "shout") },
				Run:   func(args []string) error { *got = args; return nil }},
			{Name: "fail", NArgs: 0, Help: "fail at run time", Run: func([]string) error { return errors.New("it broke") }},
			{Name: "misuse", NArgs: -1, Help: "a usage error from Run", Run: func([]string) error { return Usagef("bad NAME") }},
			{Name: "exit", NArgs: 0, Help: "exit 3", Run: func([]string) error { return ExitError{Code: 3} }},
		},
		Globals: func(fs *flag.FlagSet) { fs.String("home", "", "a `DIR`") },
	}
}

func TestRunExitCodes(t *testing.T) {
	var got []string
	var loud bool
	for _, tc := range []struct {
		args     []string
		code     int
		stdout   string
		stderr   string
		wantArgs []string
	}{
		{[]string{"greet", "--home", "h", "bob", "--loud"}, 0, "", "", []string{"bob"}},
		{[]string{"--home", "h", "greet", "--", "-bob"}, 0, "", "", []string{"-bob"}},
		{[]string{"greet"}, 2, "", "prog greet: want NAME, got 0 argument(s)\nsee prog help greet\n", nil},
		{[]string{"greet", "bob", "--quiet"}, 2, "", "prog greet: flag provided but not defined: -quiet\nsee prog help greet\n", nil},
		{[]string{"fail", "--loud"}, 2, "", "prog fail: flag provided but not defined: -loud\nsee prog help fail\n", nil},
		{[]string{"fail"}, 1, "", "prog fail: it broke\n", nil},
		{[]string{"misuse"}, 2, "", "prog misuse: bad NAME\nsee prog help misuse\n", nil},
		{[]string{"exit"}, 3, "", "", nil},
		{[]string{}, 2, "", "prog: a test.", nil},
		{[]string{"help", "greet"}, 0, "Usage: prog greet NAME [--loud]\n\nsay hello\n\nExample:\n  prog greet bob\n", "", nil},
		{[]string{"greet", "--help"}, 0, "Usage: prog greet NAME [--loud]", "", nil},
	} {
		got, loud = nil, false
		var out, errb bytes.Buffer
		code := testProgram(&got, &loud).Run(tc.args, &out, &errb)
		if code != tc.code || !strings.HasPrefix(out.String(), tc.stdout) || !strings.HasPrefix(errb.String(), tc.stderr) ||
			strings.Join(got, ",") != strings.Join(tc.wantArgs, ",") {
			t.Errorf("%q: exit %d stdout %q stderr %q args %q", tc.args, code, out.String(), errb.String(), got)
		}
		if tc.stderr != "" && strings.HasSuffix(tc.stderr, "\n") && errb.String() != tc.stderr {
			t.Errorf("%q: stderr %q, want exactly %q", tc.args, errb.String(), tc.stderr)
		}
	}
}

func TestVersionDescribesTheBuild(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-01T20:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	if got, want := describe(info, ""), "(devel), commit abc123+changes (2026-12-01T20:00:00Z), go1.26"; got != want {
		t.Errorf("with VCS: %q, want %q", got, want)
	}
	info.Settings = nil
	if got := describe(info, ""); !strings.Contains(got, "commit unknown") {
		t.Errorf("without VCS: %q", got)
	}
	if got := describe(info, "def456"); !strings.Contains(got, "commit def456") {
		t.Errorf("linked commit: %q", got)
	}
}
