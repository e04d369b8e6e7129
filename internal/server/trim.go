package server

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
)

// The Go runtime keeps heap memory it has freed, up to about its next
// collection goal, to reuse it. After a burst — thousands of devices
// registering at once, each TLS handshake leaving tens of KiB of garbage —
// that is many KiB per idle device kept resident for good (measured with
// sealbench connections: see BENCHMARKS.md). The trimmer checks every
// trimInterval; when the server allocated little during the interval (it is
// quiet: devices idle, keepalives only) and its heap (objects, garbage not
// yet collected, and free pages not returned) exceeds the live heap of the
// last collection by a quarter, it collects and returns the free memory to
// the OS once (debug.FreeOSMemory). Under load it never runs, so it costs
// nothing there; at rest the next check finds the heap at its live size.
// The check is cheap (a read of runtime metrics), so it runs often enough
// that a burst's garbage goes within seconds of the burst: checked every
// 10 s, it stayed resident for 10–20 s, and a reading of an idle server
// 15 s after 4,000 registrations found 22 or 30 KiB per device depending
// on which side of a check it fell.
const (
	trimInterval = 2 * time.Second
	// quietAllocRate is the allocation rate below which the server
	// counts as quiet: a few KiB per keepalive round of idle devices is
	// far under it, a message a millisecond is over it.
	quietAllocRate = 1 << 20 // bytes a second
	// trimMinFree keeps small servers from trimming for nothing.
	trimMinFree = 16 << 20
)

// trimmer runs the check on the server's clock.
type trimmer struct {
	clock clock.Clock
	// trim is debug.FreeOSMemory, replaced in tests.
	trim func()
	// read returns total bytes allocated, the heap's resident size
	// (objects, uncollected garbage, free pages not yet returned) and the
	// live heap found by the last collection.
	read func() (allocs, heap, live uint64)

	mu         sync.Mutex
	timer      clock.Timer // guarded by mu
	stopped    bool        // guarded by mu
	lastAllocs uint64      // guarded by mu
	trims      int         // guarded by mu
}

func newTrimmer(c clock.Clock) *trimmer {
	return &trimmer{clock: c, trim: debug.FreeOSMemory, read: readHeap}
}

func (t *trimmer) start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastAllocs, _, _ = t.read()
	t.timer = t.clock.AfterFunc(trimInterval, t.check)
}

func (t *trimmer) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.timer != nil {
		t.timer.Stop()
	}
}

func (t *trimmer) check() {
	allocs, heap, live := t.read()
	t.mu.Lock()
	quiet := allocs-t.lastAllocs < quietAllocRate*uint64(trimInterval/time.Second)
	t.lastAllocs = allocs
	t.mu.Unlock()
	if extra := heap - min(heap, live); quiet && extra > trimMinFree && extra > live/4 {
		t.trim()
		t.mu.Lock()
		t.trims++
		t.lastAllocs, _, _ = t.read() // the trim's own work is not load
		t.mu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.timer = t.clock.AfterFunc(trimInterval, t.check)
	}
}

var heapSamples = []metrics.Sample{
	{Name: "/gc/heap/allocs:bytes"},
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
	{Name: "/gc/heap/live:bytes"},
}

var heapSamplesMu sync.Mutex

func readHeap() (allocs, heap, live uint64) {
	heapSamplesMu.Lock()
	defer heapSamplesMu.Unlock()
	metrics.Read(heapSamples)
	v := func(i int) uint64 {
		if heapSamples[i].Value.Kind() != metrics.KindUint64 {
			return 0 // not in this Go version: the trimmer then never trims
		}
		return heapSamples[i].Value.Uint64()
	}
	return v(0), v(1) + v(2), v(3)
}
