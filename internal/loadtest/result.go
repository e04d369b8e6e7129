package loadtest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Result is what one scenario run measured.
type Result struct {
	Scenario string    `json:"scenario"`
	Settings Settings  `json:"settings"`
	Machine  Machine   `json:"machine"`
	Started  time.Time `json:"started"`
	// Seconds is the measured window: sending until the last delivery
	// (relay, mixed), sending (store), registration until the last 200
	// (drain), the idle window (connections).
	Seconds float64 `json:"seconds"`

	Submitted  int `json:"submitted"`
	Accepted   int `json:"accepted"`  // answered 202 (or 200: already known)
	Delivered  int `json:"delivered"` // arrived at the right device, answered 200
	Lost       int `json:"lost"`      // accepted, not arrived within Grace
	OutOfOrder int `json:"out_of_order"`
	// Redelivered counts second deliveries of an id, after a connection
	// dropped before its 200 reached the server (at-least-once; clients
	// drop the repeated id). Not an error, but reported.
	Redelivered int `json:"redelivered"`
	// QueuedAtSendEnd is how many accepted messages had not arrived when
	// the senders stopped (relay): the backlog the sending left.
	QueuedAtSendEnd int     `json:"queued_at_send_end"`
	AcceptedPerSec  float64 `json:"accepted_per_s"`
	DeliveredPerSec float64 `json:"delivered_per_s"`
	SubmitLatency   Latency `json:"submit_to_202"`
	ArrivalLatency  Latency `json:"submit_to_arrival"`

	Errors map[string]int `json:"errors"`

	Server Usage `json:"server"`
	Tool   Usage `json:"tool"`
	// Other is the CPU every other process on the machine used in the
	// window (from /proc/stat): it should be near zero.
	Other Usage `json:"other_processes"`

	// drain
	DrainSeconds float64 `json:"drain_seconds,omitempty"`
	Dropped      bool    `json:"connection_dropped,omitempty"`
	// connections
	Points           []Point `json:"points,omitempty"`
	PerDeviceKiB     float64 `json:"per_device_kib,omitempty"`
	PerDevicePSSKiB  float64 `json:"per_device_pss_kib,omitempty"`
	IdleCPUPercent   float64 `json:"idle_cpu_percent_of_core,omitempty"`
	IdleCPUPer20k    float64 `json:"idle_cpu_percent_of_core_per_20000,omitempty"`
	Pings            int64   `json:"pings,omitempty"`
	Pongs            int64   `json:"pongs,omitempty"`
	Reconnects       int     `json:"reconnects,omitempty"`
	ReportsDelivered int     `json:"reports_delivered,omitempty"`

	Notes []string `json:"notes,omitempty"`
}

// Usage is a process's CPU and memory over the measured window.
type Usage struct {
	PID int `json:"pid,omitempty"`
	// Processes is how many processes the figures add up: the server's
	// process and those descended from it (Kamailio works in several).
	Processes  int     `json:"processes,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPercent is of one core: 200 is both cores of a 2-core machine.
	CPUPercent float64 `json:"cpu_percent_of_core"`
	PeakRSSMiB float64 `json:"peak_rss_mib,omitempty"`
}

// Point is resident memory at a number of registered devices, with the
// Go runtime's own view of it (from the server's /metrics) when the admin
// listener is known: where the memory goes.
type Point struct {
	Devices int     `json:"devices"`
	RSSMiB  float64 `json:"rss_mib"`
	// PSSMiB is the proportional set size of the server's processes:
	// memory shared between them counted once.
	PSSMiB float64 `json:"pss_mib"`
	Failed int     `json:"failed,omitempty"`
	// HeapLiveMiB is memory in live heap objects, HeapSpansMiB the heap
	// spans holding them (live plus free slots), StackMiB goroutine
	// stacks, Goroutines their number.
	HeapLiveMiB  float64 `json:"heap_live_mib,omitempty"`
	HeapSpansMiB float64 `json:"heap_spans_mib,omitempty"`
	StackMiB     float64 `json:"stack_mib,omitempty"`
	Goroutines   int     `json:"goroutines,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	MemoryMiB int64  `json:"memory_mib"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	OpenFiles uint64 `json:"open_files_limit"`
	Pace      Pace   `json:"pace"`
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var kb int64
			if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
				m.MemoryMiB = kb >> 10
				break
			}
		}
		f.Close()
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		m.OpenFiles = rl.Cur
	}
	return m
}

