package loadtest

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// CompareScenarios are the scenarios of a comparison, in the order they run.
var CompareScenarios = []string{"relay", "latency", "store", "drain", "memory"}

// CompareSettings describe a comparison of two servers: the same scenarios,
// the same simulated devices and senders (all over SIP/TLS), each run on a
// fresh server, the two servers interleaved run by run (A, B, A, B, …), so
// that both meet the machine in the same state.
type CompareSettings struct {
	Scenarios []string `json:"scenarios"`
	// Pairs is the number of runs of each server per scenario.
	Pairs int `json:"pairs"`
	// Duration is the sending phase of relay, latency and store.
	Duration time.Duration `json:"duration_ns"`
	// Rate is the offered rate of latency, msg/s over all senders: one
	// both servers carry, so that their latencies are not of a backlog.
	Rate float64 `json:"latency_rate"`
	// Recipients and Senders of relay, latency and store (0: Defaults).
	Recipients int `json:"recipients"`
	Senders    int `json:"senders"`
	// Messages is the number stored and then drained in drain.
	Messages int `json:"drain_messages"`
	// Devices is the number of idle devices of memory, read after Settle.
	Devices int           `json:"memory_devices"`
	Settle  time.Duration `json:"memory_settle_ns"`
	Sources []string      `json:"sources"`
	Timeout time.Duration `json:"timeout_ns"`
}

// DefaultCompare returns the settings of a full comparison.
func DefaultCompare() CompareSettings {
	return CompareSettings{
		Scenarios: CompareScenarios, Pairs: 3, Duration: 10 * time.Second, Rate: 500,
		Messages: 10000, Devices: 4000, Settle: 15 * time.Second,
		Sources: []string{"127.0.0.1"}, Timeout: 15 * time.Second,
	}
}

// Check reports settings that cannot run.
func (c *CompareSettings) Check() error {
	for _, n := range c.Scenarios {
		if !slices.Contains(CompareScenarios, n) {
			return fmt.Errorf("unknown comparison scenario %q; want some of %s", n, strings.Join(CompareScenarios, ", "))
		}
	}
	switch {
	case len(c.Scenarios) == 0:
		return fmt.Errorf("no scenarios to compare")
	case c.Pairs < 1 || c.Pairs > 20:
		return fmt.Errorf("--pairs %d: want 1 to 20", c.Pairs)
	case c.Rate <= 0:
		return fmt.Errorf("--rate must be positive: latency is measured at a fixed offered rate")
	}
	for _, n := range c.Scenarios {
		s := c.settings(n)
		if err := s.Check(); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
	}
	return nil
}

// settings returns the load of comparison scenario name.
func (c *CompareSettings) settings(name string) Settings {
	base := name
	switch name {
	case "latency":
		base = "relay"
	case "memory":
		base = "connections"
	}
	s := Defaults(base)
	s.Via = "sip"
	s.Sources = c.Sources
	s.Timeout = c.Timeout
	// The id of each message is in its text (see textFor): a server that
	// stores only the text (msilo) delivers it too.
	s.TextChars = 160
	switch name {
	case "relay", "latency", "store":
		s.Duration = c.Duration
		if c.Recipients > 0 {
			s.Recipients = c.Recipients
		}
		if c.Senders > 0 {
			s.Senders = c.Senders
		}
		if name == "latency" {
			s.Rate = c.Rate
		}
	case "drain":
		s.Messages = c.Messages
	case "memory":
		s.Steps = []int{c.Devices}
		s.Settle = c.Settle
		s.Idle = time.Second // CPU at rest is not compared: too short to mean anything
	}
	return s
}

// Side is one of the two servers compared.
type Side struct {
	Name string
	// Spawn starts a fresh server for a run of s.
	Spawn func(ctx context.Context, s *Settings) (*Spawned, error)
}

