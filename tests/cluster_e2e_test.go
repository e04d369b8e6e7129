package tests

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/loginguard"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/internal/store/postgres/pgtest"
	"github.com/sealpost/sealpost/message"
)

// The tests of several nodes run three in-process sealpostd (each with its
// own listeners and data folder, sharing the master key as an operator
// would) on the real PostgreSQL, with a real nats-server started here. All
// nodes share one fake clock and the cluster sweep is clusterSweep: a message
// delivered without advancing the clock was delivered by a doorbell, and
// one delivered only after an Advance was delivered by the sweep.

const natsBinary = "/usr/sbin/nats-server"

// natsServer is a nats-server process on a loopback port of its own.
type natsServer struct {
	t    *testing.T
	port int
	mu   sync.Mutex
	cmd  *exec.Cmd
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	if _, err := os.Stat(natsBinary); err != nil {
		t.Skipf("no %s (Debian's nats-server; .ci/install-nats.sh installs it): %v", natsBinary, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	n := &natsServer{t: t, port: port}
	n.start()
	t.Cleanup(n.kill)
	return n
}

func (n *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// start runs nats-server and waits until it accepts connections.
func (n *natsServer) start() {
	n.t.Helper()
	cmd := exec.Command(natsBinary, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port))
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("starting nats-server: %v", err)
	}
	n.mu.Lock()
	n.cmd = cmd
	n.mu.Unlock()
	servertest.CheckFor(n.t, 20*time.Second, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.port))
		if err != nil {
			return fmt.Errorf("nats-server not accepting yet: %v", err)
		}
		c.Close()
		return nil
	})
}

// kill stops nats-server with SIGKILL (idempotent).
func (n *natsServer) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
	n.cmd = nil
}

// clusterSweep is the nodes' sweep interval: shorter than a registration
// (600 s), so advancing the clock by it keeps the devices registered.
const clusterSweep = 5 * time.Minute

// nodes is a cluster of sealpostd on one database.
type nodes struct {
	nats      *natsServer
	clock     *clock.Fake // nil: the real clock
	by        map[string]*servertest.Server
	token     string // alice's, valid on every node (tokens are in the store)
	db        string // the store's URL
	masterKey string // the master key file every node shares
}

func startNodes(t *testing.T, names ...string) *nodes {
	t.Helper()
	return startNodesOn(t, clock.NewFake(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)), names...)
}

// startNodesOn starts the nodes on clk (nil: the real clock, for a test
// that runs a node as a process beside them).
func startNodesOn(t *testing.T, clk *clock.Fake, names ...string) *nodes {
	t.Helper()
	c := &nodes{nats: startNATS(t), clock: clk, by: map[string]*servertest.Server{}}
	c.db = pgtest.NewDatabase(t)
	c.masterKey = filepath.Join(t.TempDir(), "master.key")
	for _, name := range names {
		c.by[name] = servertest.Start(t, servertest.WithOptions(func(o *server.Options) {
			o.StoreURL = c.db
			o.MasterKeyFile = c.masterKey
			if clk != nil {
				o.Clock = clk
			}
			o.SweepInterval = time.Hour
			o.Cluster = server.ClusterOptions{NATSURL: c.nats.url(), Node: name, SweepInterval: clusterSweep}
		}))
	}
	first := c.by[names[0]]
	first.AddUser(t, "alice", "alice-password")
	first.AddUser(t, "bob.smith", "bob-password") // a '.' in the name: subjects use an id
	c.token = first.Token(t, "alice", "alice-password")
	return c
}

// submitN submits n messages from alice to bob.smith on node s and returns
// the ids acknowledged (202).
func (c *nodes) submitN(t *testing.T, s *servertest.Server, n int, prefix string) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := message.NewID()
		code, _, e := submit(t, s, c.token, id, "bob.smith", fmt.Sprintf("%s %02d", prefix, i))
		if code != 202 {
			t.Fatalf("submit %s %d: %d %+v", prefix, i, code, e)
		}
		ids = append(ids, id)
	}
	return ids
}

// receivedIDs counts each id the devices received.
func receivedIDs(devices ...*servertest.Device) map[string]int {
	got := map[string]int{}
	for _, d := range devices {
		for _, r := range d.Received() {
			got[r.ID]++
		}
	}
	return got
}

