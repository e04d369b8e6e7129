package loadtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/sealpost/sealpost/api"
)

// Target is the server under test.
type Target struct {
	HTTPS  string // host:port of the HTTPS API
	SIP    string // host:port of SIP over TLS
	Admin  string // host:port of the admin listener; "" if unknown
	CAFile string // PEM that verifies the server certificate
	Domain string // SIP domain (digest realm)
	// PID is the server process, for CPU and memory from /proc; 0 finds
	// the process listening on the SIP port.
	PID int
	// Password is the password of every bench account.
	Password string
	// DeviceSIP, if set, is where the recipient devices of relay register
	// (another node of a cluster); senders still use SIP and HTTPS.
	DeviceSIP string
	// PeerPIDs are the processes of the other nodes of a cluster, whose
	// CPU and memory count as the server's too.
	PeerPIDs []int
}

// Run runs one scenario against t and returns its result. log receives
// progress lines (nil: none).
func Run(ctx context.Context, t Target, s Settings, log io.Writer) (*Result, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	for _, a := range []string{t.HTTPS, t.SIP, t.Admin, t.DeviceSIP} {
		if err := checkLoopback(a); err != nil {
			return nil, err
		}
	}
	if t.Domain == "" {
		t.Domain = "localhost"
	}
	m := machine()
	pace, err := machinePace()
	if err != nil {
		return nil, err
	}
	m.Pace = pace
	if need := uint64(s.Connections()) + 64; m.OpenFiles > 0 && need > m.OpenFiles {
		return nil, fmt.Errorf("%s opens up to %d connections but this process may hold only %d open files: lower the device count, or raise the limit (ulimit -n; the hard limit bounds it)",
			s.Scenario, s.Connections(), m.OpenFiles)
	}
	if t.PID == 0 {
		pid, err := pidListeningOn(t.SIP)
		if err != nil {
			return nil, fmt.Errorf("finding the server process for /proc figures: %w (give --pid)", err)
		}
		t.PID = pid
	}
	pids, err := processTree(t.PID)
	if err != nil {
		return nil, fmt.Errorf("the server process for /proc figures: %w", err)
	}
	for _, pid := range t.PeerPIDs {
		peer, err := processTree(pid)
		if err != nil {
			return nil, fmt.Errorf("a peer node's process for /proc figures: %w", err)
		}
		pids = append(pids, peer...)
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA file: %w", err)
	}
	clientTLSConfig, err := clientTLS(pem, t.SIP)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.CAFile, err)
	}
	ips := make([]net.IP, len(s.Sources))
	for i, a := range s.Sources {
		ips[i] = net.ParseIP(a)
	}
	r := &run{
		t: t, s: s, log: log,
		src:   &sources{ips: ips},
		res:   &Result{Scenario: s.Scenario, Settings: s, Machine: m, Started: time.Now()},
		text:  strings.Repeat("x", s.TextChars),
		tls:   clientTLSConfig,
		stopC: make(chan struct{}),
	}
	r.res.Server.PID = t.PID
	r.res.Server.Processes = len(pids)
	r.pids = pids
	r.lastSeq = make([]map[int]int, s.Accounts())
	for i := range r.lastSeq {
		r.lastSeq[i] = map[int]int{}
	}
	devConfig := func(sipAddr string) *deviceConfig {
		return &deviceConfig{
			sipAddr: sipAddr, domain: t.Domain, tls: r.tls, sources: r.src, expires: 3600,
			keepalive: s.Keepalive, reports: s.Reports, timeout: s.Timeout, onMessage: r.onMessage,
		}
	}
	r.dev = devConfig(t.SIP)
	r.recipientDev = r.dev
	if t.DeviceSIP != "" {
		r.recipientDev = devConfig(t.DeviceSIP)
	}
	defer r.closeAll()
	switch s.Scenario {
	case "relay":
		err = r.relay(ctx)
	case "store":
		err = r.store(ctx)
	case "drain":
		err = r.drain(ctx)
	case "connections":
		err = r.connections(ctx)
	case "mixed":
		err = r.mixed(ctx)
	}
	if err != nil {
		return nil, err
	}
	r.finish()
	return r.res, nil
}

