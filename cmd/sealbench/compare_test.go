package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestCompareShortRun runs `sealbench compare` for a few seconds against a
// real Kamailio (bench/kamailio) and a real sealpostd built from this tree:
// every scenario once on each, tiny. It checks that both servers were driven
// and a ratio printed for each scenario's headline figure, never a speed.
func TestCompareShortRun(t *testing.T) {
	if _, err := exec.LookPath("kamailio"); err != nil {
		t.Skip("kamailio is not installed (.ci/install-kamailio.sh installs it): sealbench compare not run")
	}
	if testing.Short() {
		t.Skip("-short: sealbench compare not run")
	}
	bin := filepath.Join(t.TempDir(), "sealpostd")
	build := exec.Command("go", "build", "-o", bin, "github.com/sealpost/sealpost/cmd/sealpostd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building sealpostd: %v\n%s", err, out)
	}
	var out, errOut bytes.Buffer
	args := []string{"compare", "--spawn", bin, "--pairs", "1",
		"--recipients", "4", "--senders", "3", "--duration", "500ms", "--rate", "100",
		"--messages", "60", "--devices", "20", "--settle", "0s", "--timeout", "10s", "--kamailio-shm", "64",
		"--sources", "127.0.0.1-127.0.0.2"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("sealbench compare: %v\n%s", err, errOut.String())
	}
	table := out.String()
	// | figure (higher is better) | 3667 msg/s (0) | 1359 msg/s (0) | **0.37×** (0.37–0.37) |
	row := func(figure string) (kamailio, sealpostd, ratio float64) {
		t.Helper()
		re := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(figure) + ` \([a-z ]+\) \| (-?[0-9.]+) [^|]*\| (-?[0-9.]+) [^|]*\| \*\*(-?[0-9.]+)×\*\*`)
		m := re.FindStringSubmatch(table)
		if m == nil {
			t.Errorf("no row %q with both medians and a ratio in:\n%s", figure, table)
			return 0, 0, 0
		}
		f := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
		return f(m[1]), f(m[2]), f(m[3])
	}
	for _, c := range []struct {
		scenario, figure string
		positive         bool
	}{
		{"relay", "delivered/s", true},
		{"latency", "submit→device p99", true},
		{"store", "stored/s (answered 202)", true},
		{"drain", "drain time", true},
		// A few devices' memory is within the noise of a heap: only
		// that the row is there (compare itself fails a run in which
		// no device registered).
		{"memory", "memory per idle TLS device (PSS)", false},
	} {
		if !strings.Contains(table, "## "+c.scenario+" via SIP/TLS: Kamailio and sealpostd, 1 interleaved pairs") {
			t.Errorf("no %s section", c.scenario)
		}
		k, s, ratio := row(c.figure)
		if c.positive && (k <= 0 || s <= 0 || ratio <= 0) {
			t.Errorf("%s: %s Kamailio %v, sealpostd %v, ratio %v: both servers must have been driven", c.scenario, c.figure, k, s, ratio)
		}
	}
	for _, want := range []string{"| lost | 0 (0) | 0 (0) | — |", "Kamailio: server CPU", "sealpostd: server CPU", "pace: system call ", "load average before / after: "} {
		if !strings.Contains(table, want) {
			t.Errorf("output lacks %q:\n%s", want, table)
		}
	}
}
