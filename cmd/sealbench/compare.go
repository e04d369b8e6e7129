package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sealpost/sealpost/bench/kamailio"
	"github.com/sealpost/sealpost/internal/loadtest"
)

// compare runs the same scenarios against Kamailio (bench/kamailio) and a
// sealpostd, interleaved, and prints both with their ratio.
func compare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := loadtest.DefaultCompare()
	fs := flag.NewFlagSet("sealbench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		spawn, kamBin, kamCfg, scenarios, sources, cpuProfile string
		serverArgs                                            multiFlag
		asJSON                                                bool
		k                                                     = loadtest.Kamailio{SchemaDir: loadtest.KamailioSchemaDir}
	)
	fs.StringVar(&spawn, "spawn", "", "the sealpostd binary, started on a fresh data folder for each run (required)")
	fs.Var(&serverArgs, "server-arg", "extra argument for the spawned sealpostd (repeat for several)")
	fs.StringVar(&kamBin, "kamailio", "kamailio", "the kamailio binary (installed by .ci/install-kamailio.sh)")
	fs.StringVar(&kamCfg, "kamailio-config", "", "a folder holding kamailio.cfg and tls.cfg to use instead of the ones built in (bench/kamailio)")
	fs.StringVar(&k.SchemaDir, "kamailio-schema", k.SchemaDir, "folder of Kamailio's db_sqlite schema files, for msilo's database")
	fs.IntVar(&k.ShmMiB, "kamailio-shm", 1024, "Kamailio's shared memory, MiB (connections, TLS state and transactions live there)")
	fs.StringVar(&scenarios, "scenarios", strings.Join(c.Scenarios, ","), "comparison scenarios to run, in this order: "+strings.Join(loadtest.CompareScenarios, ", "))
	fs.IntVar(&c.Pairs, "pairs", c.Pairs, "runs of each server per scenario, interleaved (Kamailio, sealpostd, Kamailio, …)")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "sending phase of relay, latency and store")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "latency: offered msg/s over all senders, one both servers carry")
	fs.IntVar(&c.Recipients, "recipients", c.Recipients, "relay, latency, store: recipient devices (0: the scenario's default)")
	fs.IntVar(&c.Senders, "senders", c.Senders, "relay, latency, store: senders, each with one MESSAGE in flight (0: the scenario's default)")
	fs.IntVar(&c.Messages, "messages", c.Messages, "drain: messages stored for one offline account before it registers")
	fs.IntVar(&c.Devices, "devices", c.Devices, "memory: idle TLS devices registered")
	fs.DurationVar(&c.Settle, "settle", c.Settle, "memory: wait before each memory reading (sealpostd returns free memory once quiet, checking every 2 s)")
	fs.StringVar(&sources, "sources", strings.Join(c.Sources, ","), "local addresses to connect from (list or range)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "bound on each connect, request and answer")
	fs.BoolVar(&asJSON, "json", false, "print the comparison as JSON (with every run's result)")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of sealbench itself to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.Sources, err = parseSources(sources); err != nil {
		return fmt.Errorf("--sources: %w", err)
	}
	c.Scenarios = strings.Split(scenarios, ",")
	if err := c.Check(); err != nil {
		return err
	}
	if spawn == "" {
		return errors.New("compare needs --spawn PATH/TO/sealpostd")
	}
	if k.Bin, err = exec.LookPath(kamBin); err != nil {
		return fmt.Errorf("kamailio: %w (install it with .ci/install-kamailio.sh: Debian's kamailio, kamailio-tls-modules, kamailio-sqlite-modules)", err)
	}
	k.Config, k.TLSConfig = kamailio.Config, kamailio.TLSConfig
	if kamCfg != "" {
		if k.Config, err = os.ReadFile(filepath.Join(kamCfg, "kamailio.cfg")); err != nil {
			return err
		}
		if k.TLSConfig, err = os.ReadFile(filepath.Join(kamCfg, "tls.cfg")); err != nil {
			return err
		}
	}
	loadtest.RaiseOpenFiles()
	stopProfile, err := startCPUProfile(cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	const domain = "localhost"
	sides := [2]loadtest.Side{
		{Name: "Kamailio", Spawn: func(ctx context.Context, s *loadtest.Settings) (*loadtest.Spawned, error) {
			return k.Spawn(ctx, domain, stderr)
		}},
		{Name: "sealpostd", Spawn: func(ctx context.Context, s *loadtest.Settings) (*loadtest.Spawned, error) {
			sp, err := loadtest.Spawn(ctx, spawn, s, domain, serverArgs, stderr)
			if err == nil {
				fmt.Fprintf(stderr, "sealbench: sealpostd pid %d on %s (admin %s) in %s\n", sp.PID, sp.SIP, sp.Admin, sp.Dir)
			}
			return sp, err
		}},
	}
	cmp, err := loadtest.Compare(ctx, c, sides, stderr)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cmp)
	}
	cmp.WriteTable(stdout)
	return nil
}
