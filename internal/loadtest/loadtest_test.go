package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/server/servertest"
)

// startTarget starts an in-process server with the accounts s needs. The
// /proc figures are then of the test process itself (server and tool
// together); the tests check the tool's logic, not the server's speed.
func startTarget(t *testing.T, s *Settings, opts ...servertest.Option) Target {
	t.Helper()
	srv := servertest.Start(t, opts...)
	password := NewPassword()
	names := make([]string, s.Accounts())
	for i := range names {
		names[i] = s.AccountName(i)
	}
	if n, err := srv.AddUsers(context.Background(), names, password); err != nil || n != len(names) {
		t.Fatalf("provisioning %d accounts: created %d, %v", len(names), n, err)
	}
	host, port, _ := net.SplitHostPort(srv.AdminURL[len("http://"):])
	return Target{
		HTTPS: srv.Server.HTTPSAddr(), SIP: srv.SIPAddr, Admin: net.JoinHostPort(host, port),
		CAFile: srv.CAFile, Domain: srv.Domain, PID: os.Getpid(), Password: password,
	}
}

func small(scenario string) Settings {
	s := Defaults(scenario)
	s.Duration, s.Grace, s.Timeout, s.Concurrency = 700*time.Millisecond, 10*time.Second, 10*time.Second, 8
	s.Keepalive = 200 * time.Millisecond
	return s
}

func TestRelay(t *testing.T) {
	for _, via := range []string{"https", "sip"} {
		t.Run(via, func(t *testing.T) {
			s := small("relay")
			// Bounded by Messages, not by a wall-clock window: a busy
			// machine sends fewer in 0.7 s, and the test is about the
			// tool's logic, not the machine's speed (sealbench and
			// BENCHMARKS.md have the rates).
			s.Via, s.Recipients, s.Senders, s.Rate, s.Messages, s.Duration = via, 4, 3, 300, 60, 60*time.Second
			target := startTarget(t, &s)
			var log bytes.Buffer
			res, err := Run(context.Background(), target, s, &log)
			if err != nil {
				t.Fatalf("relay: %v\n%s", err, log.String())
			}
			checkDelivered(t, res)
			if res.ArrivalLatency.N != res.Accepted || res.ArrivalLatency.P50 <= 0 || res.ArrivalLatency.Max < res.ArrivalLatency.P99 {
				t.Errorf("arrival latency %+v does not cover the %d accepted messages", res.ArrivalLatency, res.Accepted)
			}
			if res.Submitted != 60 || res.Accepted != 60 {
				t.Errorf("submitted %d, accepted %d; want all 60", res.Submitted, res.Accepted)
			}
			if res.QueuedAtSendEnd < 0 || res.QueuedAtSendEnd > res.Accepted {
				t.Errorf("backlog at the senders' stop %d, outside 0..%d accepted", res.QueuedAtSendEnd, res.Accepted)
			}
			// The pacer never sends ahead of 300/s: 60 messages take at
			// least 0.2 s of sending (a floor, which no load can break).
			if res.AcceptedPerSec > 300*1.05 {
				t.Errorf("accepted %.0f/s, faster than the 300/s pace", res.AcceptedPerSec)
			}
			var table bytes.Buffer
			res.WriteTable(&table)
			for _, want := range []string{"| delivered/s |", "| " + backlogFigure + " |", "| submit→arrival p99 |", "| server CPU |", "| tool CPU |", "settings: via=" + via, "pace: system call "} {
				if !strings.Contains(table.String(), want) {
					t.Errorf("table lacks %q:\n%s", want, table.String())
				}
			}
		})
	}
}

func checkDelivered(t *testing.T, res *Result) {
	t.Helper()
	if res.Accepted == 0 || res.Delivered != res.Accepted || res.Lost != 0 || res.OutOfOrder != 0 || len(res.Errors) != 0 {
		t.Errorf("submitted %d, accepted %d, delivered %d, lost %d, out of order %d, errors %v",
			res.Submitted, res.Accepted, res.Delivered, res.Lost, res.OutOfOrder, res.Errors)
	}
	if res.Server.CPUSeconds <= 0 || res.Server.PeakRSSMiB <= 0 || res.Tool.CPUSeconds <= 0 {
		t.Errorf("usage figures missing: server %+v, tool %+v", res.Server, res.Tool)
	}
}