// metric is one figure of a result, for tables and for the median of runs.
type metric struct {
	name  string
	unit  string
	value float64
}

// backlogFigure names QueuedAtSendEnd in tables.
const backlogFigure = "accepted, not yet arrived, when the senders stopped"

// figures returns the headline figures of r, scenario by scenario.
func (r *Result) figures() []metric {
	var out []metric
	add := func(name, unit string, v float64) { out = append(out, metric{name, unit, v}) }
	lat := func(prefix string, l Latency) {
		add(prefix+" p50", "ms", l.P50)
		add(prefix+" p90", "ms", l.P90)
		add(prefix+" p99", "ms", l.P99)
		add(prefix+" max", "ms", l.Max)
	}
	switch r.Scenario {
	case "relay", "mixed":
		add("delivered/s", "msg/s", r.DeliveredPerSec)
		add("accepted/s", "msg/s", r.AcceptedPerSec)
		if r.Scenario == "relay" {
			add(backlogFigure, "", float64(r.QueuedAtSendEnd))
		}
		lat("submit→202", r.SubmitLatency)
		lat("submit→arrival", r.ArrivalLatency)
		add("lost", "", float64(r.Lost))
		add("out of order", "", float64(r.OutOfOrder))
	case "store":
		add("accepted/s", "msg/s", r.AcceptedPerSec)
		lat("submit→202", r.SubmitLatency)
	case "drain":
		add("drain time", "s", r.DrainSeconds)
		add("delivered/s", "msg/s", r.DeliveredPerSec)
		add("lost", "", float64(r.Lost))
		add("out of order", "", float64(r.OutOfOrder))
		add("store phase accepted/s", "msg/s", r.AcceptedPerSec)
	case "connections":
		add("per device", "KiB", r.PerDeviceKiB)
		add("per device, proportional (PSS)", "KiB", r.PerDevicePSSKiB)
		for _, p := range r.Points {
			add(fmt.Sprintf("RSS at %d devices", p.Devices), "MiB", p.RSSMiB)
		}
		if n := len(r.Points); n > 1 && r.Points[n-1].Devices > 0 {
			first, last := r.Points[0], r.Points[n-1]
			per := func(a, b float64) float64 { return (b - a) * 1024 / float64(last.Devices-first.Devices) }
			if last.HeapLiveMiB > 0 {
				add("of which live heap", "KiB/device", per(first.HeapLiveMiB, last.HeapLiveMiB))
				add("of which heap spans", "KiB/device", per(first.HeapSpansMiB, last.HeapSpansMiB))
				add("of which stacks", "KiB/device", per(first.StackMiB, last.StackMiB))
			}
		}
		add("CPU at rest", "% of a core", r.IdleCPUPercent)
		add("CPU at rest per 20,000 devices", "% of a core", r.IdleCPUPer20k)
	}
	errs := 0
	for _, n := range r.Errors {
		errs += n
	}
	add("errors", "", float64(errs))
	add("server CPU", "s", r.Server.CPUSeconds)
	add("server CPU", "% of a core", r.Server.CPUPercent)
	add("server peak RSS", "MiB", r.Server.PeakRSSMiB)
	add("tool CPU", "s", r.Tool.CPUSeconds)
	add("tool CPU", "% of a core", r.Tool.CPUPercent)
	add("other processes CPU", "% of a core", r.Other.CPUPercent)
	return out
}

