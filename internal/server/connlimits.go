package server

import (
	"net"
	"net/http"

	"github.com/sealpost/sealpost/internal/connlimit"
)

// limitListeners wraps the HTTPS and SIP listeners in one connection
// limiter (internal/connlimit): per-address caps on each, and a total below
// the open-file limit. The admin listener is left out, so /healthz and
// /metrics answer while the others are full.
func (s *Server) limitListeners(https, sip net.Listener) (net.Listener, net.Listener, error) {
	l := connlimit.New(s.o.Connections)
	if err := l.Register(s.metrics.Registry); err != nil {
		return nil, nil, err
	}
	// Kept-alive HTTPS connections between requests may be closed to make
	// room for their address's new ones (connlimit.Limiter.SetIdle).
	s.httpSrv.ConnState = func(c net.Conn, st http.ConnState) { l.SetIdle(c, st == http.StateIdle) }
	set := l.Settings()
	s.log.Debug("connection limits", "total", set.Max, "reserve", set.Reserve,
		"per_address_sip", set.PerAddressSIP, "per_address_https", set.PerAddressHTTPS)
	return l.Listener(https, "https", set.PerAddressHTTPS), l.Listener(sip, "sip", set.PerAddressSIP), nil
}