// waitAllReceived waits until every id was received by one of the devices.
func waitAllReceived(t *testing.T, ids []string, devices ...*servertest.Device) {
	t.Helper()
	servertest.CheckFor(t, 20*time.Second, func() error {
		got := receivedIDs(devices...)
		for _, id := range ids {
			if got[id] == 0 {
				return fmt.Errorf("%d of %d acknowledged messages received; %s missing", len(got), len(ids), id)
			}
		}
		return nil
	})
}

// resends is how many receptions beyond the first there were.
func resends(got map[string]int) int {
	n := 0
	for _, c := range got {
		n += c - 1
	}
	return n
}

func TestClusterCrossNodeDeliveryAndReports(t *testing.T) {
	c := startNodes(t, "a", "b", "c")
	bob := c.by["b"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, bob, false)
	alice := c.by["c"].NewDevice(t, "alice", "alice-password")
	mustRegister(t, alice, true) // asks for delivery reports, on another node again
	ids := c.submitN(t, c.by["a"], 20, "cross")
	// No clock advance: the doorbell did it, not the sweep.
	waitAllReceived(t, ids, bob)
	if v := metric(t, c.by["b"], "sealpost_cluster_doorbells_answered_total"); v < 1 {
		t.Errorf("node b answered %v doorbells", v)
	}
	if v := metric(t, c.by["a"], "sealpost_cluster_doorbells_rung_total"); v < float64(len(ids)) {
		t.Errorf("node a rang %v doorbells for %d messages", v, len(ids))
	}
	// The doorbells carried the messages: b delivered them without
	// listing the store.
	if v := metric(t, c.by["b"], "sealpost_cluster_messages_handed_total"); v < 1 {
		t.Errorf("node b was handed %v messages by the doorbells", v)
	}
	// Exactly once each (the order on the wire is checked by the
	// single-node tests; this device records in handler order).
	got := receivedIDs(bob)
	if len(got) != len(ids) || resends(got) != 0 {
		t.Errorf("bob received %d distinct messages with %d re-sends, want %d once each", len(got), resends(got), len(ids))
	}
	// The reports cross nodes the same way: bob's node marks, alice's
	// node forwards.
	servertest.CheckFor(t, 20*time.Second, func() error {
		seen := map[string]bool{}
		for _, r := range alice.Reports() {
			if r.Status != api.IMDNDelivered {
				return fmt.Errorf("report %+v", r)
			}
			seen[r.MessageID] = true
		}
		if len(seen) != len(ids) {
			return fmt.Errorf("alice has reports for %d of %d messages", len(seen), len(ids))
		}
		return nil
	})
	if n := len(alice.Reports()); n != len(ids) {
		t.Errorf("alice got %d reports for %d messages", n, len(ids))
	}
	// Any node answers for any message.
	for _, s := range c.by {
		if _, st := status(t, s, c.token, ids[0]); st.Status != "delivered" {
			t.Errorf("status on another node: %+v", st)
		}
	}
}

func TestClusterDeviceMovesToAnotherNode(t *testing.T) {
	c := startNodes(t, "a", "b", "c")
	onB := c.by["b"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, onB, false)
	before := c.submitN(t, c.by["a"], 5, "before")
	waitAllReceived(t, before, onB)

	// The device moves to C (a new connection through the balancer).
	onC := c.by["c"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, onC, false)
	servertest.CheckFor(t, 20*time.Second, func() error {
		if _, ok := c.by["b"].Registrar().Lookup("bob.smith"); ok {
			return fmt.Errorf("B still holds bob.smith's old connection")
		}
		return nil
	})
	if v := metric(t, c.by["b"], "sealpost_cluster_moved_connections_dropped_total"); v != 1 {
		t.Errorf("node b dropped %v moved connections, want 1", v)
	}
	after := c.submitN(t, c.by["a"], 5, "after")
	waitAllReceived(t, after, onC)

	gotB, gotC := receivedIDs(onB), receivedIDs(onC)
	for id := range gotB {
		if gotC[id] > 0 {
			t.Errorf("message %s delivered by both B and C", id)
		}
	}
	for _, id := range after {
		if gotB[id] > 0 {
			t.Errorf("message %s, submitted after the move, went to the old connection", id)
		}
	}
	if n := resends(receivedIDs(onB, onC)); n != 0 {
		t.Errorf("%d re-sends on a clean move", n)
	}
}

