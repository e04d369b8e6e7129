// Command sealpostd is the Sealpost server: it stores sealed short messages
// and forwards them over SIP/TLS. Run it with no arguments to serve from
// ./sealpost-data; see `sealpostd help`. Its commands are the table in
// commands.go.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/sealpost/sealpost/internal/cli"
	"github.com/sealpost/sealpost/internal/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// app is one invocation of sealpostd: its streams, its environment and
// the settings, filled in by flags, SEALPOST_* variables and --config.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	cfg        config
	configFile string
	log        *slog.Logger

	// Command flags, bound by the command table.
	passwordStdin bool
	account       string
	status        string
	limit         int
	copyFrom      string // store copy --from
	copyTo        string // store copy --to
}

// run is main without the process: tests call it directly.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	return a.program().Run(args, stdout, stderr)
}

func (a *app) program() *cli.Program {
	return &cli.Program{
		Name:     "sealpostd",
		Summary:  "sealpostd: the Sealpost secure short-message server.",
		Commands: a.commands(),
		Default:  "serve",
		Globals: func(fs *flag.FlagSet) {
			a.cfg.bind(fs)
			fs.StringVar(&a.configFile, "config", "", "config file of name = value lines (env SEALPOST_CONFIG)")
		},
		GlobalsTitle: "Settings (every command takes them; each also from its SEALPOST_* variable or a line of the --config file; a flag wins over the variable, the variable over the file):",
		Prepare:      a.prepare,
		Footer:       "sealpostd config example prints a config file with every setting. README.md says how to run it as a service.",
	}
}

// prepare fills the settings not given as flags from the environment and
// the config file, and makes the logger.
func (a *app) prepare(_ *cli.Command, fs *flag.FlagSet) error {
	if a.configFile == "" {
		a.configFile = a.getenv("SEALPOST_CONFIG")
	}
	if err := a.cfg.applyEnvAndFile(fs, a.configFile, a.getenv); err != nil {
		return err
	}
	log, err := newLogger(a.stderr, a.cfg.LogLevel, a.cfg.LogFormat)
	if err != nil {
		return err
	}
	a.log = log
	return nil
}

// newLogger returns the logger of --log-level and --log-format. Lines name
// ids and accounts, never a message's text, a password or a token.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// options returns the server options of the settings.
func (a *app) options() server.Options {
	o := a.cfg.serverOptions()
	o.Log = a.log
	return o
}
