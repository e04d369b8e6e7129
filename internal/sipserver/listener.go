package sipserver

import (
	"net"
	"sync"
)

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
	return &trackedConn{Conn: c, closed: l.closed}, nil
}

type trackedConn struct {
	net.Conn
	closed func(remote string)
	once   sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.closed(c.RemoteAddr().String()) })
	return err
}
