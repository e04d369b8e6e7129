package loadtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// senders prepares the submitters of accounts [from, from+n): HTTPS
// connections with a token each, or registered devices for SIP.
func (r *run) senders(ctx context.Context, from, n int, devs []*device) ([]submitter, func(), error) {
	subs := make([]submitter, n)
	if r.s.Via == "sip" {
		for k := range subs {
			d := devs[k]
			if d == nil {
				var err error
				if d, err = r.connect(ctx, from+k); err != nil {
					return nil, nil, fmt.Errorf("registering sender %s: %w", r.s.AccountName(from+k), err)
				}
			}
			subs[k] = sipSubmitter(d)
		}
		return subs, func() {}, nil
	}
	accounts := make([]int, n)
	for k := range accounts {
		accounts[k] = from + k
	}
	toks, err := r.tokens(ctx, accounts)
	if err != nil {
		return nil, nil, err
	}
	closers := make([]func(), n)
	for k := range subs {
		subs[k], closers[k] = r.httpsSubmitter(toks[k])
	}
	return subs, func() {
		for _, c := range closers {
			c()
		}
	}, nil
}

// sendAll runs the senders until the pacer stops them and returns when
// all have finished.
func (r *run) sendAll(ctx, sendCtx context.Context, subs []submitter, firstSender int, p *pacer, pick func(sender int) func() int, track bool) {
	var wg sync.WaitGroup
	for k, sub := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sendLoop(ctx, sendCtx, firstSender+k, sub, p, pick(k), track)
		}()
	}
	wg.Wait()
}

// relay: recipients online; senders submit; measured end to end.
func (r *run) relay(ctx context.Context) error {
	s := r.s
	r.logf("relay: registering %d recipient devices", s.Recipients)
	devs := r.connectAllTo(ctx, r.recipientDev, 0, s.Recipients)
	if n := r.errs.total(); n > 0 {
		return fmt.Errorf("relay: %d of %d recipient devices failed to register: %v", n, s.Recipients, r.errs.snapshot())
	}
	_ = devs
	subs, closeSubs, err := r.senders(ctx, s.Recipients, s.Senders, make([]*device, s.Senders))
	if err != nil {
		return err
	}
	defer closeSubs()
	r.logf("relay: %d senders via %s for %v", s.Senders, s.Via, s.Duration)
	sendCtx, cancel := context.WithTimeout(ctx, s.Duration)
	defer cancel()
	if err := r.startWindow(); err != nil {
		return err
	}
	p := &pacer{rate: s.Rate, max: int64(s.Messages), start: time.Now()}
	r.sendAll(ctx, sendCtx, subs, s.Recipients, p, func(k int) func() int {
		// Each sender walks the recipients from its own offset, so the
		// load spreads over every mailbox.
		next := k * s.Recipients / s.Senders
		return func() int { next = (next + 1) % s.Recipients; return next }
	}, true)
	sendEnd := time.Now()
	r.res.QueuedAtSendEnd = max(0, int(r.accepted.Load()-r.arrived.Load()))
	missing := r.waitArrivals(ctx, s.Grace)
	end := time.Unix(0, r.lastArrival.Load())
	if end.Before(sendEnd) {
		end = sendEnd
	}
	if err := r.endWindow(end); err != nil {
		return err
	}
	r.res.Lost = missing
	r.rates(sendEnd)
	return nil
}

// rates fills the per-second figures: accepted over the sending phase,
// delivered over the whole window (until the last arrival).
func (r *run) rates(sendEnd time.Time) {
	if d := sendEnd.Sub(r.window.start).Seconds(); d > 0 {
		r.res.AcceptedPerSec = float64(r.accepted.Load()) / d
	}
	if d := r.res.Seconds; d > 0 {
		r.res.DeliveredPerSec = float64(r.arrived.Load()) / d
	}
}

// store: recipients offline; senders submit; measured submit → 202.
func (r *run) store(ctx context.Context) error {
	s := r.s
	subs, closeSubs, err := r.senders(ctx, s.Recipients, s.Senders, make([]*device, s.Senders))
	if err != nil {
		return err
	}
	defer closeSubs()
	r.logf("store: %d senders via %s to %d offline recipients for %v", s.Senders, s.Via, s.Recipients, s.Duration)
	sendCtx, cancel := context.WithTimeout(ctx, s.Duration)
	defer cancel()
	if err := r.startWindow(); err != nil {
		return err
	}
	p := &pacer{rate: s.Rate, max: int64(s.Messages), start: time.Now()}
	r.sendAll(ctx, sendCtx, subs, s.Recipients, p, func(k int) func() int {
		next := k * s.Recipients / s.Senders
		return func() int { next = (next + 1) % s.Recipients; return next }
	}, false)
	if err := r.endWindow(time.Time{}); err != nil {
		return err
	}
	r.rates(r.window.end)
	return nil
}

