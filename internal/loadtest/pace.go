package loadtest

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Pace is how fast this machine does the two things the server does most
// besides computing: enter the kernel, and make a small write durable.
// Machines sold as the same 2-vCPU kind differ here by several times (the
// same build stored half as many messages a second on one whose kernel
// pays for page-table isolation on every system call; BENCHMARKS.md has
// the figures), so every result carries these two: a result is only
// comparable with one taken at a similar pace.
type Pace struct {
	// SyscallNs is one getppid(2), the cheapest round trip into the
	// kernel: every read, write, fdatasync and futex wake pays it.
	SyscallNs float64 `json:"syscall_ns"`
	// FsyncMs is the median of writing 4 KiB and fdatasync(2) in Dir:
	// the floor under every group commit of the store.
	FsyncMs float64 `json:"fsync_4kib_ms"`
	Dir     string  `json:"fsync_dir"`
}

const (
	paceSyscalls = 100_000 // ~0.1 s at a slow 1 µs each
	paceFsyncs   = 64
)

// measurePace measures the machine's Pace, the fsync in a temporary file in
// dir (the tool does not know where a server started by hand keeps its
// data; a spawned one's folder is under the same temporary directory).
func measurePace(dir string) (Pace, error) {
	p := Pace{Dir: dir}
	start := time.Now()
	for range paceSyscalls {
		syscall.Getppid()
	}
	p.SyscallNs = float64(time.Since(start).Nanoseconds()) / paceSyscalls

	fail := func(err error) (Pace, error) {
		return p, fmt.Errorf("measuring the machine's pace (a 4 KiB write + fdatasync in %s; TMPDIR chooses the folder): %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "sealbench-pace-*")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	times := make([]time.Duration, paceFsyncs)
	for i := range times {
		t := time.Now()
		if _, err := f.WriteAt(block, 0); err != nil {
			return fail(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return fail(err)
		}
		times[i] = time.Since(t)
	}
	slices.Sort(times)
	p.FsyncMs = float64(times[len(times)/2].Microseconds()) / 1000
	return p, nil
}

var machinePace = sync.OnceValues(func() (Pace, error) { return measurePace(os.TempDir()) })

func (p Pace) String() string {
	return fmt.Sprintf("system call %.2f µs, 4 KiB write + fdatasync %.2f ms (median, in %s)", p.SyscallNs/1000, p.FsyncMs, p.Dir)
}
