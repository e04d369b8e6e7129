package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/internal/server"
)

// Provision creates the bench accounts prefix00000 … in the data folder of
// a server that is not running (SQLite allows a second writer, but a
// running server would have to wait for it), all with one password.
func Provision(ctx context.Context, dataDir, domain string, s *Settings, n int, password string) (int, error) {
	return provision(ctx, dataDir, "", domain, s, n, password)
}

// provision is Provision into the store storeURL (empty: the data folder's).
func provision(ctx context.Context, dataDir, storeURL, domain string, s *Settings, n int, password string) (int, error) {
	srv, err := server.New(server.Options{DataDir: dataDir, StoreURL: storeURL, Domain: domain})
	if err != nil {
		return 0, fmt.Errorf("opening the data folder %s: %w", dataDir, err)
	}
	defer srv.Close()
	names := make([]string, n)
	for i := range names {
		names[i] = s.AccountName(i)
	}
	return srv.AddUsers(ctx, names, password)
}

// NewPassword returns a random password for the bench accounts.
func NewPassword() string {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		panic("no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Spawned is a server started by the tool in a fresh folder: a sealpostd
// (Spawn) or a Kamailio (Kamailio.Spawn).
type Spawned struct {
	Target
	Dir string
	// dropStore drops the run's PostgreSQL database (Settings.Postgres).
	dropStore func() error
	cmd       *exec.Cmd
	log       *os.File
	exited    chan error // receives the result of cmd.Wait
	// Peers are the other nodes of a cluster (Settings.Nodes), stopped
	// before this one: they use its certificate and master key.
	Peers []*Spawned
	// nats is the nats-server the tool started for the cluster, if any.
	nats *natsProcess
}

// Spawn provisions a fresh data folder with the accounts s needs and
// starts the sealpostd binary bin on free loopback ports, with extra
// arguments after the tool's own. It returns once the server answers
// /readyz.
//
// With s.Nodes of 2 it starts two nodes on one fresh PostgreSQL database
// and a NATS between them (see spawnCluster).
func Spawn(ctx context.Context, bin string, s *Settings, domain string, extra []string, progress io.Writer) (*Spawned, error) {
	if s.Nodes > 1 {
		return spawnCluster(ctx, bin, s, domain, extra, progress)
	}
	dir, err := os.MkdirTemp("", "sealbench-*")
	if err != nil {
		return nil, err
	}
	sp := &Spawned{Dir: dir}
	sp.Password = NewPassword()
	sp.Domain = domain
	fail := func(err error) (*Spawned, error) {
		sp.Stop()
		return nil, err
	}
	t0 := time.Now()
	var storeURL string
	if s.Postgres != "" {
		storeURL, sp.dropStore, err = freshDatabase(ctx, s.Postgres)
		if err != nil {
			return fail(err)
		}
	}
	if _, err := provision(ctx, dir, storeURL, domain, s, s.Accounts(), sp.Password); err != nil {
		return fail(err)
	}
	fmt.Fprintf(progress, "sealbench: %d accounts provisioned in %s in %v\n", s.Accounts(), dir, time.Since(t0).Round(time.Millisecond))
	ports, err := freePorts(3)
	if err != nil {
		return fail(err)
	}
	sp.HTTPS, sp.SIP, sp.Admin = ports[0], ports[1], ports[2]
	args := []string{"--data", dir, "--https", sp.HTTPS, "--sip", sp.SIP, "--admin", sp.Admin, "--domain", domain}
	args = append(args, connectionArgs(s.Accounts())...)
	if storeURL != "" {
		args = append(args, "--store", storeURL)
	}
	if s.Scenario == "drain" {
		// One mailbox holds every message of the run.
		args = append(args, "--max-pending", strconv.Itoa(max(1000, s.Messages)))
	}
	args = append(args, extra...)
	if err := sp.start(ctx, bin, args); err != nil {
		return fail(err)
	}
	return sp, nil
}

// start runs bin with args, its output in the data folder's
// sealpostd.log, and returns once it answers /readyz on sp.Admin and has
// written its certificate (sp.CAFile, default cert.pem in the data folder).
func (sp *Spawned) start(ctx context.Context, bin string, args []string) error {
	var err error
	sp.log, err = os.OpenFile(filepath.Join(sp.Dir, "sealpostd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	sp.cmd = exec.Command(bin, args...)
	sp.cmd.Stdout, sp.cmd.Stderr = sp.log, sp.log
	if err := sp.cmd.Start(); err != nil {
		sp.cmd = nil
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	sp.PID = sp.cmd.Process.Pid
	if sp.CAFile == "" { // else given with --cert
		sp.CAFile = filepath.Join(sp.Dir, "cert.pem")
	}
	sp.exited = make(chan error, 1)
	go func() { sp.exited <- sp.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ready(ctx, "http://"+sp.Admin+"/readyz") {
			if _, err := os.Stat(sp.CAFile); err == nil {
				return nil
			}
		}
		select {
		case err := <-sp.exited:
			sp.cmd = nil
			return fmt.Errorf("%s exited before it was ready (%v); its log is %s", bin, err, sp.log.Name())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready on %s after 30 s; its log is %s", bin, sp.Admin, sp.log.Name())
		}
	}
}

func ready(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == 200
}

// Stop ends the server (SIGTERM, then SIGKILL after 15 s) and removes its
// data folder.
func (sp *Spawned) Stop() error {
	var err error
	for _, p := range sp.Peers {
		if e := p.Stop(); e != nil && err == nil {
			err = e
		}
	}
	sp.Peers = nil
	if sp.cmd != nil && sp.cmd.Process != nil {
		_ = sp.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-sp.exited:
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
				err = nil // ended by our SIGTERM without a handler
			}
		case <-time.After(15 * time.Second):
			_ = sp.cmd.Process.Kill()
			<-sp.exited
			err = fmt.Errorf("%s did not stop within 15 s of SIGTERM; killed", sp.cmd.Path)
		}
		sp.cmd = nil
	}
	if sp.log != nil {
		sp.log.Close()
	}
	if sp.Dir != "" {
		if e := os.RemoveAll(sp.Dir); e != nil && err == nil {
			err = e
		}
	}
	if sp.nats != nil {
		sp.nats.stop()
		sp.nats = nil
	}
	if sp.dropStore != nil {
		if e := sp.dropStore(); e != nil && err == nil {
			err = e
		}
		sp.dropStore = nil
	}
	return err
}

// freePorts returns n loopback addresses with ports the kernel just handed
// out and released; another process could take one before the server
// does, which the server then reports as a listen error.
func freePorts(n int) ([]string, error) {
	var out []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// connectionArgs lifts the server's per-address connection caps, sized for
// phones behind one NAT, to what a run opens from its few loopback
// addresses: each account holds at most one SIP and one HTTPS connection.
func connectionArgs(accounts int) []string {
	n := strconv.Itoa(accounts + 64)
	return []string{"--max-connections-per-address-sip", n, "--max-connections-per-address-https", n}
}