// drain: Messages stored for one offline account (recipient 0), then it
// registers; measured from REGISTER until the last message is answered.
func (r *run) drain(ctx context.Context) error {
	s := r.s
	subs, closeSubs, err := r.senders(ctx, 1, s.Senders, make([]*device, s.Senders))
	if err != nil {
		return err
	}
	defer closeSubs()
	r.logf("drain: storing %d messages for %s from %d senders", s.Messages, s.AccountName(0), s.Senders)
	sendCtx, cancel := context.WithTimeout(ctx, s.Duration)
	defer cancel()
	p := &pacer{max: int64(s.Messages), start: time.Now()}
	t0 := time.Now()
	r.sendAll(ctx, sendCtx, subs, 1, p, func(int) func() int { return func() int { return 0 } }, true)
	if d := time.Since(t0).Seconds(); d > 0 {
		r.res.AcceptedPerSec = float64(r.accepted.Load()) / d
	}
	if got := r.accepted.Load(); got < int64(s.Messages) {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("only %d of %d messages were stored (see errors; is --max-pending on the server at least %d?)", got, s.Messages, s.Messages))
	}
	r.logf("drain: %d stored; registering %s", r.accepted.Load(), s.AccountName(0))
	if err := r.startWindow(); err != nil {
		return err
	}
	d, err := r.dev.dial(ctx, s.AccountName(0), r.t.Password)
	if err != nil {
		return fmt.Errorf("drain: connecting the recipient: %w", err)
	}
	r.mu.Lock()
	r.devices = append(r.devices, d)
	r.mu.Unlock()
	start := time.Now()
	if err := d.register(ctx); err != nil {
		return fmt.Errorf("drain: registering the recipient: %w", err)
	}
	missing := r.waitArrivals(ctx, s.Grace)
	end := time.Unix(0, r.lastArrival.Load())
	if r.lastArrival.Load() == 0 {
		end = time.Now() // nothing arrived
	}
	if err := r.endWindow(end); err != nil {
		return err
	}
	select {
	case <-d.dropped:
		r.res.Dropped = true
		r.errs.add("connection_dropped", 1)
	default:
	}
	r.res.Lost = missing
	r.res.DrainSeconds = end.Sub(start).Seconds()
	if missing > 0 || r.res.DrainSeconds < 0 {
		r.res.DrainSeconds = time.Since(start).Seconds()
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("%d messages had not arrived after %v", missing, s.Grace))
	}
	if r.res.DrainSeconds > 0 {
		r.res.DeliveredPerSec = float64(r.arrived.Load()) / r.res.DrainSeconds
	}
	return nil
}

// connections: devices registered and idle; resident memory per device and
// CPU at rest.
func (r *run) connections(ctx context.Context) error {
	s := r.s
	if err := r.startWindow(); err != nil {
		return err
	}
	p0, err := r.settledMemory(ctx)
	if err != nil {
		return err
	}
	r.res.Points = append(r.res.Points, r.runtimePoint(ctx, Point{Devices: 0, RSSMiB: mib(p0.RSS), PSSMiB: mib(p0.PSS)}))
	r.logf("connections: 0 devices, server RSS %.1f MiB", mib(p0.RSS))
	have := 0
	for _, step := range s.Steps {
		before := r.errs.total()
		t0 := time.Now()
		r.connectAll(ctx, have, step)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failed := r.errs.total() - before
		r.logf("connections: %d devices registered in %v (%d failed)", step-failed, time.Since(t0).Round(time.Millisecond), failed)
		have = step
		p, err := r.settledMemory(ctx)
		if err != nil {
			return err
		}
		r.res.Points = append(r.res.Points, r.runtimePoint(ctx, Point{Devices: step - failed, RSSMiB: mib(p.RSS), PSSMiB: mib(p.PSS), Failed: failed}))
		r.logf("connections: %d devices, server RSS %.1f MiB", step-failed, mib(p.RSS))
	}
	var xs, ys, pss []float64
	for _, p := range r.res.Points {
		xs, ys, pss = append(xs, float64(p.Devices)), append(ys, p.RSSMiB*(1<<20)), append(pss, p.PSSMiB*(1<<20))
	}
	r.res.PerDeviceKiB = slope(xs, ys) / 1024
	r.res.PerDevicePSSKiB = slope(xs, pss) / 1024

	// CPU at rest: the devices only send their keepalives.
	last := r.res.Points[len(r.res.Points)-1].Devices
	r.logf("connections: measuring CPU at rest for %v", s.Idle)
	c0, err := readProcs(r.pids)
	if err != nil {
		return err
	}
	pings0 := r.dev.pings.Load()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.Idle):
	}
	c1, err := readProcs(r.pids)
	if err != nil {
		return err
	}
	idle := (c1.CPU - c0.CPU).Seconds()
	r.res.IdleCPUPercent = 100 * idle / s.Idle.Seconds()
	if last > 0 {
		r.res.IdleCPUPer20k = r.res.IdleCPUPercent * 20000 / float64(last)
	}
	r.res.Notes = append(r.res.Notes, fmt.Sprintf("CPU at rest: %.2f s over %v with %d devices, %d keepalive pings in that window",
		idle, s.Idle, last, r.dev.pings.Load()-pings0))
	if err := r.endWindow(time.Time{}); err != nil {
		return err
	}
	r.res.Seconds = s.Idle.Seconds()
	return nil
}

