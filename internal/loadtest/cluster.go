package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// spawnCluster starts s.Nodes sealpostd on one fresh PostgreSQL database
// (s.Postgres) with NATS between them (s.NATS, or a nats-server the tool
// starts on a free loopback port), each node with its own data folder and
// ports. The first node ("a") is the returned Spawned: senders submit
// there. The recipient devices register on the last node (Target.DeviceSIP),
// so every message crosses nodes. All nodes share the first node's master
// key (the accounts' secrets are sealed with it) and its certificate (one
// CA file verifies them all).
func spawnCluster(ctx context.Context, bin string, s *Settings, domain string, extra []string, progress io.Writer) (*Spawned, error) {
	if s.Postgres == "" {
		return nil, errors.New("several nodes need --postgres: they share one database")
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
	storeURL, drop, err := freshDatabase(ctx, s.Postgres)
	if err != nil {
		return fail(err)
	}
	sp.dropStore = drop
	if _, err := provision(ctx, dir, storeURL, domain, s, s.Accounts(), sp.Password); err != nil {
		return fail(err)
	}
	fmt.Fprintf(progress, "sealbench: %d accounts provisioned for %d nodes in %v\n", s.Accounts(), s.Nodes, time.Since(t0).Round(time.Millisecond))
	natsURL := s.NATS
	if natsURL == "" {
		if sp.nats, err = startNATS(ctx); err != nil {
			return fail(err)
		}
		natsURL = sp.nats.url
	}
	shared := []string{"--store", storeURL, "--nats", natsURL, "--domain", domain}
	for i := range s.Nodes {
		node := sp
		if i > 0 {
			peerDir, err := os.MkdirTemp("", "sealbench-*")
			if err != nil {
				return fail(err)
			}
			node = &Spawned{Dir: peerDir}
			node.CAFile = sp.CAFile // the first node's, given with --cert
			sp.Peers = append(sp.Peers, node)
		}
		ports, err := freePorts(3)
		if err != nil {
			return fail(err)
		}
		node.HTTPS, node.SIP, node.Admin = ports[0], ports[1], ports[2]
		args := append([]string{"--data", node.Dir, "--https", node.HTTPS, "--sip", node.SIP, "--admin", node.Admin,
			"--node", string(rune('a' + i))}, shared...)
		args = append(args, connectionArgs(s.Accounts())...)
		if i > 0 {
			args = append(args, "--master-key", filepath.Join(dir, "master.key"),
				"--cert", filepath.Join(dir, "cert.pem"), "--key", filepath.Join(dir, "key.pem"))
		}
		args = append(args, extra...)
		if err := node.start(ctx, bin, args); err != nil {
			return fail(fmt.Errorf("node %c: %w", 'a'+i, err))
		}
		if i > 0 {
			sp.PeerPIDs = append(sp.PeerPIDs, node.PID)
		}
	}
	last := sp.Peers[len(sp.Peers)-1]
	sp.DeviceSIP = last.SIP
	fmt.Fprintf(progress, "sealbench: %d nodes on NATS %s: senders on node a (https %s, sip %s), devices on node %c (sip %s)\n",
		s.Nodes, natsURL, sp.HTTPS, sp.SIP, 'a'+len(sp.Peers), last.SIP)
	return sp, nil
}

// natsProcess is a nats-server started by the tool.
type natsProcess struct {
	url    string
	cmd    *exec.Cmd
	exited chan error
}

// startNATS starts nats-server (from PATH, or Debian's /usr/sbin) on a
// free loopback port and waits until it accepts connections.
func startNATS(ctx context.Context) (*natsProcess, error) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		bin = "/usr/sbin/nats-server"
		if _, err := os.Stat(bin); err != nil {
			return nil, errors.New("no nats-server in PATH or /usr/sbin (Debian's nats-server; .ci/install-nats.sh installs it), and no --nats URL given")
		}
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(ports[0])
	n := &natsProcess{url: "nats://" + ports[0], cmd: exec.Command(bin, "-a", host, "-p", port), exited: make(chan error, 1)}
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { n.exited <- n.cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ports[0], time.Second)
		if err == nil {
			c.Close()
			return n, nil
		}
		select {
		case err := <-n.exited:
			n.cmd = nil
			return nil, fmt.Errorf("%s exited before accepting connections on %s: %v", bin, ports[0], err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			n.stop()
			return nil, fmt.Errorf("%s not accepting connections on %s after 20 s", bin, ports[0])
		}
	}
}

// stop kills the nats-server (it keeps nothing worth a clean shutdown).
func (n *natsProcess) stop() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.exited
	n.cmd = nil
}
