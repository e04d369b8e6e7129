package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/server"
)

// config is the one source of truth for sealpostd's settings: every field
// is a flag, a SEALPOST_* environment variable (the flag name in upper case,
// dashes as underscores) and a line of the optional config file.
// Precedence: flag, then environment, then config file, then default.
type config struct {
	Data          string
	HTTPS         string
	SIP           string
	Admin         string
	Domain        string
	Cert          string
	Key           string
	Store         string
	MasterKey     string
	NATS          string
	Node          string
	ClusterSweep  time.Duration
	Expiry        time.Duration
	Retries       int
	RetryInterval time.Duration
	DrainTimeout  time.Duration
	MaxPending    int
	KeyPeriod     time.Duration
	TokenTTL      time.Duration
	FlowTimer     time.Duration
	LogLevel      string
	LogFormat     string
	// MinPasswordLength is checked by user add and user passwd.
	MinPasswordLength int
	security          securityConfig // config_security.go
}

type setting struct {
	name, help string
	bind       func(fs *flag.FlagSet)
}

func (c *config) settings() []setting {
	return append([]setting{
		{"data", "data folder: master key, certificate, embedded store", func(fs *flag.FlagSet) { fs.StringVar(&c.Data, "data", "./sealpost-data", "") }},
		{"https", "HTTPS API listen address", func(fs *flag.FlagSet) { fs.StringVar(&c.HTTPS, "https", ":8443", "") }},
		{"sip", "SIP over TLS listen address", func(fs *flag.FlagSet) { fs.StringVar(&c.SIP, "sip", ":5061", "") }},
		{"admin", "metrics and health listen address (off to disable)", func(fs *flag.FlagSet) { fs.StringVar(&c.Admin, "admin", "127.0.0.1:9090", "") }},
		{"domain", "SIP domain and digest realm (AOR sip:NAME@DOMAIN), recorded in the data folder at its first use (default localhost); later a different one is refused: see sealpostd help domain set", func(fs *flag.FlagSet) { fs.StringVar(&c.Domain, "domain", "", "") }},
		{"cert", "TLS certificate file (PEM); with --key. Default: self-signed in the data folder", func(fs *flag.FlagSet) { fs.StringVar(&c.Cert, "cert", "", "") }},
		{"key", "TLS private key file (PEM)", func(fs *flag.FlagSet) { fs.StringVar(&c.Key, "key", "", "") }},
		{"store", "message store: empty for the embedded SQLite in the data folder, sqlite:PATH, or postgres://USER[:PASSWORD]@HOST:PORT/DB for a PostgreSQL of your own (the master key and certificates stay in the data folder)", func(fs *flag.FlagSet) { fs.StringVar(&c.Store, "store", "", "") }},
		{"master-key", "file of the master key that wraps the data keys (created 0600 if missing); default DATA/master.key. Keep it out of the database's backups", func(fs *flag.FlagSet) { fs.StringVar(&c.MasterKey, "master-key", "", "") }},
		{"nats", "several nodes on one PostgreSQL --store: the NATS server(s) that carry their doorbells, nats://HOST:4222[,nats://…]; empty for a single node (see README, Running several nodes)", func(fs *flag.FlagSet) { fs.StringVar(&c.NATS, "nats", "", "") }},
		{"node", "with --nats: this node's name, unique among the nodes and the same across its restarts (at start it clears the bindings left under this name)", func(fs *flag.FlagSet) { fs.StringVar(&c.Node, "node", "", "") }},
		{"cluster-sweep", "with --nats: how often a node looks in the store for messages due to the devices it holds, so a doorbell lost while NATS is down costs at most this", func(fs *flag.FlagSet) { fs.DurationVar(&c.ClusterSweep, "cluster-sweep", 15*time.Second, "") }},
		{"expiry", "how long an undelivered message is kept", func(fs *flag.FlagSet) { fs.DurationVar(&c.Expiry, "expiry", 72*time.Hour, "") }},
		{"retries", "delivery retries of a message after its first attempt, across registrations and restarts; then it is parked until it expires (the sender gets a failure report)", func(fs *flag.FlagSet) { fs.IntVar(&c.Retries, "retries", 5, "") }},
		{"retry-interval", "time between those retries while the device stays registered (a new registration retries at once)", func(fs *flag.FlagSet) { fs.DurationVar(&c.RetryInterval, "retry-interval", 30*time.Second, "") }},
		{"drain-timeout", "on SIGTERM, how long deliveries already on the wire may take to be answered before the server stops", func(fs *flag.FlagSet) { fs.DurationVar(&c.DrainTimeout, "drain-timeout", 10*time.Second, "") }},
		{"max-pending", "messages that may wait for one recipient; more are refused with 429", func(fs *flag.FlagSet) { fs.IntVar(&c.MaxPending, "max-pending", 1000, "") }},
		{"key-period", "span of expiry times that share one data key (shredded together)", func(fs *flag.FlagSet) { fs.DurationVar(&c.KeyPeriod, "key-period", time.Hour, "") }},
		{"token-ttl", "lifetime of an API bearer token", func(fs *flag.FlagSet) { fs.DurationVar(&c.TokenTTL, "token-ttl", 30*24*time.Hour, "") }},
		{"flow-timer", "keepalive interval asked of phones that use RFC 5626 outbound (baresip)", func(fs *flag.FlagSet) { fs.DurationVar(&c.FlowTimer, "flow-timer", 60*time.Second, "") }},
		{"min-password-length", "user add and user passwd refuse a shorter password (characters)", func(fs *flag.FlagSet) { fs.IntVar(&c.MinPasswordLength, "min-password-length", 12, "") }},
		{"log-format", "text (key=value lines) or json (one object per line, for journald, Loki, Elasticsearch)", func(fs *flag.FlagSet) { fs.StringVar(&c.LogFormat, "log-format", "text", "") }},
		{"log-level", "debug, info, warn or error", func(fs *flag.FlagSet) { fs.StringVar(&c.LogLevel, "log-level", "info", "") }},
	}, c.security.settings()...)
}

