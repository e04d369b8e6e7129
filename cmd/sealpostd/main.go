// Command sealpostd is the Sealpost server: it stores sealed short messages
// and forwards them over SIP/TLS. Run it with no arguments to serve from
// ./sealpost-data; see `sealpostd help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/internal/server"
)

const usage = `sealpostd: the Sealpost secure short-message server.

Usage:
  sealpostd [flags]                         serve (the default)
  sealpostd user add NAME [--password-stdin]  create an account (prints a generated password)
  sealpostd user list                       list accounts
  sealpostd user del NAME                   delete an account and its waiting messages
  sealpostd user passwd NAME [--password-stdin]  set a new password (revokes its tokens)
  sealpostd messages list [--account NAME] [--status S] [--limit N]
                                            every message's fate, never its text
  sealpostd config example                  print a commented config file

Flags (any command):
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// run is main without the process: tests call it directly.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	var c config
	fs := flag.NewFlagSet("sealpostd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.bind(fs)
	configFile := fs.String("config", "", "config file of name = value lines (env SEALPOST_CONFIG)")
	passwordStdin := fs.Bool("password-stdin", false, "user add/passwd: read the password from standard input")
	account := fs.String("account", "", "messages list: only messages from or to this account")
	statusFilter := fs.String("status", "", "messages list: only this status (enqueued, delivered, expired)")
	limit := fs.Int("limit", 100, "messages list: at most this many")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	// Flags may stand before, between or after the command words.
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		words = append(words, args[0])
		args = args[1:]
	}
	if *configFile == "" {
		*configFile = getenv("SEALPOST_CONFIG")
	}
	if err := applyEnvAndFile(fs, *configFile, getenv); err != nil {
		fmt.Fprintln(stderr, "sealpostd:", err)
		return 2
	}
	log, err := newLogger(stderr, c.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, "sealpostd:", err)
		return 2
	}
	opts := c.serverOptions()
	opts.Log = log

	cmd := strings.Join(words, " ")
	switch {
	case cmd == "" || cmd == "serve":
		return serve(opts, stdout, stderr)
	case cmd == "help":
		fs.Usage()
		return 0
	case cmd == "config example":
		c.writeExample(stdout)
		return 0
	case len(words) >= 1 && words[0] == "user", len(words) >= 1 && words[0] == "messages":
		return manage(opts, words, stdin, stdout, stderr, *passwordStdin, *account, *statusFilter, *limit)
	default:
		fmt.Fprintf(stderr, "sealpostd: unknown command %q; see sealpostd help\n", cmd)
		return 2
	}
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func serve(opts options, stdout, stderr io.Writer) int {
	// Catch signals before anything starts, so an early Ctrl-C still shuts
	// down cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(opts)
	if err != nil {
		fmt.Fprintln(stderr, "sealpostd:", err)
		return 1
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		fmt.Fprintln(stderr, "sealpostd:", err)
		return 1
	}
	printNextSteps(stdout, srv, opts)
	<-ctx.Done()
	fmt.Fprintln(stdout, "sealpostd: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		fmt.Fprintln(stderr, "sealpostd: shutdown:", err)
		return 1
	}
	fmt.Fprintln(stdout, "sealpostd: stopped; every accepted message is stored")
	return 0
}

type options = server.Options

func printNextSteps(w io.Writer, srv *server.Server, o server.Options) {
	host := func(addr string) string {
		if strings.HasPrefix(addr, "[::]:") || strings.HasPrefix(addr, "0.0.0.0:") {
			return "localhost" + addr[strings.LastIndex(addr, ":"):]
		}
		return addr
	}
	fmt.Fprintf(w, `sealpostd is running (data folder %s, domain %s).
  HTTPS API     https://%s
  SIP over TLS  %s (sips: / transport=tls)
  admin         http://%s  (/metrics /healthz /readyz)
  certificate   %s

Next:
  sealpostd --data %s user add alice      # prints a generated password
  curl --cacert %s -u alice:PASSWORD -X POST https://%s/v1/tokens
`, o.DataDir, o.Domain, host(srv.HTTPSAddr()), host(srv.SIPAddr()), srv.AdminAddr(), srv.CertFile,
		o.DataDir, srv.CertFile, host(srv.HTTPSAddr()))
}
