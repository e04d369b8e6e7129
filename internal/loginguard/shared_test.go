package loginguard

import (
	"fmt"
	"testing"
)

// TestGuessingSpreadOverNodesIsLimitedAsOnOne: two guards that share their
// verdicts (as cluster does over NATS) limit guesses alternating between
// them after the same free failures as one guard; a success that cleared
// failures clears them on the other node too, and a plain success is not
// shared at all.
func TestGuessingSpreadOverNodesIsLimitedAsOnOne(t *testing.T) {
	a, clk, _ := newGuard(t)
	b := New(Settings{}, clk, nil)
	var shared []string
	link := func(from, to *Guard, name string) {
		from.Share(func(account, source string, ok bool) {
			shared = append(shared, fmt.Sprintf("%s:%s:%s:%v", name, account, source, ok))
			to.Learn(account, source, ok)
		})
	}
	link(a, b, "a")
	link(b, a, "b")

	nodes := []*Guard{a, b}
	for i := range DefaultAddressFreeFailures {
		if !try(nodes[i%2], "carol", "192.0.2.1:5000", false) {
			t.Fatalf("free failure %d limited", i+1)
		}
	}
	for i, g := range nodes {
		if at, wait := g.Reserve("carol", "192.0.2.1:6000", "test"); at != nil || wait != DefaultFirstDelay {
			t.Fatalf("node %d after %d failures spread over both: attempt %v, wait %v; want limited for %v",
				i, DefaultAddressFreeFailures, at, wait, DefaultFirstDelay)
		}
	}
	if len(shared) != DefaultAddressFreeFailures {
		t.Fatalf("shared %d verdicts for %d failures: %v", len(shared), DefaultAddressFreeFailures, shared)
	}

	// The owner of the address gets in on a after the wait: b forgets its
	// failures too, so its next mistyped passwords are free ones again.
	clk.Advance(DefaultFirstDelay)
	if !try(a, "carol", "192.0.2.1", true) {
		t.Fatal("right password after the wait limited")
	}
	if got := shared[len(shared)-1]; got != "a:carol:192.0.2.1:true" {
		t.Fatalf("last shared verdict %q, want a's success", got)
	}
	for i := range DefaultAddressFreeFailures {
		if !try(b, "carol", "192.0.2.1", false) {
			t.Fatalf("node b limits the address at failure %d after its success on node a", i+1)
		}
	}
	// A success with no failures before it is not shared: every login
	// of every device would otherwise cross the cluster.
	n := len(shared)
	if !try(a, "dave", "198.51.100.7", true) || len(shared) != n {
		t.Fatalf("a clean success was shared: %v", shared[n:])
	}
}