func TestClusterNodeDeathLosesNothing(t *testing.T) {
	c := startNodes(t, "a", "b", "c")
	onB := c.by["b"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, onB, false)
	first := c.submitN(t, c.by["a"], 30, "first")
	// Kill B while messages are in flight (some received, maybe not all
	// marked).
	servertest.CheckFor(t, 20*time.Second, func() error {
		if n := len(onB.Received()); n < 5 {
			return fmt.Errorf("bob received %d so far", n)
		}
		return nil
	})
	b := c.by["b"]
	b.Crash()
	b.Server = nil // dead: the test's cleanup has nothing to stop
	onB.Close()
	// Messages accepted while bob's node is dead wait in the store.
	more := c.submitN(t, c.by["a"], 10, "while dead")
	onC := c.by["c"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, onC, false)
	all := append(slices.Clone(first), more...)
	waitAllReceived(t, all, onB, onC)
	got := receivedIDs(onB, onC)
	n := resends(got)
	t.Logf("node death: %d acknowledged messages, all delivered, %d re-sent", len(all), n)
	// Only what was on the wire when B died may come twice: at most the
	// messages B had taken from the store.
	if n > len(first) {
		t.Errorf("%d re-sends, more than the %d messages B could have had in flight", n, len(first))
	}
	for _, id := range all {
		waitStatus(t, c.by["c"], c.token, id, "delivered")
	}
}

func TestClusterNATSOutageDeliversOnTheSweep(t *testing.T) {
	c := startNodes(t, "a", "b", "c")
	bob := c.by["b"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, bob, false)
	c.nats.kill()
	servertest.CheckFor(t, 20*time.Second, func() error {
		for name, s := range c.by {
			if s.Cluster().Connected() {
				return fmt.Errorf("node %s still connected to the killed nats-server", name)
			}
		}
		return nil
	})
	if v := metric(t, c.by["b"], "sealpost_cluster_nats_connected"); v != 0 {
		t.Errorf("sealpost_cluster_nats_connected = %v during the outage", v)
	}
	during := c.submitN(t, c.by["a"], 5, "outage")
	// The doorbells are lost or held; the sweep finds the messages.
	c.clock.Advance(clusterSweep)
	waitAllReceived(t, during, bob)

	c.nats.start()
	servertest.CheckFor(t, 30*time.Second, func() error {
		for name, s := range c.by {
			if !s.Cluster().Connected() {
				return fmt.Errorf("node %s not reconnected to NATS yet", name)
			}
		}
		return nil
	})
	if v := metric(t, c.by["b"], "sealpost_cluster_nats_connected"); v != 1 {
		t.Errorf("sealpost_cluster_nats_connected = %v after NATS came back", v)
	}
	// Doorbells again: delivered without a sweep.
	after := c.submitN(t, c.by["a"], 5, "back")
	waitAllReceived(t, after, bob)
	all := append(slices.Clone(during), after...)
	if n := resends(receivedIDs(bob)); n != 0 {
		t.Errorf("%d re-sends of %d messages", n, len(all))
	}
}

func TestClusterExpiryHappensOnce(t *testing.T) {
	c := startNodes(t, "a", "b", "c")
	ids := c.submitN(t, c.by["a"], 3, "never read") // bob.smith never registers
	// Every node's expiry sweep runs; one expires and queues the reports.
	c.clock.Advance(72*time.Hour + time.Minute)
	for _, id := range ids {
		waitStatus(t, c.by["b"], c.token, id, "expired")
	}
	alice := c.by["c"].NewDevice(t, "alice", "alice-password")
	mustRegister(t, alice, true)
	servertest.CheckFor(t, 20*time.Second, func() error {
		if n := len(alice.Reports()); n < len(ids) {
			return fmt.Errorf("alice has %d failure reports of %d", n, len(ids))
		}
		return nil
	})
	for name, s := range c.by {
		s.Queue().Sweep() // and once more each: nothing new
		waitIdle(t, s, "alice")
		_ = name
	}
	seen := map[string]int{}
	for _, r := range alice.Reports() {
		if r.Status != api.IMDNFailed {
			t.Errorf("report %+v, want failed", r)
		}
		seen[r.MessageID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("message %s: %d failure reports, want 1", id, seen[id])
		}
	}
}

