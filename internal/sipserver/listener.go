package sipserver

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// readBufferSize is the buffer sipgo reads each connection through. sipgo
// allocates it once per connection for the connection's whole life
// (sip.TransportBufferReadSize, 32 KiB by default), which alone would be
// 32 KiB of every idle device. Our messages are small (a REGISTER or a
// MESSAGE of 160 characters is under 1.5 KiB); a longer one is read in
// several pieces, which sipgo's stream parser assembles. With the
// handshakeListener below this took an idle device from 42.2 to about
// 22 KiB of server memory (sealbench connections, BENCHMARKS.md).
const readBufferSize = 1024

// The setting is a package variable of sipgo, read when a connection
// starts; it is set here, before any connection exists, because setting it
// later from New would race with connections of another server (or a test
// device) in the same process.
func init() { sip.TransportBufferReadSize = readBufferSize }

// handshakeTimeout bounds a TLS handshake: a client that does not finish
// in time is dropped without ever reaching sipgo.
const handshakeTimeout = 10 * time.Second

// maxHandshakes bounds the TLS handshakes in progress; further connections
// wait for a slot. A handshake costs about a millisecond of CPU, so this is
// a burst of reconnecting devices, not a limit on them.
const maxHandshakes = 64

// maxHandshakesPerIP bounds the slots one client address may hold, so a
// host that opens connections and never finishes its handshake cannot
// take all of them (each stalls for handshakeTimeout) and keep every other
// device from registering. Its further connections wait for one of its own
// slots, or are dropped after handshakeTimeout.
const maxHandshakesPerIP = 8

// handshakeListener hands sipgo connections whose TLS handshake is already
// complete. sipgo reads each connection on one goroutine for its whole
// life; if the handshake ran there (tls.Conn does it on the first Read),
// that goroutine's stack would grow to 16 KiB or more for it and stay
// larger than an idle read needs. Here each handshake runs on a goroutine
// that ends with it. It also means a client that stalls mid-handshake holds
// no sipgo reader, and that a failing Accept (out of file descriptors) is
// retried with a backoff instead of stopping the SIP server.
type handshakeListener struct {
	inner   net.Listener // TCP
	config  *tls.Config
	log     *slog.Logger
	observe framingObserver   // bad input on a connection (framing.go)
	opened  func(*framedConn) // a connection is handed to sipgo (deadline.go)
	conns   chan net.Conn
	slots   chan struct{} // one per handshake in progress
	done    chan struct{} // closed by Close
	once    sync.Once

	mu    sync.Mutex
	perIP map[string]*ipSlots // guarded by mu
}

// ipSlots are one address's handshake slots; users counts the connections
// holding or waiting for one, so the entry goes when the last is done.
type ipSlots struct {
	slots chan struct{}
	users int
}

func newHandshakeListener(inner net.Listener, config *tls.Config, log *slog.Logger, observe framingObserver, opened func(*framedConn)) *handshakeListener {
	l := &handshakeListener{
		inner: inner, config: config, log: log, observe: observe, opened: opened,
		conns: make(chan net.Conn),
		slots: make(chan struct{}, maxHandshakes),
		done:  make(chan struct{}),
		perIP: map[string]*ipSlots{},
	}
	go l.acceptLoop()
	return l
}

func (l *handshakeListener) acceptLoop() {
	backoff := time.Duration(0)
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				// The server closed the TCP listener: end Accept too.
				l.Close()
				return
			}
			// EMFILE, ECONNABORTED and the like pass; net/http backs
			// off the same way.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accepting a SIP connection failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-l.done:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		go l.handshake(c)
	}
}

// handshake waits for a slot of the client's address and a global one,
// then runs the TLS handshake; all within handshakeTimeout.
func (l *handshakeListener) handshake(c net.Conn) {
	deadline := time.Now().Add(handshakeTimeout)
	timeout := time.NewTimer(handshakeTimeout)
	defer timeout.Stop()
	ip := clientAddr(c)
	mine := l.ipSlots(ip)
	defer l.releaseIP(ip)
	for _, slots := range []chan struct{}{mine.slots, l.slots} {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		case <-timeout.C:
			l.log.Debug("TLS handshake not started in time", "remote", c.RemoteAddr().String())
			c.Close()
			return
		case <-l.done:
			c.Close()
			return
		}
	}
	tc := tls.Server(c, l.config)
	if err := c.SetDeadline(deadline); err != nil {
		c.Close()
		return
	}
	if err := tc.Handshake(); err != nil {
		l.log.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		c.Close()
		return
	}
	fc := newFramedConn(tc, l.observe)
	if l.opened != nil {
		l.opened(fc)
	}
	select {
	case l.conns <- fc:
	case <-l.done:
		tc.Close()
	}
}

func (l *handshakeListener) ipSlots(ip string) *ipSlots {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.perIP[ip]
	if e == nil {
		e = &ipSlots{slots: make(chan struct{}, maxHandshakesPerIP)}
		l.perIP[ip] = e
	}
	e.users++
	return e
}

func (l *handshakeListener) releaseIP(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.perIP[ip]; e != nil {
		if e.users--; e.users == 0 {
			delete(l.perIP, ip)
		}
	}
}

func clientAddr(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// Accept returns the next connection with its handshake done.
func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; handshakes in progress end within
// handshakeTimeout and close their connections.
func (l *handshakeListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

func (l *handshakeListener) Addr() net.Addr { return l.inner.Addr() }

// trackingListener reports when an accepted connection closes, so the
// registrar can drop the binding at once instead of waiting for its expiry.
// sipgo closes a connection when its reader fails (peer gone, TLS error), and
// every close passes through here.
type trackingListener struct {
	net.Listener
	closed func(remote string)
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newTrackedConn(c, l.closed), nil
}

type trackedConn struct {
	net.Conn
	closed        func(remote string)
	once          sync.Once
	local, remote *addrText
}

func newTrackedConn(c net.Conn, closed func(remote string)) *trackedConn {
	return &trackedConn{Conn: c, closed: closed,
		local:  &addrText{c.LocalAddr(), c.LocalAddr().String()},
		remote: &addrText{c.RemoteAddr(), c.RemoteAddr().String()}}
}

// LocalAddr and RemoteAddr give addresses whose text is made once: sipgo
// formats both each time it counts a reference to the connection (a debug
// line built whether or not it is logged), several times per MESSAGE.
func (c *trackedConn) LocalAddr() net.Addr  { return c.local }
func (c *trackedConn) RemoteAddr() net.Addr { return c.remote }

// addrText is an address with its text.
type addrText struct {
	net.Addr
	text string
}

func (a *addrText) String() string { return a.text }

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.closed(c.RemoteAddr().String()) })
	return err
}