// bind registers every setting on fs, with its help text.
func (c *config) bind(fs *flag.FlagSet) {
	for _, s := range c.settings() {
		s.bind(fs)
		fs.Lookup(s.name).Usage = s.help + " (env SEALPOST_" + envName(s.name) + ")"
	}
}

func envName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnvAndFile fills the settings not given as flags from the
// environment, then from the config file (if any). Command flags
// (--status, --limit …) are not settings and have no variable.
func (c *config) applyEnvAndFile(fs *flag.FlagSet, configFile string, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	fromFile := map[string]string{}
	if configFile != "" {
		f, err := os.Open(configFile)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		defer f.Close()
		fromFile, err = parseConfigFile(f)
		if err != nil {
			return fmt.Errorf("config file %s: %w", configFile, err)
		}
	}
	isSetting := map[string]bool{}
	for _, s := range c.settings() {
		isSetting[s.name] = true
	}
	for name := range fromFile {
		if !isSetting[name] {
			return fmt.Errorf("config file %s: unknown setting %q", configFile, name)
		}
	}
	for _, s := range c.settings() {
		f := fs.Lookup(s.name)
		if f == nil || given[s.name] {
			continue
		}
		v := getenv("SEALPOST_" + envName(s.name))
		if v == "" {
			v = fromFile[s.name]
		}
		if v == "" {
			continue
		}
		if err := f.Value.Set(v); err != nil {
			return fmt.Errorf("setting %s=%q: %v", s.name, v, err)
		}
	}
	return nil
}

// parseConfigFile reads "name = value" lines; # starts a comment.
func parseConfigFile(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want name = value", n)
		}
		out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return out, sc.Err()
}

// writeExample prints a commented config file with every setting at its
// default, generated from the settings table so it never goes stale.
func (c *config) writeExample(w io.Writer) {
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	var d config
	d.bind(fs)
	fmt.Fprintln(w, "# sealpostd configuration (sealpostd --config FILE). Flags and SEALPOST_* variables override it.")
	for _, s := range d.settings() {
		f := fs.Lookup(s.name)
		fmt.Fprintf(w, "\n# %s\n# %s = %s\n", f.Usage, s.name, f.DefValue)
	}
}

func (c *config) serverOptions() server.Options {
	o := server.Options{
		DataDir: c.Data, HTTPSAddr: c.HTTPS, SIPAddr: c.SIP, AdminAddr: c.Admin, Domain: c.Domain,
		CertFile: c.Cert, KeyFile: c.Key, StoreURL: c.Store, MasterKeyFile: c.MasterKey,
		Expiry: c.Expiry, Retries: c.Retries, RetryInterval: c.RetryInterval, DrainTimeout: c.DrainTimeout, MaxPending: c.MaxPending,
		KeyPeriod: c.KeyPeriod, TokenTTL: c.TokenTTL, FlowTimer: c.FlowTimer, MinPasswordLength: c.MinPasswordLength,
		Cluster: server.ClusterOptions{NATSURL: c.NATS, Node: c.Node, SweepInterval: c.ClusterSweep},
	}
	c.security.apply(&o)
	return o
}