// Comparison is the result of Compare.
type Comparison struct {
	Settings CompareSettings `json:"settings"`
	Sides    [2]string       `json:"sides"`
	// LoadBefore and LoadAfter are /proc/loadavg at the start and the end:
	// on a shared machine, whether something else was running.
	LoadBefore string               `json:"loadavg_before"`
	LoadAfter  string               `json:"loadavg_after"`
	Scenarios  []ScenarioComparison `json:"scenarios"`
}

// ScenarioComparison holds the runs of one scenario: Runs[side][pair].
type ScenarioComparison struct {
	Name string       `json:"name"`
	Runs [2][]Result  `json:"runs"`
	Rows []CompareRow `json:"figures"`
}

// CompareRow is one figure of a scenario for both sides: the median and
// spread of each side's runs, and the median and range of the ratio
// B / A of each interleaved pair.
type CompareRow struct {
	Figure       string     `json:"figure"`
	Unit         string     `json:"unit"`
	HigherBetter bool       `json:"higher_is_better"`
	Median       [2]float64 `json:"median"`
	Spread       [2]float64 `json:"spread"`
	// Ratio is of B to A, pair by pair; 0 when a pair's A is 0.
	Ratio    float64 `json:"ratio_median"`
	RatioMin float64 `json:"ratio_min"`
	RatioMax float64 `json:"ratio_max"`
	NoRatio  bool    `json:"no_ratio,omitempty"`
}

// Compare runs every scenario of c on both sides, interleaved: for each
// scenario, pair by pair, a fresh server of side A then of side B. Each run
// must have driven its server (messages delivered, stored, or devices
// registered), or Compare fails: a ratio of a server that did nothing
// would mean nothing.
func Compare(ctx context.Context, c CompareSettings, sides [2]Side, log io.Writer) (*Comparison, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	cmp := &Comparison{Settings: c, Sides: [2]string{sides[0].Name, sides[1].Name}, LoadBefore: loadavg()}
	for _, name := range c.Scenarios {
		s := c.settings(name)
		sc := ScenarioComparison{Name: name}
		for pair := 0; pair < c.Pairs; pair++ {
			for i, side := range sides {
				fmt.Fprintf(log, "sealbench: compare %s, pair %d of %d: %s\n", name, pair+1, c.Pairs, side.Name)
				res, err := runOn(ctx, side, s, log)
				if err != nil {
					return nil, fmt.Errorf("%s on %s (pair %d): %w", name, side.Name, pair+1, err)
				}
				if err := driven(name, res); err != nil {
					return nil, fmt.Errorf("%s on %s (pair %d): %w", name, side.Name, pair+1, err)
				}
				sc.Runs[i] = append(sc.Runs[i], *res)
			}
		}
		sc.Rows = compareRows(name, sc.Runs)
		cmp.Scenarios = append(cmp.Scenarios, sc)
	}
	cmp.LoadAfter = loadavg()
	return cmp, nil
}

func runOn(ctx context.Context, side Side, s Settings, log io.Writer) (*Result, error) {
	sp, err := side.Spawn(ctx, &s)
	if err != nil {
		return nil, err
	}
	res, err := Run(ctx, sp.Target, s, log)
	if err != nil && sp.log != nil {
		// The server's own account of it goes with its folder: keep the end.
		if b, rerr := os.ReadFile(sp.log.Name()); rerr == nil && len(b) > 0 {
			err = fmt.Errorf("%w\nthe end of %s's log:\n%s", err, side.Name, tail(b, 1500))
		}
	}
	if stopErr := sp.Stop(); stopErr != nil {
		fmt.Fprintf(log, "sealbench: stopping %s: %v\n", side.Name, stopErr)
	}
	return res, err
}