func TestStore(t *testing.T) {
	s := small("store")
	// Bounded by Messages; Duration only bounds the wait on a busy machine.
	s.Recipients, s.Senders, s.Messages, s.Duration = 5, 4, 60, 30*time.Second
	target := startTarget(t, &s)
	res, err := Run(context.Background(), target, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 60 || res.Delivered != 0 || len(res.Errors) != 0 || res.SubmitLatency.N != 60 || res.AcceptedPerSec <= 0 {
		t.Errorf("store: accepted %d, delivered %d, errors %v, latency %+v, %v/s", res.Accepted, res.Delivered, res.Errors, res.SubmitLatency, res.AcceptedPerSec)
	}
}

func TestStoreCountsRefusals(t *testing.T) {
	// A mailbox bound of 10 for 2 recipients: of 30 messages 20 fit.
	s := small("store")
	s.Recipients, s.Senders, s.Messages, s.Duration = 2, 2, 30, 30*time.Second
	target := startTarget(t, &s, servertest.WithOptions(func(o *server.Options) { o.MaxPending = 10 }))
	res, err := Run(context.Background(), target, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 20 || res.Errors["https_429_recipient_mailbox_full"] != 10 {
		t.Errorf("accepted %d, errors %v; want 20 and 10 refused as mailbox full", res.Accepted, res.Errors)
	}
}

func TestDrain(t *testing.T) {
	s := small("drain")
	// The store phase ends at Messages; Duration only bounds it (a busy
	// machine stores 150 in more than small's 0.7 s).
	s.Messages, s.Senders, s.Duration = 150, 3, 30*time.Second
	target := startTarget(t, &s)
	res, err := Run(context.Background(), target, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, res)
	if res.Delivered != 150 || res.DrainSeconds <= 0 || res.Dropped {
		t.Errorf("drain: delivered %d in %v s, dropped %v", res.Delivered, res.DrainSeconds, res.Dropped)
	}
}

func TestConnections(t *testing.T) {
	s := small("connections")
	s.Steps, s.Idle, s.Settle = []int{10, 30}, 300*time.Millisecond, 50*time.Millisecond
	s.Sources = []string{"127.0.0.1", "127.0.0.2"}
	target := startTarget(t, &s)
	res, err := Run(context.Background(), target, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Points) != 3 || res.Points[2].Devices != 30 || len(res.Errors) != 0 {
		t.Fatalf("points %+v, errors %v", res.Points, res.Errors)
	}
	if res.Pings == 0 || res.Pongs == 0 {
		t.Errorf("keepalives every 200 ms for 30 devices: %d pings, %d pongs", res.Pings, res.Pongs)
	}
	// The figure is noisy at 30 devices in a test process, but it is a
	// number, and the CPU figures exist.
	if res.PerDeviceKiB == 0 || res.IdleCPUPercent < 0 {
		t.Errorf("per device %v KiB, idle CPU %v%%", res.PerDeviceKiB, res.IdleCPUPercent)
	}
}

func TestMixed(t *testing.T) {
	for _, via := range []string{"https", "sip"} {
		t.Run(via, func(t *testing.T) {
			s := small("mixed")
			// Bounded by Messages: at 200/s the 100 messages take at least
			// 0.5 s, in which the churn (every 100 ms) takes devices
			// offline however busy the machine is.
			s.Via, s.Recipients, s.Senders, s.Rate, s.Churn, s.Offline = via, 12, 3, 200, 10, 150*time.Millisecond
			s.Messages, s.Duration = 100, 60*time.Second
			target := startTarget(t, &s)
			res, err := Run(context.Background(), target, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkDelivered(t, res)
			if res.Reconnects == 0 {
				t.Errorf("no device went offline and came back")
			}
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := Result{Scenario: "relay", Settings: Defaults("relay"), SubmitLatency: Latency{N: 3, P50: 1.5}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.SubmitLatency != r.SubmitLatency || back.Settings.Recipients != 1000 || !strings.Contains(string(b), `"p99_ms"`) {
		t.Errorf("round trip lost fields: %s", b)
	}
}

func TestSettingsCheck(t *testing.T) {
	for name, f := range map[string]func(*Settings){
		"non-loopback source": func(s *Settings) { s.Sources = []string{"10.0.0.1"} },
		"unknown via":         func(s *Settings) { s.Via = "smtp" },
		"text too long":       func(s *Settings) { s.TextChars = 161 },
		"steps not rising":    func(s *Settings) { s.Scenario = "connections"; s.Steps = []int{10, 5} },
		"no senders":          func(s *Settings) { s.Senders = 0 },
		"two nodes on SQLite": func(s *Settings) { s.Nodes = 2 },
		"three nodes":         func(s *Settings) { s.Nodes, s.Postgres = 3, "postgres://x@127.0.0.1/db" },
		"two nodes, store":    func(s *Settings) { s.Scenario, s.Nodes, s.Postgres = "store", 2, "postgres://x@127.0.0.1/db" },
	} {
		s := Defaults("relay")
		f(&s)
		if err := s.Check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	s := Defaults("relay")
	if err := s.Check(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	if _, err := Run(context.Background(), Target{HTTPS: "10.1.2.3:443", SIP: "127.0.0.1:5061"}, s, nil); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("a non-loopback target: %v", err)
	}
}

func TestStats(t *testing.T) {
	var l latencies
	for i := 1; i <= 100; i++ {
		l.add(time.Duration(i) * time.Millisecond)
	}
	got := l.summary()
	want := Latency{N: 100, P50: 50, P90: 90, P99: 99, Max: 100}
	if got != want {
		t.Errorf("summary %+v, want %+v", got, want)
	}
	if m, sp := median([]float64{3, 1, 2}); m != 2 || sp != 2 {
		t.Errorf("median 3,1,2 = %v spread %v", m, sp)
	}
	if m, _ := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median 1..4 = %v", m)
	}
	if b := slope([]float64{0, 10, 20}, []float64{100, 120, 140}); b != 2 {
		t.Errorf("slope %v, want 2", b)
	}
}

func TestPace(t *testing.T) {
	p, err := measurePace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if p.SyscallNs <= 0 || p.FsyncMs <= 0 {
		t.Errorf("pace %+v: a figure is not above zero", p)
	}
	if s := p.String(); !strings.Contains(s, "fdatasync") || !strings.Contains(s, p.Dir) {
		t.Errorf("pace reads %q", s)
	}
	missing := filepath.Join(t.TempDir(), "gone")
	if _, err := measurePace(missing); err == nil || !strings.Contains(err.Error(), "measuring the machine's pace (a 4 KiB write + fdatasync in "+missing) {
		t.Errorf("pace in a missing folder: %v", err)
	}
}

func TestProc(t *testing.T) {
	p, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.RSS <= 0 || p.HWM < p.RSS {
		t.Errorf("RSS %d, HWM %d", p.RSS, p.HWM)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pid, err := pidListeningOn(l.Addr().String())
	if err != nil || pid != os.Getpid() {
		t.Errorf("pid listening on %s: %d, %v; want %d", l.Addr(), pid, err, os.Getpid())
	}
	if _, err := readProc(1 << 30); err == nil {
		t.Errorf("a process that does not exist: no error")
	}
}

// TestConnectionArgsLiftTheCaps: a run's accounts all connect from a few
// loopback addresses, so the spawned server's per-address caps (256 SIP,
// 64 HTTPS by default) must hold all of them; at the default cap 744 of
// 1,000 relay devices failed to register.
func TestConnectionArgsLiftTheCaps(t *testing.T) {
	args := connectionArgs(1064)
	got := map[string]int{}
	for i := 0; i+1 < len(args); i += 2 {
		n, err := strconv.Atoi(args[i+1])
		if err != nil {
			t.Fatalf("%s %q: %v", args[i], args[i+1], err)
		}
		got[args[i]] = n
	}
	for _, flag := range []string{"--max-connections-per-address-sip", "--max-connections-per-address-https"} {
		if got[flag] < 1064 {
			t.Errorf("%s = %d, below the run's 1,064 accounts", flag, got[flag])
		}
	}
}
