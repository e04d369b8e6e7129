// Package loadtest drives a running sealpostd the way real devices do, over
// real TLS on loopback, and measures it: simulated phones that REGISTER over
// SIP/TLS with digest, keep their connection alive and answer every MESSAGE
// 200; senders that submit over HTTPS (keep-alive, one request in flight per
// sender) or SIP MESSAGE; and five scenarios (relay, store, drain,
// connections, mixed), each producing one Result. Server CPU and memory
// come from /proc/PID of the server process, so the server must run on
// this machine; the tool's own CPU is reported beside it because on a small
// box the tool takes part of the same cores.
//
// Every loop is bounded in count and in time: senders stop at Duration or
// Messages, waits for deliveries stop at Grace, every network exchange has
// Timeout.
package loadtest

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Scenarios, in the order the issue lists them.
var Scenarios = []string{"relay", "store", "drain", "connections", "mixed"}

// Settings describe one scenario run. Zero values take the defaults of
// Defaults(scenario).
type Settings struct {
	Scenario string `json:"scenario"`
	// Via is how senders submit: "https" (POST /v1/messages) or "sip"
	// (MESSAGE on their registered connection).
	Via string `json:"via"`
	// Recipients is the number of recipient accounts: online devices in
	// relay and mixed, offline mailboxes in store.
	Recipients int `json:"recipients"`
	// Senders is the number of sending accounts, each with one connection
	// and one submission in flight, so its messages have a defined order.
	Senders int `json:"senders"`
	// Rate is the offered load in messages per second over all senders;
	// 0 sends as fast as the senders get answers.
	Rate float64 `json:"rate"`
	// Duration bounds the sending phase; Messages bounds the number of
	// messages (drain: exactly the number stored). Whichever comes first.
	Duration time.Duration `json:"duration_ns"`
	Messages int           `json:"messages"`
	// TextChars is the length of every message text (ASCII characters).
	TextChars int `json:"text_chars"`
	// Keepalive is the interval of each device's CRLF keepalive ping.
	Keepalive time.Duration `json:"keepalive_ns"`
	// Steps are the device counts at which connections measures memory
	// (0 is always measured first).
	Steps []int `json:"steps,omitempty"`
	// Idle is how long connections measures CPU at rest, at the last step.
	Idle time.Duration `json:"idle_ns,omitempty"`
	// Settle is how long connections waits, once the devices are
	// registered, before reading the server's resident memory: long
	// enough for the server to notice it has gone quiet and return its
	// free heap (it checks every 2 s).
	Settle time.Duration `json:"settle_ns,omitempty"`
	// Churn is, in mixed, the number of devices per second that go
	// offline, each for Offline, and then register again.
	Churn   float64       `json:"churn_per_s,omitempty"`
	Offline time.Duration `json:"offline_ns,omitempty"`
	// Grace bounds the wait for deliveries after sending stops (drain: for
	// the whole drain).
	Grace time.Duration `json:"grace_ns"`
	// Sources are the local addresses connections come from, round robin:
	// more than one lifts the limit of ~28,000 ephemeral ports per address.
	Sources []string `json:"sources"`
	// Concurrency bounds connects, registrations and logins in parallel.
	Concurrency int `json:"concurrency"`
	// Timeout bounds each network exchange (connect, request, answer).
	Timeout time.Duration `json:"timeout_ns"`
	// Prefix names the bench accounts: Prefix + 5-digit index.
	Prefix string `json:"account_prefix"`
	// Reports makes devices ask for delivery reports at REGISTER.
	Reports bool `json:"reports"`
	// ForceGC makes connections ask the server for a collection (admin
	// pprof, heap?gc=1) before each settle, as the Go runtime does by
	// itself at least every two minutes.
	ForceGC bool `json:"force_gc,omitempty"`
	// Postgres, if set, is a PostgreSQL server (postgres://USER@HOST:PORT/DB
	// of a database to connect to, with a role that may create databases)
	// on which every spawned sealpostd gets a fresh database of its own as
	// its --store, dropped when it stops. Empty: the embedded SQLite store.
	Postgres string `json:"postgres,omitempty"`
	// Nodes is how many sealpostd a spawned relay runs on (0 or 1: one):
	// with 2, senders submit on one node and the recipient devices
	// register on the other, on one Postgres database with NATS between
	// them, so every message crosses nodes.
	Nodes int `json:"nodes,omitempty"`
	// NATS is the NATS URL of the nodes (Nodes > 1); empty: the tool
	// starts a nats-server of its own on a free loopback port.
	NATS string `json:"nats,omitempty"`
}