// driven checks that a run did what its scenario is about.
func driven(name string, r *Result) error {
	switch name {
	case "relay", "latency", "drain":
		if r.Delivered == 0 {
			return fmt.Errorf("no message was delivered (errors: %v)", r.Errors)
		}
	case "store":
		if r.Accepted == 0 {
			return fmt.Errorf("no message was stored (errors: %v)", r.Errors)
		}
	case "memory":
		if n := len(r.Points); n < 2 || r.Points[n-1].Devices == 0 {
			return fmt.Errorf("no device registered (errors: %v)", r.Errors)
		}
	}
	return nil
}

// compareFigure is one figure of a comparison scenario.
type compareFigure struct {
	name, unit   string
	higherBetter bool
	noRatio      bool
	value        func(r *Result) float64
}

func perMessage(cpu float64, n int) float64 {
	if n == 0 {
		return 0
	}
	return cpu / float64(n) * 1e6
}

// compareFigures are the figures compared in scenario name.
func compareFigures(name string) []compareFigure {
	cpuDelivered := compareFigure{name: "server CPU per delivered message", unit: "µs",
		value: func(r *Result) float64 { return perMessage(r.Server.CPUSeconds, r.Delivered) }}
	lost := compareFigure{name: "lost", noRatio: true, value: func(r *Result) float64 { return float64(r.Lost) }}
	switch name {
	case "relay":
		return []compareFigure{
			{name: "delivered/s", unit: "msg/s", higherBetter: true, value: func(r *Result) float64 { return r.DeliveredPerSec }},
			cpuDelivered,
			{name: "submit→device p50 (unpaced: queueing)", unit: "ms", value: func(r *Result) float64 { return r.ArrivalLatency.P50 }},
			{name: backlogFigure, noRatio: true, value: func(r *Result) float64 { return float64(r.QueuedAtSendEnd) }},
			lost,
		}
	case "latency":
		return []compareFigure{
			{name: "submit→device p50", unit: "ms", value: func(r *Result) float64 { return r.ArrivalLatency.P50 }},
			{name: "submit→device p99", unit: "ms", value: func(r *Result) float64 { return r.ArrivalLatency.P99 }},
			{name: "delivered/s (offered rate carried?)", unit: "msg/s", higherBetter: true, value: func(r *Result) float64 { return r.DeliveredPerSec }},
			cpuDelivered,
			lost,
		}
	case "store":
		return []compareFigure{
			{name: "stored/s (answered 202)", unit: "msg/s", higherBetter: true, value: func(r *Result) float64 { return r.AcceptedPerSec }},
			{name: "server CPU per stored message", unit: "µs", value: func(r *Result) float64 { return perMessage(r.Server.CPUSeconds, r.Accepted) }},
			{name: "submit→202 p99", unit: "ms", value: func(r *Result) float64 { return r.SubmitLatency.P99 }},
		}
	case "drain":
		return []compareFigure{
			{name: "drain time", unit: "s", value: func(r *Result) float64 { return r.DrainSeconds }},
			cpuDelivered,
			lost,
			{name: "out of order", noRatio: true, value: func(r *Result) float64 { return float64(r.OutOfOrder) }},
		}
	case "memory":
		return []compareFigure{
			{name: "memory per idle TLS device (PSS)", unit: "KiB", value: func(r *Result) float64 { return r.PerDevicePSSKiB }},
			{name: "memory per idle TLS device (RSS added over processes)", unit: "KiB", value: func(r *Result) float64 { return r.PerDeviceKiB }},
		}
	}
	return nil
}

func compareRows(name string, runs [2][]Result) []CompareRow {
	var rows []CompareRow
	for _, f := range compareFigures(name) {
		row := CompareRow{Figure: f.name, Unit: f.unit, HigherBetter: f.higherBetter, NoRatio: f.noRatio}
		var vals [2][]float64
		for side := range runs {
			for i := range runs[side] {
				vals[side] = append(vals[side], f.value(&runs[side][i]))
			}
			row.Median[side], row.Spread[side] = median(vals[side])
		}
		var ratios []float64
		for i := range min(len(vals[0]), len(vals[1])) {
			if vals[0][i] != 0 {
				ratios = append(ratios, vals[1][i]/vals[0][i])
			}
		}
		if len(ratios) == 0 || f.noRatio {
			row.NoRatio = true
		} else {
			row.Ratio, _ = median(ratios)
			row.RatioMin, row.RatioMax = slices.Min(ratios), slices.Max(ratios)
		}
		rows = append(rows, row)
	}
	return rows
}

