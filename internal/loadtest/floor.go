package loadtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"
)

// The floor is what a bare Go TLS server costs for the same idle devices:
// one goroutine per connection (as sipgo has), a 1 KiB read buffer, nothing
// but CRLF ping → pong. It answers "could any Go server do better on this
// machine?" for the connections targets: the difference between it and
// sealpostd is what Sealpost adds (SIP parsing, registration state, the
// store), the rest is Go's runtime and the kernel.

// ServeFloor is the bare server: it listens on addr with the certificate and
// key files, prints its address on stdout and serves until ctx ends.
func ServeFloor(ctx context.Context, addr, certFile, keyFile string, stdout io.Writer) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	l, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, l.Addr().String())
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 1024)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if n == 4 && string(buf[:4]) == "\r\n\r\n" {
					if _, err := c.Write(buf[:2]); err != nil {
						return
					}
				}
			}
		}()
	}
}

// FloorResult is the bare server's figures.
type FloorResult struct {
	Devices        int     `json:"devices"`
	RSSMiB         float64 `json:"rss_mib"`
	BaseRSSMiB     float64 `json:"base_rss_mib"`
	PerDeviceKiB   float64 `json:"per_device_kib"`
	IdleCPUPercent float64 `json:"idle_cpu_percent_of_core"`
	IdleCPUPer20k  float64 `json:"idle_cpu_percent_of_core_per_20000"`
	Pongs          int64   `json:"pongs"`
	OtherPercent   float64 `json:"other_processes_cpu_percent_of_core"`
	Pace           Pace    `json:"pace"`
}

// Floor starts the bare server as a child process (self, with args), opens
// devices TLS connections to it from sources, lets them ping every
// keepalive, waits settle, and measures the server's CPU over idle.
func Floor(ctx context.Context, self []string, certFile string, devices int, keepalive, settle, idle time.Duration, srcs []string, log io.Writer) (*FloorResult, error) {
	if devices < 1 || keepalive <= 0 || idle <= 0 {
		return nil, errors.New("floor needs devices, keepalive and idle above zero")
	}
	// Before anything starts: on a quiet machine, and a failure costs no
	// measurement.
	pace, err := machinePace()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self[0], self[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the bare server: %w", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var addr string
	if _, err := fmt.Fscanln(out, &addr); err != nil {
		return nil, fmt.Errorf("reading the bare server's address: %w", err)
	}
	pid := cmd.Process.Pid
	base, err := readProc(pid)
	if err != nil {
		return nil, err
	}
	ips := make([]net.IP, len(srcs))
	for i, a := range srcs {
		if ips[i] = net.ParseIP(a); ips[i] == nil || !ips[i].IsLoopback() {
			return nil, fmt.Errorf("source %q is not a loopback address", a)
		}
	}
	src := &sources{ips: ips}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	cfg, err := clientTLS(pem, addr)
	if err != nil {
		return nil, err
	}

	var pongs atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	stop := make(chan struct{})
	defer close(stop)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && int(next.Add(1)) <= devices {
				d := tls.Dialer{NetDialer: &net.Dialer{LocalAddr: src.next(), Timeout: 15 * time.Second}, Config: cfg}
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				go func() {
					b := make([]byte, 64)
					for {
						n, err := c.Read(b)
						if err != nil {
							return
						}
						pongs.Add(int64(n / 2))
					}
				}()
				go func() {
					t := time.NewTimer(time.Duration(rand.Int64N(int64(keepalive))) + time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-stop:
							return
						case <-t.C:
						}
						if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
							return
						}
						t.Reset(keepalive)
					}
				}()
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("%d of %d connections to the bare server failed", n, devices)
	}
	fmt.Fprintf(log, "sealbench: floor: %d connections open; settling %v, then measuring %v at rest\n", devices, settle, idle)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(settle):
	}
	p0, err := readProc(pid)
	if err != nil {
		return nil, err
	}
	busy0, _ := machineBusy()
	self0 := selfCPU()
	pongs0 := pongs.Load()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(idle):
	}
	p1, err := readProc(pid)
	if err != nil {
		return nil, err
	}
	busy1, _ := machineBusy()
	cpu := (p1.CPU - p0.CPU).Seconds()
	other := max(0, (busy1-busy0).Seconds()-cpu-(selfCPU()-self0).Seconds())
	r := &FloorResult{
		Devices: devices, RSSMiB: mib(p1.RSS), BaseRSSMiB: mib(base.RSS),
		PerDeviceKiB:   float64(p1.RSS-base.RSS) / 1024 / float64(devices),
		IdleCPUPercent: 100 * cpu / idle.Seconds(),
		Pongs:          pongs.Load() - pongs0,
		OtherPercent:   100 * other / idle.Seconds(),
	}
	r.IdleCPUPer20k = r.IdleCPUPercent * 20000 / float64(devices)
	r.Pace = pace
	return r, nil
}

// WriteTable prints the floor's figures.
func (r *FloorResult) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "## floor: a bare Go TLS server answering CRLF keepalives, %d devices\n\n", r.Devices)
	fmt.Fprintf(w, "| figure | value |\n| --- | --- |\n")
	fmt.Fprintf(w, "| RSS at 0 / %d devices | %.1f / %.1f MiB |\n", r.Devices, r.BaseRSSMiB, r.RSSMiB)
	fmt.Fprintf(w, "| per device (no collection forced, no trimming) | %.1f KiB |\n", r.PerDeviceKiB)
	fmt.Fprintf(w, "| CPU at rest | %.2f %% of a core |\n", r.IdleCPUPercent)
	fmt.Fprintf(w, "| CPU at rest per 20,000 devices | %.2f %% of a core |\n", r.IdleCPUPer20k)
	fmt.Fprintf(w, "| pongs in the window | %d |\n", r.Pongs)
	fmt.Fprintf(w, "| other processes CPU | %.2f %% of a core |\n\n", r.OtherPercent)
	fmt.Fprintf(w, "pace: %s\n\n", r.Pace)
}
