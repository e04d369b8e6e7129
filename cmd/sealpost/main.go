// Command sealpost is the Sealpost client: it logs in to a sealpostd,
// sends messages, stays online to receive them, and shows the history. All
// the rules live in the client core (package client); this is its terminal
// front end. Its commands are one table (commandTable); package cli turns
// it into help, usage errors and exit codes.
package main

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/sealpost/sealpost/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// app is one invocation: its streams and the profile folder.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	home           string // --home, or SEALPOST_HOME
	ctx            context.Context
}

// envHome names the profile folder when --home is not given.
const envHome = "SEALPOST_HOME"

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, ctx: ctx}
	return a.program().Run(args, stdout, stderr)
}

func (a *app) program() *cli.Program {
	return &cli.Program{
		Name:     "sealpost",
		Summary:  "sealpost: the Sealpost client, to send and receive secure short messages.",
		Commands: a.commandTable(),
		Globals: func(fs *flag.FlagSet) {
			fs.StringVar(&a.home, "home", "", "profile `DIR` (env "+envHome+"; default: the user's config folder/sealpost)")
		},
		GlobalsTitle: "Flags of every command:",
		Prepare:      a.prepare,
		Footer:       "Two accounts on one machine: give each its own --home.",
	}
}

// prepare takes --home from SEALPOST_HOME when the flag is not given.
func (a *app) prepare(_ *cli.Command, fs *flag.FlagSet) error {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "home" })
	if !given && a.getenv != nil {
		a.home = a.getenv(envHome)
	}
	return nil
}

// runner is a command's function; setup declares the command's flags on
// fs and returns its runner bound to them.
type runner = func(ctx context.Context, args []string) error

// command fills in a table row's Flags and Run from one setup function,
// so that a command's flags and the code that reads them stay together.
func (a *app) command(c cli.Command, setup func(fs *flag.FlagSet) runner) cli.Command {
	var run runner
	c.Flags = func(fs *flag.FlagSet) { run = setup(fs) }
	c.Run = func(args []string) error { return run(a.ctx, args) }
	return c
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
