package sipserver

import (
	"time"
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
// closed.

// watch arms the auth deadline of a new connection.
func (s *Server) watch(c *framedConn) {
	remote := c.RemoteAddr().String()
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
			s.armCheck(c, remote, b.Expires.Sub(now)+time.Second)
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
	}
}