// Defaults returns the settings a scenario runs with unless told otherwise.
func Defaults(scenario string) Settings {
	s := Settings{
		Scenario: scenario, Via: "https", TextChars: 160, Keepalive: 60 * time.Second,
		Grace: 30 * time.Second, Sources: []string{"127.0.0.1"}, Concurrency: 64,
		Timeout: 15 * time.Second, Prefix: "sb",
	}
	switch scenario {
	case "relay":
		s.Recipients, s.Senders, s.Duration = 1000, 64, 10*time.Second
	case "store":
		s.Recipients, s.Senders, s.Duration = 1000, 128, 10*time.Second
	case "drain":
		s.Senders, s.Messages, s.Grace = 8, 10000, 120*time.Second
		s.Duration = 10 * time.Minute
	case "connections":
		s.Steps = []int{5000, 19000}
		s.Idle, s.Settle = 60*time.Second, 30*time.Second
	case "mixed":
		s.Recipients, s.Senders, s.Rate, s.Duration = 2000, 100, 500, 30*time.Second
		s.Churn, s.Offline = 10, 5*time.Second
	}
	return s
}

// Check reports settings that cannot run.
func (s *Settings) Check() error {
	known := false
	for _, n := range Scenarios {
		known = known || n == s.Scenario
	}
	switch {
	case !known:
		return fmt.Errorf("unknown scenario %q; want one of %s", s.Scenario, strings.Join(Scenarios, ", "))
	case s.Via != "https" && s.Via != "sip":
		return fmt.Errorf("--via %q: want https or sip", s.Via)
	case s.TextChars < 1 || s.TextChars > 160:
		return fmt.Errorf("--text %d: a message has 1 to 160 characters", s.TextChars)
	case s.Duration <= 0 && s.Scenario != "connections":
		return fmt.Errorf("--duration must be positive")
	case s.Duration > 30*time.Minute || s.Grace > 30*time.Minute || s.Idle > 30*time.Minute:
		// Devices register for an hour and never refresh.
		return fmt.Errorf("a run is limited to 30 minutes per phase (registrations last an hour and are not refreshed)")
	case s.Timeout <= 0 || s.Concurrency < 1:
		return fmt.Errorf("--timeout and --concurrency must be positive")
	case s.Rate < 0:
		return fmt.Errorf("--rate must not be negative")
	case s.Nodes < 0 || s.Nodes > 2:
		return fmt.Errorf("--nodes %d: want 1 or 2", s.Nodes)
	case s.Nodes == 2 && s.Scenario != "relay":
		return fmt.Errorf("--nodes 2 is for relay (submissions on one node, devices on the other), not %s", s.Scenario)
	case s.Nodes == 2 && s.Postgres == "":
		return fmt.Errorf("--nodes 2 needs --postgres: the nodes share one PostgreSQL database")
	case len(s.Sources) == 0:
		return fmt.Errorf("--sources: give at least one local address")
	}
	for _, a := range s.Sources {
		ip := net.ParseIP(a)
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("--sources %q: only loopback addresses (127.0.0.0/8, ::1): the tool sends traffic to this machine only", a)
		}
	}
	switch s.Scenario {
	case "relay", "store", "mixed":
		if s.Recipients < 1 || s.Senders < 1 {
			return fmt.Errorf("%s needs at least one recipient and one sender", s.Scenario)
		}
	case "drain":
		if s.Messages < 1 || s.Senders < 1 {
			return fmt.Errorf("drain needs --messages and --senders of at least 1")
		}
	case "connections":
		if len(s.Steps) == 0 {
			return fmt.Errorf("connections needs --steps, e.g. 5000,19000")
		}
		for i, n := range s.Steps {
			if n < 1 || (i > 0 && n <= s.Steps[i-1]) {
				return fmt.Errorf("--steps must be increasing positive device counts")
			}
		}
	}
	if s.Scenario == "mixed" && s.Senders > s.Recipients {
		return fmt.Errorf("mixed: the senders are among the devices, so --senders (%d) must not exceed --recipients (%d)", s.Senders, s.Recipients)
	}
	return nil
}

// Accounts returns how many bench accounts the scenario uses: accounts
// Prefix00000 … Prefix(N-1).
func (s *Settings) Accounts() int {
	switch s.Scenario {
	case "relay", "store":
		return s.Recipients + s.Senders
	case "drain":
		return 1 + s.Senders
	case "connections":
		return s.Steps[len(s.Steps)-1]
	case "mixed":
		return s.Recipients
	}
	return 0
}

// Connections returns how many connections the tool opens at most, for the
// open-files limit.
func (s *Settings) Connections() int {
	switch s.Scenario {
	case "relay":
		return s.Recipients + s.Senders
	case "store":
		return s.Senders
	case "drain":
		return 1 + s.Senders
	case "connections":
		return s.Steps[len(s.Steps)-1]
	case "mixed":
		return s.Recipients + s.Senders
	}
	return 0
}

// AccountName returns the name of bench account i.
func (s *Settings) AccountName(i int) string { return fmt.Sprintf("%s%05d", s.Prefix, i) }