// clientTLS returns the devices' and senders' TLS settings: the server
// certificate verified against pem, for the host of addr.
func clientTLS(pem []byte, addr string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in the CA file")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(64)}, nil
}

func checkLoopback(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not on loopback: the tool sends traffic to this machine only", addr)
	}
	return nil
}

// run is the state of one scenario run.
type run struct {
	t    Target
	pids []int // the server's processes: t.PID and its descendants at the start
	s    Settings
	log  io.Writer
	src  *sources
	dev  *deviceConfig
	// recipientDev is dev, or for a cluster (Target.DeviceSIP) the same on
	// the node the recipient devices register on.
	recipientDev *deviceConfig
	tls          *tls.Config
	res          *Result
	text         string

	sent               sentTable
	submitLat, arrival latencies
	errs               counts
	submitted          atomic.Int64
	accepted           atomic.Int64
	arrived            atomic.Int64
	outOfOrder         atomic.Int64
	redelivered        atomic.Int64
	reports            atomic.Int64
	lastArrival        atomic.Int64 // UnixNano of the latest arrival
	// lastSeq[i] is, for recipient account i, the last sequence number
	// received from each sender. Only the read goroutine of account i's
	// current connection touches it (connections of one account never
	// overlap: a reconnect waits for the old read loop to end).
	lastSeq []map[int]int

	mu      sync.Mutex
	devices []*device // every device opened, for closeAll; guarded by mu
	stopped bool      // guarded by mu
	stopC   chan struct{}

	window struct {
		start      time.Time
		server     procSample
		tool       time.Duration
		busy       time.Duration // machineBusy at start
		rss        *rssSampler
		serverDone procSample
		toolDone   time.Duration
		end        time.Time
	}
}

// sentInfo is what the tool remembers of a message.
type sentInfo struct {
	sender, to, seq int
	at              time.Time
	arrived         bool
}

// sentTable maps message id → sentInfo, sharded to keep the senders and
// the devices' read loops off one lock. Arrived messages stay (marked), so
// a second delivery of the same id is told apart from an unknown one.
type sentTable struct {
	shards [64]struct {
		mu sync.Mutex
		m  map[string]*sentInfo
	}
	outstanding atomic.Int64 // put and not yet arrived or dropped
}

func (t *sentTable) shard(id string) int {
	var h uint32 = 2166136261
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return int(h % uint32(len(t.shards)))
}

func (t *sentTable) put(id string, info sentInfo) {
	sh := &t.shards[t.shard(id)]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = map[string]*sentInfo{}
	}
	sh.m[id] = &info
	sh.mu.Unlock()
	t.outstanding.Add(1)
}

// drop forgets a message whose submission failed.
func (t *sentTable) drop(id string) {
	sh := &t.shards[t.shard(id)]
	sh.mu.Lock()
	if info, ok := sh.m[id]; ok {
		delete(sh.m, id)
		if !info.arrived {
			t.outstanding.Add(-1)
		}
	}
	sh.mu.Unlock()
}

