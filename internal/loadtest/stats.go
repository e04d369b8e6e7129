package loadtest

import (
	"slices"
	"sort"
	"sync"
	"time"
)

// maxSamples bounds the memory a latency recorder may use (8 bytes a
// sample); past it samples are counted but not kept, and the summary says
// so.
const maxSamples = 4 << 20

// latencies records durations for percentiles. Every sample is kept (up to
// maxSamples) and sorted at the end: exact percentiles, and at the rates
// here (tens of thousands a second) the lock is never contended enough to
// matter.
type latencies struct {
	mu      sync.Mutex
	d       []time.Duration // guarded by mu
	dropped int             // guarded by mu
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	if len(l.d) < maxSamples {
		l.d = append(l.d, d)
	} else {
		l.dropped++
	}
	l.mu.Unlock()
}

// Latency summarises a set of durations, in milliseconds for JSON.
type Latency struct {
	N       int     `json:"n"`
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	Dropped int     `json:"samples_not_kept,omitempty"`
}

func (l *latencies) summary() Latency {
	l.mu.Lock()
	d := slices.Clone(l.d)
	dropped := l.dropped
	l.mu.Unlock()
	if len(d) == 0 {
		return Latency{Dropped: dropped}
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		// Nearest rank: the smallest sample with at least q of all
		// samples at or below it.
		i := int(q*float64(len(d))+0.999999) - 1
		i = min(max(i, 0), len(d)-1)
		return ms(d[i])
	}
	return Latency{N: len(d), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(d[len(d)-1]), Dropped: dropped}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// counts counts events by kind (errors, mostly).
type counts struct {
	mu sync.Mutex
	m  map[string]int // guarded by mu
}

func (c *counts) add(kind string, n int) {
	if n == 0 {
		return
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[kind] += n
	c.mu.Unlock()
}

func (c *counts) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

func (c *counts) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.m {
		n += v
	}
	return n
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// median returns the median of xs (the mean of the middle two for an even
// count) and the spread, max − min.
func median(xs []float64) (med, spread float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		med = s[n/2]
	} else {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[n-1] - s[0]
}

// slope fits y = a + b·x by least squares and returns b.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if len(xs) < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}