// TestClusterCrossNodeLatency logs the time from a submission's 202 to the
// device's receipt, one message at a time, with the device on the
// submitting node and on another node (one NATS hop more). It asserts that
// every message arrives, never a time: the machine may be busy.
func TestClusterCrossNodeLatency(t *testing.T) {
	c := startNodes(t, "a", "b")
	median := func(device *servertest.Device) time.Duration {
		var took []time.Duration
		for i := range 15 {
			before := len(device.Received())
			start := time.Now()
			ids := c.submitN(t, c.by["a"], 1, fmt.Sprintf("latency %d", i))
			servertest.CheckFor(t, 20*time.Second, func() error {
				if len(device.Received()) == before {
					return fmt.Errorf("message %s not received", ids[0])
				}
				return nil
			})
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		return took[len(took)/2]
	}
	onA := c.by["a"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, onA, false)
	same := median(onA)
	onB := c.by["b"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, onB, false)
	servertest.CheckFor(t, 20*time.Second, func() error {
		if _, ok := c.by["a"].Registrar().Lookup("bob.smith"); ok {
			return fmt.Errorf("A still holds bob.smith's old connection")
		}
		return nil
	})
	cross := median(onB)
	t.Logf("submit → received, median of 15 (including the submission's round trip): same node %v, across nodes %v", same.Round(time.Microsecond), cross.Round(time.Microsecond))
}

// TestClusterKill9OfANodeProcess: node B is a real sealpostd process,
// killed with SIGKILL while it delivers; the device registers again on C
// and every acknowledged message arrives.
func TestClusterKill9OfANodeProcess(t *testing.T) {
	bin := sealpostdBinary(t)
	c := startNodesOn(t, nil, "a", "c")
	dir := t.TempDir()
	binaryStores.Store(dir, c.db) // the PostgreSQL pass of binaryEnv keeps the shared store
	t.Setenv("SEALPOST_STORE", c.db)
	t.Setenv("SEALPOST_MASTER_KEY", c.masterKey)
	t.Setenv("SEALPOST_NATS", c.nats.url())
	t.Setenv("SEALPOST_NODE", "b")
	t.Setenv("SEALPOST_CLUSTER_SWEEP", clusterSweep.String())
	b := startBinary(t, bin, dir)
	onB := b.srv.NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, onB, false)
	first := c.submitN(t, c.by["a"], 30, "first")
	servertest.CheckFor(t, 20*time.Second, func() error {
		if n := len(onB.Received()); n < 5 {
			return fmt.Errorf("bob received %d so far", n)
		}
		return nil
	})
	b.kill()
	onB.Close()
	more := c.submitN(t, c.by["a"], 10, "after the kill")
	onC := c.by["c"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, onC, false)
	all := append(slices.Clone(first), more...)
	waitAllReceived(t, all, onB, onC)
	n := resends(receivedIDs(onB, onC))
	t.Logf("kill -9 of node b: %d acknowledged messages, all delivered, %d re-sent", len(all), n)
	if n > len(first) {
		t.Errorf("%d re-sends, more than the %d messages B could have had in flight", n, len(first))
	}
	for _, id := range all {
		waitStatus(t, c.by["c"], c.token, id, "delivered")
	}
	// The operator's listing, run beside node b's data folder, reads the
	// shared store: every message delivered, whichever node did it.
	out, err := exec.Command(bin, "--data", dir, "messages", "list", "--status", "delivered").CombinedOutput()
	if err != nil {
		t.Fatalf("messages list: %v\n%s", err, out)
	}
	for _, id := range all {
		if !strings.Contains(string(out), id) {
			t.Errorf("messages list on node b's folder lacks delivered message %s:\n%s", id, out)
			break
		}
	}
}

