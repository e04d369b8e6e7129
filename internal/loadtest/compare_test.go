package loadtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestCompareInterleaves compares two in-process servers (Kamailio is
// driven in cmd/sealbench's TestCompareShortRun): each scenario runs its
// pairs A, B, A, B on fresh servers, and the table gives both medians and
// the ratio of B to A.
func TestCompareInterleaves(t *testing.T) {
	c := DefaultCompare()
	c.Scenarios = []string{"relay", "drain"}
	c.Pairs, c.Duration, c.Recipients, c.Senders, c.Messages, c.Timeout = 2, 300*time.Millisecond, 3, 2, 30, 10*time.Second
	var mu sync.Mutex
	var order []string
	side := func(name string) Side {
		return Side{Name: name, Spawn: func(ctx context.Context, s *Settings) (*Spawned, error) {
			mu.Lock()
			order = append(order, s.Scenario+":"+name)
			mu.Unlock()
			return &Spawned{Target: startTarget(t, s)}, nil
		}}
	}
	cmp, err := Compare(context.Background(), c, [2]Side{side("A"), side("B")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"relay:A", "relay:B", "relay:A", "relay:B", "drain:A", "drain:B", "drain:A", "drain:B"}
	if !slices.Equal(order, want) {
		t.Errorf("runs in the order %v, want %v", order, want)
	}
	for _, sc := range cmp.Scenarios {
		for side := range sc.Runs {
			if len(sc.Runs[side]) != 2 {
				t.Fatalf("%s: %d runs of side %d", sc.Name, len(sc.Runs[side]), side)
			}
			for _, r := range sc.Runs[side] {
				if r.Delivered == 0 || r.Lost != 0 || r.Settings.Via != "sip" {
					t.Errorf("%s side %d: delivered %d, lost %d, via %s", sc.Name, side, r.Delivered, r.Lost, r.Settings.Via)
				}
			}
		}
		if sc.Rows[0].NoRatio || sc.Rows[0].Ratio <= 0 || sc.Rows[0].RatioMin > sc.Rows[0].Ratio || sc.Rows[0].RatioMax < sc.Rows[0].Ratio {
			t.Errorf("%s: first row %+v", sc.Name, sc.Rows[0])
		}
	}
	var out bytes.Buffer
	cmp.WriteTable(&out)
	for _, want := range []string{"## relay via SIP/TLS: A and B, 2 interleaved pairs", "| B / A: median of pairs (range) |",
		"| delivered/s (higher is better) |", "| drain time (lower is better) |", "pace: system call", "load average before / after"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCompareRows(t *testing.T) {
	res := func(delivered, lost int, perSec float64) Result {
		return Result{Delivered: delivered, Lost: lost, DeliveredPerSec: perSec, Server: Usage{CPUSeconds: float64(delivered) * 100e-6}}
	}
	runs := [2][]Result{
		{res(10, 0, 100), res(10, 0, 200), res(10, 0, 400)},
		{res(10, 1, 50), res(10, 0, 300), res(10, 0, 400)},
	}
	rows := compareRows("relay", runs)
	r := rows[0] // delivered/s
	if r.Median != [2]float64{200, 300} || r.Spread != [2]float64{300, 350} {
		t.Errorf("medians %v, spreads %v", r.Median, r.Spread)
	}
	// Pair ratios 0.5, 1.5, 1.0: the median of the ratios, not the
	// ratio of the medians (1.5).
	if r.Ratio != 1.0 || r.RatioMin != 0.5 || r.RatioMax != 1.5 || !r.HigherBetter {
		t.Errorf("ratio %+v", r)
	}
	if cpu := rows[1]; cpu.Median != [2]float64{100, 100} || cpu.Ratio != 1 || cpu.HigherBetter {
		t.Errorf("CPU per message %+v", cpu)
	}
	if queued := rows[3]; !queued.NoRatio || !strings.HasPrefix(queued.Figure, "accepted, not yet arrived") {
		t.Errorf("backlog row %+v", queued)
	}
	if lost := rows[4]; !lost.NoRatio || lost.Median[1] != 0 || lost.Spread[1] != 1 {
		t.Errorf("lost %+v", lost)
	}
	zero := compareRows("relay", [2][]Result{{res(0, 0, 0)}, {res(10, 0, 10)}})
	if !zero[0].NoRatio {
		t.Errorf("a ratio to zero: %+v", zero[0])
	}
	c := DefaultCompare()
	c.Scenarios = []string{"relay", "flood"}
	if err := c.Check(); err == nil {
		t.Errorf("unknown scenario accepted")
	}
}

func TestTextCarriesID(t *testing.T) {
	r := &run{text: strings.Repeat("x", 160)}
	id := uuid.NewString()
	text := r.textFor(id)
	if len(text) != 160 || !strings.HasPrefix(text, id+" x") {
		t.Errorf("text %q", text)
	}
	if got := deliveredID(&sipMsg{body: []byte(text)}); got != id {
		t.Errorf("id from the text: %q, want %q", got, id)
	}
	if got := deliveredID(&sipMsg{messageID: "header-id", body: []byte(text)}); got != "header-id" {
		t.Errorf("the header comes first: %q", got)
	}
	short := &run{text: "xxxx"}
	if got := short.textFor(id); got != "xxxx" {
		t.Errorf("a text too short for the id: %q", got)
	}
}

func TestProcessTree(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	pids, err := processTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if pids[0] != os.Getpid() || !slices.Contains(pids, child.Process.Pid) {
		t.Errorf("tree %v lacks this process or its child %d", pids, child.Process.Pid)
	}
	self, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	sum, err := readProcs(pids)
	if err != nil || sum.RSS <= self.RSS {
		t.Errorf("RSS of the tree %d, of this process %d, %v", sum.RSS, self.RSS, err)
	}
	pss, err := readPSS(pids)
	if err != nil || pss <= 0 || pss > sum.RSS {
		t.Errorf("PSS %d, RSS %d, %v", pss, sum.RSS, err)
	}
	if _, err := processTree(1 << 30); err == nil {
		t.Errorf("the tree of a process that does not exist: no error")
	}
}
