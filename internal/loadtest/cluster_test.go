package loadtest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store/postgres/pgtest"
)

// TestRelayAcrossTwoNodes spawns two real sealpostd on a fresh database
// of the test PostgreSQL with a nats-server the tool starts, and relays
// with the senders on node a and the devices on node b: every message is
// delivered, and by node b after a doorbell from node a. It checks the
// tool's logic, never a speed.
func TestRelayAcrossTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and spawns sealpostd")
	}
	if _, err := exec.LookPath("nats-server"); err != nil {
		if _, err := os.Stat("/usr/sbin/nats-server"); err != nil {
			t.Skip("no nats-server (.ci/install-nats.sh installs Debian's)")
		}
	}
	bin := filepath.Join(t.TempDir(), "sealpostd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/sealpost/sealpost/cmd/sealpostd").CombinedOutput(); err != nil {
		t.Fatalf("building sealpostd: %v\n%s", err, out)
	}
	s := small("relay")
	s.Via, s.Recipients, s.Senders, s.Rate, s.Messages, s.Duration = "sip", 4, 3, 300, 60, 60*time.Second
	s.Nodes, s.Postgres = 2, pgtest.Server()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	sp, err := Spawn(context.Background(), bin, &s, "localhost", nil, &log)
	if err != nil {
		t.Fatalf("spawning two nodes: %v\n%s", err, log.String())
	}
	t.Cleanup(func() {
		if err := sp.Stop(); err != nil {
			t.Errorf("stopping the nodes: %v", err)
		}
	})
	if len(sp.Peers) != 1 || sp.DeviceSIP != sp.Peers[0].SIP || sp.DeviceSIP == sp.SIP || len(sp.PeerPIDs) != 1 {
		t.Fatalf("devices on %s, senders on %s, peers %d: want the devices on the second node", sp.DeviceSIP, sp.SIP, len(sp.Peers))
	}
	res, err := Run(context.Background(), sp.Target, s, &log)
	if err != nil {
		t.Fatalf("relay across two nodes: %v\n%s", err, log.String())
	}
	checkDelivered(t, res)
	if res.Accepted != 60 || res.Server.Processes < 2 {
		t.Errorf("accepted %d of 60; server processes measured %d, want both nodes", res.Accepted, res.Server.Processes)
	}
	// The devices were only on node b, so b delivered every message; a
	// rang a doorbell for each and b answered them.
	if rung := adminMetric(t, sp.Admin, "sealpost_cluster_doorbells_rung_total"); rung < float64(res.Accepted) {
		t.Errorf("node a rang %v doorbells for %d messages", rung, res.Accepted)
	}
	if answered := adminMetric(t, sp.Peers[0].Admin, "sealpost_cluster_doorbells_answered_total"); answered < 1 {
		t.Errorf("node b answered %v doorbells", answered)
	}
}

// adminMetric reads one sample from a node's /metrics.
func adminMetric(t *testing.T, admin, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", admin, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no metric %s on %s", name, admin)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