// WriteTable prints the comparison: per scenario, both medians, the ratio
// of the second side to the first, and notes; then the machine's pace.
func (c *Comparison) WriteTable(w io.Writer) {
	a, b := c.Sides[0], c.Sides[1]
	var pace Pace
	for _, sc := range c.Scenarios {
		s := c.Settings.settings(sc.Name)
		fmt.Fprintf(w, "## %s via SIP/TLS: %s and %s, %d interleaved pairs\n\n", sc.Name, a, b, c.Settings.Pairs)
		fmt.Fprintf(w, "| figure | %s: median (spread) | %s: median (spread) | %s / %s: median of pairs (range) |\n| --- | --- | --- | --- |\n", a, b, b, a)
		for _, r := range sc.Rows {
			name := r.Figure
			if !r.NoRatio {
				if r.HigherBetter {
					name += " (higher is better)"
				} else {
					name += " (lower is better)"
				}
			}
			ratio := "—"
			if !r.NoRatio {
				ratio = fmt.Sprintf("**%.2f×** (%.2f–%.2f)", r.Ratio, r.RatioMin, r.RatioMax)
			}
			fmt.Fprintf(w, "| %s | %s (%s) | %s (%s) | %s |\n", name,
				formatValue(r.Median[0], r.Unit), formatValue(r.Spread[0], ""),
				formatValue(r.Median[1], r.Unit), formatValue(r.Spread[1], ""), ratio)
		}
		fmt.Fprintln(w)
		for side, runs := range sc.Runs {
			var other, cpu, tool []float64
			for _, r := range runs {
				other = append(other, r.Other.CPUPercent)
				cpu = append(cpu, r.Server.CPUPercent)
				tool = append(tool, r.Tool.CPUPercent)
				for _, n := range r.Notes {
					if !strings.HasPrefix(n, "CPU at rest") {
						fmt.Fprintf(w, "note (%s): %s\n", c.Sides[side], n)
					}
				}
				if len(r.Errors) > 0 {
					fmt.Fprintf(w, "errors (%s):", c.Sides[side])
					for _, k := range sortedKeys(r.Errors) {
						fmt.Fprintf(w, " %s=%d", k, r.Errors[k])
					}
					fmt.Fprintln(w)
				}
				pace = r.Machine.Pace
			}
			fmt.Fprintf(w, "%s: server CPU %s %% of a core (processes: %d); sealbench %s %%; other processes %s %%\n",
				c.Sides[side], joinFloats(cpu), runs[0].Server.Processes, joinFloats(tool), joinFloats(other))
		}
		if sc.Name == "latency" {
			for side, runs := range sc.Runs {
				for _, r := range runs {
					if r.DeliveredPerSec < 0.95*s.Rate {
						fmt.Fprintf(w, "note: %s delivered %.0f msg/s of the %g offered: its latencies are those of a backlog; choose a lower --rate\n", c.Sides[side], r.DeliveredPerSec, s.Rate)
						break
					}
				}
			}
		}
		fmt.Fprintf(w, "settings: %s\n\n", s.describe())
	}
	fmt.Fprintf(w, "pace: %s\n", pace)
	fmt.Fprintf(w, "load average before / after: %s / %s\n", c.LoadBefore, c.LoadAfter)
}

func joinFloats(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.0f", x)
		if math.IsNaN(x) {
			s[i] = "?"
		}
	}
	return strings.Join(s, " / ")
}

// loadavg returns the 1, 5 and 15 minute load averages of the machine.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