// arrive marks id arrived. known is false for an id never sent (or whose
// submission failed); first is false for a repeated delivery.
func (t *sentTable) arrive(id string) (info sentInfo, known, first bool) {
	sh := &t.shards[t.shard(id)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	p, ok := sh.m[id]
	if !ok {
		return sentInfo{}, false, false
	}
	first = !p.arrived
	if first {
		p.arrived = true
		t.outstanding.Add(-1)
	}
	return *p, true, first
}

// textFor returns the text of message id: the id, a space, and x's up to
// TextChars (only x's when that is too short to hold the id). A server that
// keeps no header of the submission when it stores a message (Kamailio's
// msilo keeps the body, its type, From and To) still delivers the id.
func (r *run) textFor(id string) string {
	if len(id)+1 > len(r.text) {
		return r.text
	}
	return id + " " + r.text[len(id)+1:]
}

// deliveredID returns the id of a delivered MESSAGE: its
// X-Sealpost-Message-ID header, else the id the text starts with.
func deliveredID(m *sipMsg) string {
	if m.messageID != "" {
		return m.messageID
	}
	id, _, _ := strings.Cut(string(m.body), " ")
	return id
}

// onMessage runs on a device's read goroutine for each delivered MESSAGE.
func (r *run) onMessage(d *device, m *sipMsg, at time.Time) {
	if strings.HasPrefix(m.contentType, api.ContentTypeIMDN) {
		r.reports.Add(1)
		return
	}
	info, known, first := r.sent.arrive(deliveredID(m))
	switch {
	case !known:
		r.errs.add("delivered_unknown_id", 1)
		return
	case !first:
		// At-least-once: a delivery whose 200 was lost with a dropped
		// connection comes again; a client drops the repeated id.
		r.redelivered.Add(1)
		return
	}
	if r.s.AccountName(info.to) != d.account {
		r.errs.add("delivered_to_wrong_device", 1)
		return
	}
	r.arrival.add(at.Sub(info.at))
	r.arrived.Add(1)
	for {
		last := r.lastArrival.Load()
		if at.UnixNano() <= last || r.lastArrival.CompareAndSwap(last, at.UnixNano()) {
			break
		}
	}
	seqs := r.lastSeq[info.to]
	if last, seen := seqs[info.sender]; seen && info.seq < last {
		r.outOfOrder.Add(1)
		return
	}
	seqs[info.sender] = info.seq
}

// startWindow begins the measured window: CPU of both processes and the
// server's peak RSS from here on.
func (r *run) startWindow() error {
	p, err := readProcs(r.pids)
	if err != nil {
		return err
	}
	r.window.start = time.Now()
	r.window.server = p
	r.window.tool = selfCPU()
	r.window.busy, _ = machineBusy()
	r.window.rss = startRSSSampler(r.pids, 100*time.Millisecond)
	return nil
}

// endWindow ends the measured window at end (zero: now).
func (r *run) endWindow(end time.Time) error {
	p, err := readProcs(r.pids)
	if err != nil {
		return err
	}
	r.window.serverDone = p
	r.window.toolDone = selfCPU()
	if end.IsZero() {
		end = time.Now()
	}
	r.window.end = end
	peak, err := r.window.rss.Stop()
	if err != nil {
		return err
	}
	wall := time.Since(r.window.start).Seconds()
	srv := (r.window.serverDone.CPU - r.window.server.CPU).Seconds()
	tool := (r.window.toolDone - r.window.tool).Seconds()
	r.res.Server.CPUSeconds, r.res.Server.CPUPercent = srv, 100*srv/wall
	r.res.Server.PeakRSSMiB = float64(peak) / (1 << 20)
	r.res.Tool.CPUSeconds, r.res.Tool.CPUPercent = tool, 100*tool/wall
	if busy, err := machineBusy(); err == nil && r.window.busy > 0 {
		other := max(0, (busy-r.window.busy).Seconds()-srv-tool)
		r.res.Other.CPUSeconds, r.res.Other.CPUPercent = other, 100*other/wall
		if r.res.Other.CPUPercent > 10 {
			r.res.Notes = append(r.res.Notes, fmt.Sprintf(
				"other processes used %.0f%% of a core during the run: the figures are not of a quiet machine", r.res.Other.CPUPercent))
		}
	}
	r.res.Seconds = end.Sub(r.window.start).Seconds()
	return nil
}

func (r *run) finish() {
	r.res.Submitted = int(r.submitted.Load())
	r.res.Accepted = int(r.accepted.Load())
	r.res.Delivered = int(r.arrived.Load())
	r.res.OutOfOrder = int(r.outOfOrder.Load())
	r.res.Redelivered = int(r.redelivered.Load())
	r.res.ReportsDelivered = int(r.reports.Load())
	r.res.SubmitLatency = r.submitLat.summary()
	r.res.ArrivalLatency = r.arrival.summary()
	r.res.Errors = r.errs.snapshot()
	r.res.Pings, r.res.Pongs = r.dev.pings.Load(), r.dev.pongs.Load()
	if r.recipientDev != r.dev {
		r.res.Pings += r.recipientDev.pings.Load()
		r.res.Pongs += r.recipientDev.pongs.Load()
	}
}

// connect opens and registers the device of account i.
func (r *run) connect(ctx context.Context, i int) (*device, error) {
	return r.connectTo(ctx, r.dev, i)
}

// connectTo registers account i's device with the settings c.
func (r *run) connectTo(ctx context.Context, c *deviceConfig, i int) (*device, error) {
	d, err := c.dial(ctx, r.s.AccountName(i), r.t.Password)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.devices = append(r.devices, d)
	r.mu.Unlock()
	if err := d.register(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// connectAll registers the devices of accounts [from, to) with
// Concurrency registrations in parallel. Failures are counted by kind and
// leave a nil entry.
func (r *run) connectAll(ctx context.Context, from, to int) []*device {
	return r.connectAllTo(ctx, r.dev, from, to)
}

// connectAllTo is connectAll with the device settings c.
func (r *run) connectAllTo(ctx context.Context, c *deviceConfig, from, to int) []*device {
	out := make([]*device, to-from)
	r.parallel(ctx, to-from, func(k int) {
		d, err := r.connectTo(ctx, c, from+k)
		if err != nil {
			r.errs.add("register:"+errorKind(err), 1)
			return
		}
		out[k] = d
	})
	return out
}

// parallel calls f(0..n-1) on Concurrency goroutines, stopping early when
// ctx ends.
func (r *run) parallel(ctx context.Context, n int, f func(k int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(r.s.Concurrency, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				f(k)
			}
		}()
	}
	wg.Wait()
}

// tokens logs the accounts in over HTTPS, Concurrency at a time (the
// server bounds password checks anyway).
func (r *run) tokens(ctx context.Context, accounts []int) ([]string, error) {
	client := &http.Client{Timeout: r.s.Timeout, Transport: &http.Transport{
		TLSClientConfig:     r.tls,
		MaxIdleConnsPerHost: r.s.Concurrency,
		DialContext:         (&net.Dialer{LocalAddr: r.src.next()}).DialContext,
	}}
	defer client.CloseIdleConnections()
	out := make([]string, len(accounts))
	var mu sync.Mutex
	var firstErr error
	r.parallel(ctx, len(accounts), func(k int) {
		tok, err := fetchToken(ctx, client, "https://"+r.t.HTTPS, r.s.AccountName(accounts[k]), r.t.Password)
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		out[k] = tok
	})
	if firstErr != nil {
		return nil, fmt.Errorf("logging in the senders: %w", firstErr)
	}
	return out, ctx.Err()
}

// submitter submits one message for a sender.
type submitter func(ctx context.Context, to, id, text string) (status int, code string, err error)

// httpsSubmitter returns a submitter on its own HTTPS connection.
func (r *run) httpsSubmitter(token string) (submitter, func()) {
	s := &httpsSender{addr: r.t.HTTPS, tls: r.tls, src: r.src, token: token, timeout: r.s.Timeout}
	return s.submit, s.close
}

// sipSubmitter returns a submitter on a registered device.
func sipSubmitter(d *device) submitter {
	return func(ctx context.Context, to, id, text string) (int, string, error) {
		code, err := d.sendMessage(ctx, to, id, text)
		return code, "", err
	}
}

// pacer hands out send slots: at most max (0: no bound), at rate per
// second over all senders (0: as fast as they come), until ctx ends.
type pacer struct {
	rate  float64
	max   int64
	start time.Time
	n     atomic.Int64
}

// next waits for the next slot; false means stop sending.
func (p *pacer) next(ctx context.Context) bool {
	k := p.n.Add(1) - 1
	if (p.max > 0 && k >= p.max) || ctx.Err() != nil {
		return false
	}
	if p.rate > 0 {
		due := p.start.Add(time.Duration(float64(k) / p.rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-t.C:
			}
		}
	}
	return ctx.Err() == nil
}

// sendLoop is one sender: it takes slots from p and submits to the
// recipient pick chooses, until p says stop (sendCtx ends it too; a
// submission in flight then still gets its answer, bounded by ctx and
// Timeout). With track, each message is remembered until it arrives.
func (r *run) sendLoop(ctx, sendCtx context.Context, sender int, submit submitter, p *pacer, pick func() int, track bool) {
	for seq := 0; p.next(sendCtx); seq++ {
		to := pick()
		id := uuid.NewString()
		if track {
			r.sent.put(id, sentInfo{sender: sender, to: to, seq: seq, at: time.Now()})
		}
		r.submitted.Add(1)
		t0 := time.Now()
		status, code, err := submit(ctx, r.s.AccountName(to), id, r.textFor(id))
		lat := time.Since(t0)
		switch {
		case err != nil:
			r.errs.add(r.s.Via+":"+errorKind(err), 1)
		case status == 202 || status == 200:
			r.submitLat.add(lat)
			r.accepted.Add(1)
			continue
		case code != "":
			r.errs.add(fmt.Sprintf("%s_%d_%s", r.s.Via, status, code), 1)
		default:
			r.errs.add(fmt.Sprintf("%s_%d", r.s.Via, status), 1)
		}
		if track {
			r.sent.drop(id)
		}
		if err != nil && errors.Is(err, errClosed) {
			return
		}
	}
}

// waitArrivals waits until every accepted message has arrived, or until
// limit passes, and returns the number still missing.
func (r *run) waitArrivals(ctx context.Context, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if r.sent.outstanding.Load() == 0 {
			return 0
		}
		time.Sleep(5 * time.Millisecond)
	}
	return int(r.sent.outstanding.Load())
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "sealbench: "+format+"\n", args...)
}

