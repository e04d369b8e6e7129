package server

import (
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
)

// The trimmer returns free heap to the OS only when the server is quiet and
// holds enough free memory to matter, and stops with the server.
func TestTrimmer(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	// heap is objects (live or garbage) plus free pages; live is the live
	// heap of the last collection.
	var allocs, heap, live uint64 = 0, 100 << 20, 100 << 20
	trims := 0
	tr := &trimmer{clock: clk,
		trim: func() {
			mu.Lock()
			defer mu.Unlock()
			trims++
			heap = live // what FreeOSMemory does: garbage collected, free pages returned
		},
		read: func() (uint64, uint64, uint64) {
			mu.Lock()
			defer mu.Unlock()
			return allocs, heap, live
		},
	}
	set := func(a, h uint64) { mu.Lock(); allocs, heap = a, h; mu.Unlock() }
	count := func() int { mu.Lock(); defer mu.Unlock(); return trims }
	tr.start()

	// Busy: 100 MiB allocated in the interval, heap at 300 MiB.
	set(100<<20, 300<<20)
	clk.Advance(trimInterval)
	if n := count(); n != 0 {
		t.Fatalf("trimmed %d times under load", n)
	}
	// Quiet now, but the heap only 20 MiB over live (under a quarter).
	set(100<<20+4096, 120<<20)
	clk.Advance(trimInterval)
	if n := count(); n != 0 {
		t.Fatalf("trimmed %d times with the heap 20 MiB over 100 MiB live", n)
	}
	// Quiet with the heap 200 MiB over live: one trim, and not again
	// while nothing new piles up.
	set(100<<20+8192, 300<<20)
	clk.Advance(trimInterval)
	clk.Advance(trimInterval)
	if n := count(); n != 1 {
		t.Fatalf("trimmed %d times when quiet with the heap 200 MiB over live, want 1", n)
	}
	tr.stop()
	set(100<<20+8192, 300<<20)
	clk.Advance(10 * trimInterval)
	if n := count(); n != 1 || clk.Pending() != 0 {
		t.Fatalf("after stop: %d trims, %d timers", n, clk.Pending())
	}
}