// WriteTable prints r as one Markdown table, then its errors and settings.
func (r *Result) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "## %s (via %s), %s, %.2f s measured\n\n", r.Scenario, r.Settings.Via, r.Started.Format(time.RFC3339), r.Seconds)
	fmt.Fprintf(w, "| figure | value |\n| --- | --- |\n")
	for _, m := range r.figures() {
		fmt.Fprintf(w, "| %s | %s |\n", m.name, formatValue(m.value, m.unit))
	}
	fmt.Fprintf(w, "| submitted / accepted / delivered | %d / %d / %d |\n", r.Submitted, r.Accepted, r.Delivered)
	if r.Scenario == "drain" {
		fmt.Fprintf(w, "| connection dropped during drain | %v |\n", r.Dropped)
	}
	if r.Pings > 0 || r.Pongs > 0 {
		fmt.Fprintf(w, "| keepalive pings / pongs | %d / %d |\n", r.Pings, r.Pongs)
	}
	if r.Reconnects > 0 {
		fmt.Fprintf(w, "| reconnects | %d |\n", r.Reconnects)
	}
	if r.Redelivered > 0 {
		fmt.Fprintf(w, "| delivered again after a dropped connection | %d |\n", r.Redelivered)
	}
	fmt.Fprintln(w)
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "errors by kind:")
		for _, k := range sortedKeys(r.Errors) {
			fmt.Fprintf(w, " %s=%d", k, r.Errors[k])
		}
		fmt.Fprintln(w)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "settings: %s\n", r.Settings.describe())
	fmt.Fprintf(w, "machine: %s, %d cores, %d MiB, Linux %s, %s, open files %d; server pid %d\n",
		r.Machine.CPU, r.Machine.Cores, r.Machine.MemoryMiB, r.Machine.Kernel, r.Machine.Go, r.Machine.OpenFiles, r.Server.PID)
	fmt.Fprintf(w, "pace: %s\n\n", r.Machine.Pace)
}

func formatValue(v float64, unit string) string {
	var s string
	switch {
	case v == float64(int64(v)) && (unit == "" || unit == "msg/s" && v > 1000):
		s = fmt.Sprintf("%d", int64(v))
	case v >= 100:
		s = fmt.Sprintf("%.0f", v)
	case v >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if unit != "" {
		s += " " + unit
	}
	return s
}

func (s *Settings) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "via=%s", s.Via)
	if s.Nodes > 1 {
		fmt.Fprintf(&b, " nodes=%d", s.Nodes)
	}
	switch s.Scenario {
	case "relay", "store", "mixed":
		fmt.Fprintf(&b, " recipients=%d senders=%d", s.Recipients, s.Senders)
	case "drain":
		fmt.Fprintf(&b, " senders=%d", s.Senders)
	case "connections":
		fmt.Fprintf(&b, " steps=%v idle=%v settle=%v forced_gc=%v", s.Steps, s.Idle, s.Settle, s.ForceGC)
	}
	if s.Rate > 0 {
		fmt.Fprintf(&b, " rate=%g/s", s.Rate)
	} else if s.Scenario != "connections" {
		b.WriteString(" rate=unpaced")
	}
	if s.Scenario != "connections" {
		fmt.Fprintf(&b, " duration=%v messages=%d text=%d chars grace=%v", s.Duration, s.Messages, s.TextChars, s.Grace)
	}
	if s.Scenario == "mixed" {
		fmt.Fprintf(&b, " churn=%g/s offline=%v", s.Churn, s.Offline)
	}
	fmt.Fprintf(&b, " keepalive=%v sources=%s concurrency=%d timeout=%v reports=%v", s.Keepalive, strings.Join(s.Sources, ","), s.Concurrency, s.Timeout, s.Reports)
	return b.String()
}

// WriteSummary prints the median and spread (max − min) of every figure
// over several runs of one scenario.
func WriteSummary(w io.Writer, results []Result) {
	if len(results) == 0 {
		return
	}
	fmt.Fprintf(w, "## %s (via %s): median of %d runs\n\n", results[0].Scenario, results[0].Settings.Via, len(results))
	fmt.Fprintf(w, "| figure | median | spread (max − min) | runs |\n| --- | --- | --- | --- |\n")
	base := results[0].figures()
	for i, m := range base {
		var xs []float64
		var each []string
		for _, r := range results {
			f := r.figures()
			if i < len(f) && f[i].name == m.name {
				xs = append(xs, f[i].value)
				each = append(each, formatValue(f[i].value, ""))
			}
		}
		med, spread := median(xs)
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", m.name, formatValue(med, m.unit), formatValue(spread, m.unit), strings.Join(each, ", "))
	}
	fmt.Fprintln(w)
}
