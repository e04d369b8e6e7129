package sipserver

import (
	"time"

	"github.com/emiago/sipgo/sip"
)

// DefaultAuthTimeout is how long a SIP connection may stay without
// authenticating: a live registration on it, or a digest success on it
// within that time.
const DefaultAuthTimeout = 30 * time.Second

// A connection that completes its TLS handshake and then says nothing, or
// dribbles a request a byte at a time, would otherwise be held forever.
// Each connection is checked AuthTimeout after it opens (on the server's
// clock): it stays if a registration is bound to it (checked again when
// that registration expires, so a device that stops refreshing is closed
// once its registration is over) or if a digest request succeeded on it
// within AuthTimeout (a device that only sends MESSAGEs); otherwise it is
// closed. A registration that set up an RFC 5626 flow (the device was told
// a Flow-Timer and keeps the connection alive with CRLF pings) is also
// closed once nothing has arrived on it for twice its Flow-Timer: the
// device is gone though its registration has not run out yet.

// watch arms the auth deadline of a new connection.
func (s *Server) watch(c *framedConn) {
	remote := c.RemoteAddr().String()
	c.mu.Lock()
	c.now = s.o.Clock.Now
	c.lastRead = c.now()
	_, c.localPort, _ = sip.ParseAddr(c.LocalAddr().String())
	c.mu.Unlock()
	s.connMu.Lock()
	s.conns[remote] = c
	s.connMu.Unlock()
	s.armCheck(c, remote, s.o.AuthTimeout)
}

func (s *Server) armCheck(c *framedConn, remote string, after time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return
	}
	c.check = s.o.Clock.AfterFunc(after, func() { s.checkConn(c, remote) })
}

// checkConn closes the connection unless it is authenticated, and arms the
// next check.
func (s *Server) checkConn(c *framedConn, remote string) {
	now := s.o.Clock.Now()
	if account, ok := s.o.Registrar.AccountOn(remote); ok {
		if b, ok := s.o.Registrar.Lookup(account); ok && b.Source == remote && b.Expires.After(now) {
			c.mu.Lock()
			flow, lastRead := c.flow, c.lastRead
			c.mu.Unlock()
			next := b.Expires.Sub(now) + time.Second
			if flow > 0 {
				silent := now.Sub(lastRead)
				if silent >= 2*flow {
					s.unauthClosed.Inc()
					s.o.Log.Info("closing a SIP flow that stopped its keepalives", "account", account, "remote", remote, "silent", silent)
					_ = c.Close()
					return
				}
				next = min(next, 2*flow-silent)
			}
			s.armCheck(c, remote, next)
			return
		}
	}
	c.mu.Lock()
	authedAt := c.authedAt
	c.mu.Unlock()
	if !authedAt.IsZero() && now.Sub(authedAt) < s.o.AuthTimeout {
		s.armCheck(c, remote, s.o.AuthTimeout-now.Sub(authedAt)+time.Second)
		return
	}
	s.unauthClosed.Inc()
	s.o.Log.Debug("closing a SIP connection that has not authenticated in time", "remote", remote)
	_ = c.Close()
}

// authenticated records a digest success on the connection from remote.
func (s *Server) authenticated(remote string) {
	s.connMu.Lock()
	c := s.conns[remote]
	s.connMu.Unlock()
	if c != nil {
		c.mu.Lock()
		c.authedAt = s.o.Clock.Now()
		c.mu.Unlock()
	}
}

// flowStarted records that the connection from remote carries an RFC 5626
// flow with this Flow-Timer, and checks it from then on.
func (s *Server) flowStarted(remote string, flowTimer time.Duration) {
	s.connMu.Lock()
	c := s.conns[remote]
	s.connMu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	first := c.flow == 0
	c.flow = flowTimer
	if first && c.check != nil {
		c.check.Stop()
	}
	c.mu.Unlock()
	if first {
		s.armCheck(c, remote, 2*flowTimer)
	}
}

// forget drops a closed connection and its pending check.
func (s *Server) forget(remote string) {
	s.connMu.Lock()
	c := s.conns[remote]
	delete(s.conns, remote)
	s.connMu.Unlock()
	if c != nil {
		c.mu.Lock()
		c.gone = true
		if c.check != nil {
			c.check.Stop()
		}
		c.mu.Unlock()
		s.failAwaiting(c)
	}
}
