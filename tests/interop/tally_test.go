package interop

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// clients are the standard SIP clients this package proves, in the order
// their summary lines are printed.
var clients = []string{"baresip", "linphonec"}

// tally counts one client's checks.
type tally struct{ passed, failed, skipped int }

var (
	tallyMu sync.Mutex
	tallies = map[string]*tally{} // client → its checks; guarded by tallyMu
)

// record counts the finished check t for each client taking part in it; a
// check between two clients counts for both.
func record(t *testing.T, names ...string) {
	tallyMu.Lock()
	defer tallyMu.Unlock()
	for _, n := range names {
		c := tallies[n]
		if c == nil {
			c = &tally{}
			tallies[n] = c
		}
		switch {
		case t.Skipped():
			c.skipped++
		case t.Failed():
			c.failed++
		default:
			c.passed++
		}
	}
}

// TestMain prints "CLIENT: N passed, N failed" per client after the run,
// the line CI and people read (shown by go test -v, or on failure).
func TestMain(m *testing.M) {
	code := m.Run()
	tallyMu.Lock()
	for _, n := range clients {
		c := tallies[n]
		if c == nil {
			continue
		}
		line := fmt.Sprintf("%s: %d passed, %d failed", n, c.passed, c.failed)
		if c.skipped > 0 {
			line += fmt.Sprintf(", %d skipped", c.skipped)
		}
		fmt.Println(line)
	}
	tallyMu.Unlock()
	os.Exit(code)
}