// TestClusterMoveWhileDelivering: the device moves to C while B has
// MESSAGEs on the old connection that will never be answered. B abandons
// that delivery (nothing charged to the messages, as for roaming on one
// node) and closes the connection; C delivers them all.
func TestClusterMoveWhileDelivering(t *testing.T) {
	c := startNodes(t, "a", "b", "c")
	onB := c.by["b"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, onB, false)
	onB.Stall() // takes the MESSAGEs, never answers
	ids := c.submitN(t, c.by["a"], 3, "in flight")
	servertest.CheckFor(t, 20*time.Second, func() error {
		if !c.by["b"].Queue().Busy("bob.smith") {
			return fmt.Errorf("no delivery under way on B")
		}
		return nil
	})
	onC := c.by["c"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, onC, false)
	waitAllReceived(t, ids, onC)
	waitIdle(t, c.by["b"], "bob.smith")
	if n := countLogs(c.by["b"], "abandoning the delivery here: the device registered on another node"); n != 1 {
		t.Errorf("B logged %d abandoned deliveries, want 1", n)
	}
	if n := countLogs(c.by["b"], "delivery attempt failed"); n != 0 {
		t.Errorf("the move was charged as %d failed attempts on B", n)
	}
	if n := resends(receivedIDs(onC)); n != 0 {
		t.Errorf("%d re-sends on C", n)
	}
}

// TestClusterPasswordGuessingIsLimitedAcrossNodes: guesses spread over the
// nodes (as a balancer spreads them) meet the limit of one node: after the
// free failures on nodes a and b, node c refuses the address at once, and
// the right password from another address still works there.
func TestClusterPasswordGuessingIsLimitedAcrossNodes(t *testing.T) {
	c := startNodes(t, "a", "b", "c")
	guess := func(s *servertest.Server, source, password string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathTokens, nil)
		req.SetBasicAuth("alice", password)
		res, err := httpsFrom(s, source).Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", api.PathTokens, err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for i := range loginguard.DefaultAddressFreeFailures {
		s := c.by[[]string{"a", "b"}[i%2]]
		if code := guess(s, "127.0.0.2", fmt.Sprintf("guess-%d", i)); code != http.StatusUnauthorized {
			t.Fatalf("free guess %d: %d, want 401", i+1, code)
		}
	}
	// Node c hears of every failure (NATS delivers in the background).
	servertest.CheckFor(t, 20*time.Second, func() error {
		if v := metric(t, c.by["c"], "sealpost_cluster_login_verdicts_learned_total"); v < loginguard.DefaultAddressFreeFailures {
			return fmt.Errorf("node c learnt %v of %d failures", v, loginguard.DefaultAddressFreeFailures)
		}
		return nil
	})
	if code := guess(c.by["c"], "127.0.0.2", "guess-on-c"); code != http.StatusTooManyRequests {
		t.Fatalf("first guess on node c after %d on a and b: %d, want 429", loginguard.DefaultAddressFreeFailures, code)
	}
	if code := guess(c.by["c"], "127.0.0.3", "alice-password"); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("alice from another address on node c: %d", code)
	}
}

// TestClusterUserDelReachesEveryNode: the operator deletes bob.smith on
// node a (user del beside a's data folder) while his device is connected
// to node b: b closes that connection and forgets him.
func TestClusterUserDelReachesEveryNode(t *testing.T) {
	c := startNodes(t, "a", "b")
	bob := c.by["b"].NewDevice(t, "bob.smith", "bob-password")
	mustRegister(t, bob, false)

	cli, err := server.New(server.Options{DataDir: c.by["a"].DataDir, StoreURL: c.db, MasterKeyFile: c.masterKey})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	failed, err := cli.DeleteUser(ctx, "bob.smith")
	if err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if _, err := cli.DisconnectDeleted(ctx, "bob.smith", failed); err != nil {
		t.Fatalf("disconnecting on node a: %v", err)
	}
	servertest.CheckFor(t, 20*time.Second, func() error {
		if _, ok := c.by["b"].Registrar().Lookup("bob.smith"); ok {
			return errors.New("node b still holds the deleted account's registration")
		}
		return nil
	})
	servertest.CheckFor(t, 20*time.Second, func() error {
		for _, l := range c.by["b"].Logs() {
			if strings.Contains(l, "account deleted by the operator") && strings.Contains(l, "account=bob.smith") && strings.Contains(l, "device_online=true") {
				return nil
			}
		}
		return errors.New("node b logged no deletion of bob.smith's registered device")
	})
	// The device cannot come back: its account is gone.
	if code, _ := bob.Register(600, false); code >= 200 && code < 300 {
		t.Fatalf("bob.smith registered again on node b after user del on node a: %d", code)
	}
}
