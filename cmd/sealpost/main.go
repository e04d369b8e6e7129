// Command sealpost is the Sealpost client: it logs in to a sealpostd,
// sends messages, stays online to receive them, and shows the history. All
// the rules live in the client core (package client); this is its terminal
// front end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type command struct {
	name, args, help string
	run              func(a *app, args []string) error
}

var commands = []command{
	{"login", "--server URL --account NAME [--ca FILE] [--password-stdin]", "get a token and remember the server in the profile", cmdLogin},
	{"send", "NAME TEXT [--wait] [--timeout D]", "send a message (hands it to a running `sealpost run`, else submits it itself)", cmdSend},
	{"run", "[--json] [-v]", "stay online: register, receive, notify, send what is queued", cmdRun},
	{"history", "NAME", "the conversation with NAME: incoming left, outgoing right", cmdHistory},
	{"status", "ID", "where one message stands", cmdStatus},
	{"contacts", "", "accounts you have talked with, newest first, with unread counts", cmdContacts},
	{"settings", "[NAME VALUE]", "show the settings, or change one", cmdSettings},
}

// app is one invocation: its streams and the profile folder.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	home           string
	ctx            context.Context
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	global := flag.NewFlagSet("sealpost", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.StringVar(&a.home, "home", "", "profile folder (default $SEALPOST_HOME, else the user's config folder/sealpost)")
	global.Usage = func() { usage(stderr, global) }
	if err := global.Parse(args); err != nil {
		return 2
	}
	rest := global.Args()
	if len(rest) == 0 {
		usage(stderr, global)
		return 2
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == rest[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "sealpost: unknown command %q\n", rest[0])
		usage(stderr, global)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a.ctx = ctx
	if err := cmd.run(a, rest[1:]); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "sealpost %s: %v\nusage: sealpost %s %s\n", cmd.name, err, cmd.name, cmd.args)
			return 2
		}
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "sealpost %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

func usage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintf(w, "usage: sealpost [--home DIR] COMMAND [ARGS]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n            %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintf(w, "\nglobal flags:\n")
	global.PrintDefaults()
	fmt.Fprintf(w, "\nEach command has --help. Two accounts on one machine: give each its own --home.\n")
}

type usageError struct{ error }

// flags returns a flag set for a command with --home on it too, so that
// `sealpost send --home DIR ...` works as well as `sealpost --home DIR send`.
func (a *app) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("sealpost "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.StringVar(&a.home, "home", a.home, "profile folder (default $SEALPOST_HOME, else the user's config folder/sealpost)")
	return fs
}

// parse parses flags placed anywhere among the arguments (`send bob hi
// --wait`); after "--" everything is an argument, so a text may start
// with a dash.
func parse(fs *flag.FlagSet, args []string, want int, names string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		used := len(args) - len(rest)
		if used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if want >= 0 && len(pos) != want {
		if want == 0 {
			return nil, usageError{fmt.Errorf("takes no arguments, got %q", strings.Join(pos, " "))}
		}
		return nil, usageError{fmt.Errorf("want %s, got %d argument(s)", names, len(pos))}
	}
	return pos, nil
}

func (a *app) resolveHome() error {
	if a.home != "" {
		return nil
	}
	h, err := defaultHome()
	if err != nil {
		return err
	}
	a.home = h
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