// closeAll closes every device, in parallel (closing 19,000 connections
// one by one takes a while).
func (r *run) closeAll() {
	r.mu.Lock()
	devs := r.devices
	r.devices = nil
	r.mu.Unlock()
	var wg sync.WaitGroup
	ch := make(chan *device)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range ch {
				d.Close()
			}
		}()
	}
	for _, d := range devs {
		ch <- d
	}
	close(ch)
	wg.Wait()
}

// forceGC asks the server for a garbage collection through the admin
// listener's pprof handler (heap?gc=1). The Go runtime collects at least
// every two minutes on its own, so this only brings forward what an idle
// server does anyway.
func (r *run) forceGC(ctx context.Context) error {
	if r.t.Admin == "" || !r.s.ForceGC {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+r.t.Admin+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking the server for a GC: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != 200 {
		return fmt.Errorf("asking the server for a GC: HTTP %d from the admin listener", res.StatusCode)
	}
	return nil
}

// scrape reads the unlabelled samples of a Prometheus text page.
func scrape(ctx context.Context, url string, timeout time.Duration) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the server's metrics: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil || res.StatusCode != 200 {
		return nil, fmt.Errorf("reading the server's metrics: HTTP %d, %v", res.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			out[name] = v
		}
	}
	return out, nil
}

// RaiseOpenFiles lifts this process's soft open-files limit to the hard
// limit (Go does this itself since 1.19; done again here so the figure in
// the result is the limit in force) and returns it.
func RaiseOpenFiles() uint64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur
}
