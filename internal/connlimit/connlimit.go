// Package connlimit bounds the connections sealpostd holds: per source
// address on each listener, and in total across the SIP and HTTPS
// listeners, below the process's open-file limit. Without it, a host that
// opens thousands of idle or half-open connections takes every file
// descriptor, and HTTPS logins, SIP registrations and /healthz all fail
// with "too many open files".
//
// The total has a reserve for newcomers: once the connections reach
// Max - Reserve, only addresses that hold fewer than two connections on
// that listener are let in, up to Max. So a flood from a few addresses
// stops short of the cap, and a device from an address that is not
// flooding still connects. A refused connection is closed at once.
package connlimit

import (
	"crypto/tls"
	"net"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/internal/loginguard"
)

// Settings are the bounds. Zero values take the defaults noted.
type Settings struct {
	// Max is the most connections held on the SIP and HTTPS listeners
	// together (default: the open-file limit less an eighth of it, at
	// least 64, for the admin listener, the store and the logs).
	Max int
	// Reserve is how many of Max only newcomers may take (default a
	// tenth of Max, at least 16, at most Max/2).
	Reserve int
	// PerAddressSIP and PerAddressHTTPS bound one source address (an IPv4
	// address or an IPv6 /64) on each listener. Phones behind one NAT share
	// an address, so the SIP default is generous (256); HTTPS clients hold a
	// connection or two each (64).
	PerAddressSIP   int
	PerAddressHTTPS int
}

// Defaults of Settings.
const (
	DefaultPerAddressSIP   = 256
	DefaultPerAddressHTTPS = 64
	// newcomerConns: an address holding fewer connections than this on a
	// listener may use the reserve.
	newcomerConns = 2
)

// Resolve fills in the defaults, reading the process's open-file limit.
func (s Settings) Resolve() Settings {
	if s.Max <= 0 {
		s.Max = DefaultMax(openFileLimit())
	}
	if s.Reserve <= 0 {
		s.Reserve = max(16, s.Max/10)
	}
	s.Reserve = min(s.Reserve, s.Max/2)
	if s.PerAddressSIP <= 0 {
		s.PerAddressSIP = DefaultPerAddressSIP
	}
	if s.PerAddressHTTPS <= 0 {
		s.PerAddressHTTPS = DefaultPerAddressHTTPS
	}
	return s
}

// DefaultMax is the default total for an open-file limit: the limit less
// max(64, limit/8).
func DefaultMax(nofile uint64) int {
	headroom := max(uint64(64), nofile/8)
	if nofile <= headroom+16 {
		return 16
	}
	return int(min(nofile-headroom, 1<<30))
}

func openFileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return 1024
	}
	return r.Cur
}

// Limiter counts connections across the listeners it wraps.
type Limiter struct {
	s       Settings
	refused *prometheus.CounterVec // by listener and reason
	open    *prometheus.GaugeVec   // by listener

	mu     sync.Mutex
	total  int                           // guarded by mu
	counts map[string]map[string]int     // listener → address → connections; guarded by mu
	idle   map[string]map[*conn]struct{} // listener+" "+address → idle connections; guarded by mu
}

// New returns a limiter; s is resolved (defaults filled in).
func New(s Settings) *Limiter {
	return &Limiter{
		s: s.Resolve(),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_connections_refused_total",
			Help: "Connections closed on arrival by the connection limits, by listener and limit (address, total).",
		}, []string{"listener", "limit"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sealpost_connections_open",
			Help: "Connections held, by listener.",
		}, []string{"listener"}),
		counts: map[string]map[string]int{},
		idle:   map[string]map[*conn]struct{}{},
	}
}

// SetIdle marks an HTTPS connection idle (between requests, kept alive) or
// busy; net/http reports it through http.Server.ConnState. An address at
// its cap then has its idle connection closed to make room for a new one,
// instead of being refused: clients that open a connection per request and
// leave the old ones to time out are not locked out by their own leftovers.
func (l *Limiter) SetIdle(c net.Conn, idle bool) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*conn)
	if !ok {
		return
	}
	key := lc.listener + " " + lc.source
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.released {
		return
	}
	if idle {
		if l.idle[key] == nil {
			l.idle[key] = map[*conn]struct{}{}
		}
		l.idle[key][lc] = struct{}{}
		return
	}
	delete(l.idle[key], lc)
	if len(l.idle[key]) == 0 {
		delete(l.idle, key)
	}
}

// takeIdle removes and returns an idle connection of the address on the
// listener, or nil. Called with mu held.
func (l *Limiter) takeIdle(name, source string) *conn {
	key := name + " " + source
	for c := range l.idle[key] {
		delete(l.idle[key], c)
		if len(l.idle[key]) == 0 {
			delete(l.idle, key)
		}
		return c
	}
	return nil
}

// Settings returns the bounds in force.
func (l *Limiter) Settings() Settings { return l.s }

// Register adds the limiter's metrics to r.
func (l *Limiter) Register(r prometheus.Registerer) error {
	if err := r.Register(l.refused); err != nil {
		return err
	}
	return r.Register(l.open)
}

// Listener wraps inner: its Accept returns only connections within the
// bounds, counting each until it is closed. name ("sip", "https") labels
// the metrics; perAddress bounds one address on this listener.
func (l *Limiter) Listener(inner net.Listener, name string, perAddress int) net.Listener {
	return &listener{Listener: inner, l: l, name: name, perAddress: perAddress}
}

// admit counts a new connection from source on the listener, or refuses it
// and says which limit did.
func (l *Limiter) admit(name, source string, perAddress int) (ok bool, limit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	byAddr := l.counts[name]
	if byAddr == nil {
		byAddr = map[string]int{}
		l.counts[name] = byAddr
	}
	held := byAddr[source]
	if held >= perAddress {
		if idle := l.takeIdle(name, source); idle != nil {
			// Hand the idle connection's slot to the new one.
			idle.released = true
			go idle.Conn.Close()
			return true, ""
		}
	}
	switch {
	case held >= perAddress:
		return false, "address"
	case l.total >= l.s.Max:
		return false, "total"
	case l.total >= l.s.Max-l.s.Reserve && held >= newcomerConns:
		return false, "total"
	}
	byAddr[source] = held + 1
	l.total++
	return true, ""
}

func (l *Limiter) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.released {
		return // its slot went to another connection
	}
	c.released = true
	name, source := c.listener, c.source
	if key := name + " " + source; l.idle[key] != nil {
		delete(l.idle[key], c)
		if len(l.idle[key]) == 0 {
			delete(l.idle, key)
		}
	}
	l.total--
	if byAddr := l.counts[name]; byAddr != nil {
		if byAddr[source]--; byAddr[source] <= 0 {
			delete(byAddr, source)
		}
	}
}

type listener struct {
	net.Listener
	l          *Limiter
	name       string
	perAddress int
}

func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		source := loginguard.SourceKey(c.RemoteAddr().String())
		if ok, limit := ln.l.admit(ln.name, source, ln.perAddress); !ok {
			ln.l.refused.WithLabelValues(ln.name, limit).Inc()
			c.Close()
			continue
		}
		ln.l.open.WithLabelValues(ln.name).Inc()
		return &conn{Conn: c, l: ln.l, listener: ln.name, source: source}, nil
	}
}

type conn struct {
	net.Conn
	l                *Limiter
	listener, source string
	released         bool // its slot is given back; guarded by l.mu
	once             sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.release(c)
		c.l.open.WithLabelValues(c.listener).Dec()
	})
	return err
}