// memory is the server's resident memory at one point.
type memory struct{ RSS, PSS int64 }

// settledMemory waits Settle (after asking the server for a GC, with
// ForceGC) and returns its resident memory, RSS and PSS.
func (r *run) settledMemory(ctx context.Context) (memory, error) {
	if err := r.forceGC(ctx); err != nil {
		r.res.Notes = append(r.res.Notes, err.Error())
	}
	select {
	case <-ctx.Done():
		return memory{}, ctx.Err()
	case <-time.After(r.s.Settle):
	}
	p, err := readProcs(r.pids)
	if err != nil {
		return memory{}, err
	}
	pss, err := readPSS(r.pids)
	return memory{RSS: p.RSS, PSS: pss}, err
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// runtimePoint adds the Go runtime's memory figures from the server's
// /metrics to p, if the admin listener is known and answers.
func (r *run) runtimePoint(ctx context.Context, p Point) Point {
	if r.t.Admin == "" {
		return p
	}
	m, err := scrape(ctx, "http://"+r.t.Admin+"/metrics", r.s.Timeout)
	if err != nil {
		r.res.Notes = append(r.res.Notes, err.Error())
		return p
	}
	p.HeapLiveMiB = m["go_memstats_heap_alloc_bytes"] / (1 << 20)
	p.HeapSpansMiB = m["go_memstats_heap_inuse_bytes"] / (1 << 20)
	p.StackMiB = m["go_memstats_stack_inuse_bytes"] / (1 << 20)
	p.Goroutines = int(m["go_goroutines"])
	return p
}

// mixed: most devices idle, some sending to random devices at Rate, and
// Churn devices a second going offline for Offline and registering again.
func (r *run) mixed(ctx context.Context) error {
	s := r.s
	r.logf("mixed: registering %d devices", s.Recipients)
	slots := r.connectAll(ctx, 0, s.Recipients)
	if n := r.errs.total(); n > 0 {
		return fmt.Errorf("mixed: %d of %d devices failed to register: %v", n, s.Recipients, r.errs.snapshot())
	}
	subs, closeSubs, err := r.senders(ctx, 0, s.Senders, slots[:s.Senders])
	if err != nil {
		return err
	}
	defer closeSubs()
	r.logf("mixed: %d of them send via %s at %g msg/s for %v; %g a second go offline for %v", s.Senders, s.Via, s.Rate, s.Duration, s.Churn, s.Offline)
	sendCtx, cancel := context.WithTimeout(ctx, s.Duration)
	defer cancel()
	if err := r.startWindow(); err != nil {
		return err
	}

	// Churn: only devices that do not send go offline, so a sender never
	// loses its connection mid-submission.
	var churnWG sync.WaitGroup
	var reconnects atomic.Int64
	var offline sync.Map // account index → true while offline
	churnable := s.Recipients - s.Senders
	if s.Churn > 0 && churnable > 0 {
		churnWG.Add(1)
		go func() {
			defer churnWG.Done()
			tick := time.NewTicker(time.Duration(float64(time.Second) / s.Churn))
			defer tick.Stop()
			for {
				select {
				case <-sendCtx.Done():
					return
				case <-tick.C:
				}
				i := s.Senders + rand.IntN(churnable)
				if _, busy := offline.LoadOrStore(i, true); busy {
					continue
				}
				r.mu.Lock()
				d := slots[i]
				r.mu.Unlock()
				if d != nil {
					d.Close()
				}
				churnWG.Add(1)
				go func() {
					defer churnWG.Done()
					// Come back after Offline even if sending has ended:
					// the messages stored meanwhile must be delivered.
					time.Sleep(s.Offline)
					nd, err := r.connect(ctx, i)
					if err != nil {
						r.errs.add("reconnect:"+errorKind(err), 1)
					} else {
						reconnects.Add(1)
					}
					r.mu.Lock()
					slots[i] = nd
					r.mu.Unlock()
					offline.Delete(i)
				}()
			}
		}()
	}
	p := &pacer{rate: s.Rate, max: int64(s.Messages), start: time.Now()}
	r.sendAll(ctx, sendCtx, subs, 0, p, func(k int) func() int {
		rng := rand.New(rand.NewPCG(uint64(k), 1))
		return func() int {
			for {
				if to := rng.IntN(s.Recipients); to != k {
					return to
				}
			}
		}
	}, true)
	sendEnd := time.Now()
	cancel() // the churn goes on only while messages are sent
	churnWG.Wait()
	missing := r.waitArrivals(ctx, s.Grace)
	end := time.Unix(0, r.lastArrival.Load())
	if end.Before(sendEnd) {
		end = sendEnd
	}
	if err := r.endWindow(end); err != nil {
		return err
	}
	r.res.Lost = missing
	r.res.Reconnects = int(reconnects.Load())
	r.rates(sendEnd)
	return nil
}
