// Command sealbench measures a sealpostd over real TLS on loopback: it
// simulates phones (SIP over TLS with digest, keepalives, a 200 for every
// MESSAGE) and senders (HTTPS or SIP MESSAGE), runs one scenario, and prints
// one result table (or JSON). See BENCHMARKS.md for the commands behind the
// published figures.
//
//	sealbench SCENARIO --spawn ./sealpostd [--runs 3] [flags]
//	sealbench SCENARIO --https ADDR --sip ADDR --ca FILE --password-file FILE [--admin ADDR] [--pid N] [flags]
//	sealbench setup --data DIR --accounts N [--password-file FILE]
//	sealbench compare --spawn ./sealpostd [--pairs 3] [flags]
//
// With --spawn each run gets a fresh sealpostd on a fresh data folder with
// the accounts provisioned; otherwise the server must be running and its
// accounts made with "sealbench setup" before it started.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/internal/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sealbench:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

const usage = `usage:
  sealbench SCENARIO --spawn PATH/TO/sealpostd [--runs N] [flags]
  sealbench relay --spawn PATH/TO/sealpostd --postgres postgres://… --nodes 2 [--nats nats://…] [flags]
      two nodes on one PostgreSQL with NATS between them: submissions on one, devices on the other
  sealbench SCENARIO --https ADDR --sip ADDR --ca FILE --password-file FILE [--admin ADDR] [--pid N] [flags]
  sealbench setup --data DIR --accounts N [--domain NAME] [--password-file FILE]
  sealbench compare --spawn PATH/TO/sealpostd [--pairs 3] [--scenarios relay,latency,store,drain,memory] [flags]
      the same scenarios over SIP/TLS against Kamailio (bench/kamailio) and sealpostd, interleaved: both medians and the ratio
  sealbench floor --cert FILE --key FILE [--devices 19000]
      a bare Go TLS server answering keepalives on the same idle devices: the floor for connections

scenarios: relay, store, drain, connections, mixed
  relay        recipients online: submit → delivered end to end
  store        recipients offline: submit → 202
  drain        --messages stored for one account, then it registers: until the last is answered
  connections  devices registered and idle with keepalives: memory per device, CPU at rest
  mixed        most devices idle, some sending, some going offline and back

"sealbench SCENARIO --help" lists the flags and their defaults for that scenario.`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "setup":
		return setup(ctx, args[1:], stdout, stderr)
	case "floor":
		return floor(ctx, args[1:], stdout, stderr)
	case "compare":
		return compare(ctx, args[1:], stdout, stderr)
	case "floor-server": // the child process of floor
		if len(args) != 4 {
			return errors.New("floor-server ADDR CERT KEY")
		}
		return loadtest.ServeFloor(ctx, args[1], args[2], args[3], stdout)
	}
	scenario := args[0]
	s := loadtest.Defaults(scenario)
	fs := flag.NewFlagSet("sealbench "+scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		t            loadtest.Target
		spawn        string
		serverArgs   multiFlag
		runs         int
		asJSON       bool
		passwordFile string
		sources      string
		steps        string
		cpuProfile   string
	)
	fs.StringVar(&spawn, "spawn", "", "start this sealpostd binary on a fresh data folder for each run (instead of --https/--sip/--ca)")
	fs.Var(&serverArgs, "server-arg", "extra argument for the spawned sealpostd (repeat for several)")
	fs.StringVar(&s.Postgres, "postgres", "", "with --spawn: give each run's sealpostd a fresh database on this PostgreSQL as its --store (`postgres://USER@HOST:PORT/DB` of a database to connect to, as a role that may create databases); default the embedded SQLite store")
	fs.IntVar(&s.Nodes, "nodes", 1, "relay with --spawn and --postgres: 2 starts two sealpostd on one fresh database with NATS between them; senders submit on one, the recipient devices register on the other")
	fs.StringVar(&s.NATS, "nats", "", "with --nodes 2: the NATS the nodes use (`nats://HOST:PORT`); default a nats-server the tool starts on a free loopback port")
	fs.IntVar(&runs, "runs", 1, "number of runs; with several, a table of median and spread follows (use with --spawn: each run needs a fresh server)")
	fs.BoolVar(&asJSON, "json", false, "print the results as JSON instead of tables")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of sealbench itself to this file (go tool pprof), to see what the tool costs")
	fs.StringVar(&t.HTTPS, "https", "", "HTTPS API address of a running server (host:port, loopback)")
	fs.StringVar(&t.SIP, "sip", "", "SIP over TLS address of a running server (host:port, loopback)")
	fs.StringVar(&t.Admin, "admin", "", "admin address of a running server, to ask for a GC before memory readings (optional)")
	fs.StringVar(&t.CAFile, "ca", "", "PEM file that verifies the server certificate (the data folder's cert.pem for a self-signed server)")
	fs.StringVar(&t.Domain, "domain", "localhost", "SIP domain of the server")
	fs.IntVar(&t.PID, "pid", 0, "server process id for /proc figures (default: the process listening on --sip)")
	fs.StringVar(&passwordFile, "password-file", "sealbench.password", "file holding the password of the bench accounts (written by sealbench setup)")
	fs.StringVar(&s.Via, "via", s.Via, "how senders submit: https or sip")
	fs.IntVar(&s.Recipients, "recipients", s.Recipients, "recipient accounts: online devices (relay, mixed) or offline mailboxes (store)")
	fs.IntVar(&s.Senders, "senders", s.Senders, "sending accounts, each with one connection and one message in flight")
	fs.Float64Var(&s.Rate, "rate", s.Rate, "offered messages per second over all senders; 0 sends as fast as answers come")
	fs.DurationVar(&s.Duration, "duration", s.Duration, "how long senders send")
	fs.IntVar(&s.Messages, "messages", s.Messages, "at most this many messages (drain: the number stored); 0 for no bound")
	fs.IntVar(&s.TextChars, "text", s.TextChars, "characters per message")
	fs.DurationVar(&s.Keepalive, "keepalive", s.Keepalive, "CRLF keepalive interval of each device; 0 for none")
	fs.StringVar(&steps, "steps", joinInts(s.Steps), "connections: device counts at which to read memory, increasing (0 is always read first)")
	fs.DurationVar(&s.Idle, "idle", s.Idle, "connections: how long to measure CPU at rest at the last step")
	fs.DurationVar(&s.Settle, "settle", s.Settle, "connections: wait after registering before reading memory (the server returns free memory once quiet, checking every 2 s)")
	fs.BoolVar(&s.ForceGC, "gc", s.ForceGC, "connections: ask the server (admin pprof) for a GC before each settle")
	fs.Float64Var(&s.Churn, "churn", s.Churn, "mixed: devices per second that go offline and come back")
	fs.DurationVar(&s.Offline, "offline", s.Offline, "mixed: how long a device stays offline")
	fs.DurationVar(&s.Grace, "grace", s.Grace, "how long to wait for deliveries after sending stops (drain: for the whole drain)")
	fs.StringVar(&sources, "sources", strings.Join(s.Sources, ","), "local addresses to connect from, round robin: a list (127.0.0.1,127.0.0.2) or a range (127.0.0.1-127.0.0.8); each gives ~28,000 connections")
	fs.IntVar(&s.Concurrency, "concurrency", s.Concurrency, "registrations and logins in parallel")
	fs.DurationVar(&s.Timeout, "timeout", s.Timeout, "bound on each connect, request and answer")
	fs.StringVar(&s.Prefix, "prefix", s.Prefix, "bench account names: PREFIX00000, PREFIX00001, …")
	fs.BoolVar(&s.Reports, "reports", s.Reports, "devices ask for delivery reports at REGISTER")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if s.Steps, err = parseInts(steps); err != nil {
		return fmt.Errorf("--steps: %w", err)
	}
	if s.Sources, err = parseSources(sources); err != nil {
		return fmt.Errorf("--sources: %w", err)
	}
	if err := s.Check(); err != nil {
		return err
	}
	if s.Nodes > 1 && spawn == "" {
		return errors.New("--nodes 2 needs --spawn: the tool starts the nodes")
	}
	if runs < 1 || runs > 20 {
		return fmt.Errorf("--runs %d: want 1 to 20", runs)
	}
	loadtest.RaiseOpenFiles()
	if spawn == "" {
		if t.HTTPS == "" || t.SIP == "" || t.CAFile == "" {
			return errors.New("give --spawn PATH/TO/sealpostd, or the running server's --https, --sip and --ca")
		}
		pw, err := os.ReadFile(passwordFile)
		if err != nil {
			return fmt.Errorf("reading the bench password (made by sealbench setup): %w", err)
		}
		t.Password = strings.TrimSpace(string(pw))
	}

	stopProfile, err := startCPUProfile(cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()

	var results []loadtest.Result
	for i := 0; i < runs; i++ {
		target := t
		var sp *loadtest.Spawned
		if spawn != "" {
			if sp, err = loadtest.Spawn(ctx, spawn, &s, t.Domain, serverArgs, stderr); err != nil {
				return err
			}
			target = sp.Target
			fmt.Fprintf(stderr, "sealbench: run %d of %d: %s pid %d on %s (https %s, sip %s)\n", i+1, runs, spawn, target.PID, sp.Dir, target.HTTPS, target.SIP)
			for _, p := range sp.Peers {
				fmt.Fprintf(stderr, "sealbench: run %d of %d: peer node pid %d on %s (https %s, sip %s)\n", i+1, runs, p.PID, p.Dir, p.HTTPS, p.SIP)
			}
		}
		res, err := loadtest.Run(ctx, target, s, stderr)
		if sp != nil {
			if stopErr := sp.Stop(); stopErr != nil {
				fmt.Fprintf(stderr, "sealbench: stopping the server: %v\n", stopErr)
			}
		}
		if err != nil {
			return err
		}
		results = append(results, *res)
		if !asJSON {
			res.WriteTable(stdout)
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	if runs > 1 {
		loadtest.WriteSummary(stdout, results)
	}
	return nil
}

// floor measures a bare Go TLS server with the same idle devices, for
// comparison with the connections scenario.
func floor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sealbench floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cert := fs.String("cert", "", "certificate (PEM) for the bare server, e.g. a sealpostd data folder's cert.pem")
	key := fs.String("key", "", "its key (PEM), e.g. the data folder's key.pem")
	devices := fs.Int("devices", 19000, "idle TLS connections")
	keepalive := fs.Duration("keepalive", 60*time.Second, "CRLF ping interval of each connection")
	settle := fs.Duration("settle", 30*time.Second, "wait after connecting before measuring")
	idle := fs.Duration("idle", 60*time.Second, "how long to measure CPU at rest")
	sources := fs.String("sources", "127.0.0.1", "local addresses to connect from (list or range, as for the scenarios)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cert == "" || *key == "" {
		return errors.New("floor needs --cert and --key")
	}
	srcs, err := parseSources(*sources)
	if err != nil {
		return fmt.Errorf("--sources: %w", err)
	}
	loadtest.RaiseOpenFiles()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	r, err := loadtest.Floor(ctx, []string{self, "floor-server", "127.0.0.1:0", *cert, *key}, *cert, *devices, *keepalive, *settle, *idle, srcs, stderr)
	if err != nil {
		return err
	}
	r.WriteTable(stdout)
	return nil
}

// setup provisions bench accounts in the data folder of a server that is
// not running yet.
func setup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sealbench setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "data folder of the server (created if missing)")
	n := fs.Int("accounts", 0, "number of bench accounts to create")
	domain := fs.String("domain", "localhost", "SIP domain the server will run with (the SIP digest secrets depend on it)")
	prefix := fs.String("prefix", "sb", "account names: PREFIX00000, PREFIX00001, …")
	passwordFile := fs.String("password-file", "sealbench.password", "file holding the accounts' password: read if it exists, else created (0600) with a random one")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" || *n < 1 {
		return errors.New("setup needs --data DIR and --accounts N")
	}
	pw, err := os.ReadFile(*passwordFile)
	password := strings.TrimSpace(string(pw))
	switch {
	case err == nil && password == "":
		return fmt.Errorf("%s is empty", *passwordFile)
	case errors.Is(err, os.ErrNotExist):
		password = loadtest.NewPassword()
		if err := os.WriteFile(*passwordFile, []byte(password+"\n"), 0o600); err != nil {
			return fmt.Errorf("writing the password file: %w", err)
		}
	case err != nil:
		return fmt.Errorf("reading the password file: %w", err)
	}
	s := loadtest.Settings{Prefix: *prefix}
	t0 := time.Now()
	created, err := loadtest.Provision(ctx, *data, *domain, &s, *n, password)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d accounts created (%d existed) in %v: %s … %s, password in %s\n",
		created, *n-created, time.Since(t0).Round(time.Millisecond), s.AccountName(0), s.AccountName(*n-1), *passwordFile)
	return nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func parseInts(v string) ([]int, error) {
	if v == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// parseSources reads "a,b,c" or "first-last" (IPv4, last octet varying).
func parseSources(v string) ([]string, error) {
	if first, last, ok := strings.Cut(v, "-"); ok {
		a, b := net.ParseIP(first).To4(), net.ParseIP(last).To4()
		if a == nil || b == nil || a[0] != b[0] || a[1] != b[1] || a[2] != b[2] || a[3] > b[3] {
			return nil, fmt.Errorf("%q: a range is first-last of IPv4 addresses that differ in the last number only", v)
		}
		var out []string
		for i := int(a[3]); i <= int(b[3]); i++ {
			out = append(out, net.IPv4(a[0], a[1], a[2], byte(i)).String())
		}
		return out, nil
	}
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out, nil
}

// startCPUProfile writes a CPU profile of sealbench itself to path until
// the returned stop is called; an empty path profiles nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
