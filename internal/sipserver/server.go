// Package sipserver is Sealpost's SIP over TLS side, on sipgo: devices
// REGISTER here (digest authentication), stay connected with CRLF keepalives
// (RFC 5626 §3.5.1, answered by sipgo's transport), receive their messages
// and delivery reports as MESSAGE requests over the connection they
// registered on, and may submit messages with MESSAGE themselves (RFC 3428).
//
// The server never dials a device: devices sit behind NAT, so the TLS
// transport's dialer is disabled and a delivery whose connection is gone
// fails at once (the queue then waits for the next registration).
package sipserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/internal/auth"
	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/loginguard"
	"github.com/sealpost/sealpost/internal/metrics"
	"github.com/sealpost/sealpost/internal/queue"
	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/store"
)

// Submitter accepts messages; *queue.Queue implements it.
type Submitter interface {
	Submit(ctx context.Context, s queue.Submission) (store.Message, bool, error)
}

// Options configure a Server.
type Options struct {
	Domain    string      // SIP domain and digest realm
	TLSConfig *tls.Config // server certificate
	Registrar *registrar.Registrar
	Queue     Submitter
	// Secrets returns an account's digest secrets (an error if the account
	// does not exist).
	Secrets func(ctx context.Context, account string) (auth.SIPSecrets, error)
	Clock   clock.Clock
	Log     *slog.Logger
	Metrics *metrics.Metrics // refusals are counted; may be nil
	// Guard limits password guessing; the server shares one with the
	// HTTPS side. Default: a guard of its own with the default settings.
	Guard *loginguard.Guard

	// Registration expiry: a REGISTER without Expires gets DefaultExpires
	// (600 s); shorter than MinExpires (60 s) is refused with 423 (RFC 3261
	// §10.3 step 7); longer than MaxExpires (3600 s) is shortened.
	DefaultExpires, MinExpires, MaxExpires time.Duration
	// NonceTTL is how long a digest challenge stays valid (default 5 min).
	NonceTTL time.Duration
	// NonceKey authenticates the digest nonces; nil: a random key of this
	// process. Several nodes give the same (derived from the shared master
	// key) so that any of them accepts a challenge another issued.
	NonceKey []byte
	// FlowTimer is the keepalive interval told to phones that use RFC 5626
	// outbound (default 60 s, as the Sealpost client's own keepalive).
	FlowTimer time.Duration
	// AuthTimeout is how long a connection may stay without a live
	// registration or a digest success on it before it is closed
	// (default 30 s; see deadline.go).
	AuthTimeout time.Duration
}

// Server is the SIP side of sealpostd.
type Server struct {
	o       Options
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	digest  *auth.Digester
	closing sync.Once
	// badInputs counts bad SIP input by kind (framing.go).
	badInputs *prometheus.CounterVec
	// unauthClosed counts connections closed for not authenticating.
	unauthClosed prometheus.Counter

	connMu sync.Mutex
	conns  map[string]*framedConn // by remote address; guarded by connMu

	answersMu sync.Mutex
	awaiting  map[string]awaited // MESSAGEs sent, by Via branch (answers.go); guarded by answersMu
}

// errDialRefused is what the disabled dialer returns: the server only uses
// connections that devices opened.
var errDialRefused = errors.New("sealpost never dials a device")

// New builds the SIP server; call Serve with a listener.
func New(o Options) (*Server, error) {
	if o.DefaultExpires == 0 {
		o.DefaultExpires = 600 * time.Second
	}
	if o.MinExpires == 0 {
		o.MinExpires = 60 * time.Second
	}
	if o.MaxExpires == 0 {
		o.MaxExpires = 3600 * time.Second
	}
	if o.NonceTTL == 0 {
		o.NonceTTL = 5 * time.Minute
	}
	if o.FlowTimer == 0 {
		o.FlowTimer = 60 * time.Second
	}
	if o.AuthTimeout == 0 {
		o.AuthTimeout = DefaultAuthTimeout
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Guard == nil {
		o.Guard = loginguard.New(loginguard.Settings{}, o.Clock, o.Log)
	}
	// sipgo logs whole SIP messages at debug level and unparsable ones at
	// error level, bodies included; message text must never reach a log, so
	// its logger stops at warnings and is redacted (see logging.go).
	sipLog := slog.New(redact(levelFloor{o.Log.Handler(), slog.LevelWarn}))
	noDial := func(laddr net.Addr) net.Dialer {
		return net.Dialer{Control: func(string, string, syscall.RawConn) error { return errDialRefused }}
	}
	var s *Server // set below; the transaction layer hands it responses
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(o.Domain),
		sipgo.WithUserAgentHostname(o.Domain),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(sipLog),
			sip.WithTransportLayerTransports(sip.TransportsConfig{
				TLS: &sip.TransportTLS{TransportTCP: &sip.TransportTCP{DialerCreate: noDial}},
				TCP: &sip.TransportTCP{DialerCreate: noDial},
			}),
		),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerTerminateOnConnClose(),
			// Responses to the server's own MESSAGEs (answers.go).
			sip.WithTransactionLayerUnhandledResponseHandler(func(res *sip.Response) { s.onResponse(res) }),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("sip user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		return nil, err
	}
	s = &Server{o: o, ua: ua, srv: srv, digest: newDigester(o),
		badInputs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_sip_bad_input_total",
			Help: "SIP input refused before it reached a handler (malformed, oversized, strictness), by kind.",
		}, []string{"kind"}),
		unauthClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_sip_unauthenticated_closed_total",
			Help: "SIP connections closed for holding no registration and no recent digest success past the auth deadline.",
		}),
		conns:    map[string]*framedConn{},
		awaiting: map[string]awaited{},
	}
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{s.badInputs, s.unauthClosed} {
			if err := o.Metrics.Registry.Register(c); err != nil {
				return nil, err
			}
		}
	}
	srv.OnRegister(s.onRegister)
	srv.OnMessage(s.onMessage)
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		s.respond(tx, req, 200, "OK")
	})
	return s, nil
}

// Serve accepts TLS connections from l (a plain TCP listener; Serve adds
// TLS) until l is closed.
func (s *Server) Serve(l net.Listener) error {
	tl := newHandshakeListener(&trackingListener{Listener: l, closed: s.connectionClosed}, s.o.TLSConfig, s.o.Log, s.badInput, s.watch)
	defer tl.Close()
	err := s.srv.ServeTLS(tl)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Close closes every connection and the transaction layer.
func (s *Server) Close() error {
	var err error
	s.closing.Do(func() { err = s.ua.Close() })
	return err
}

// badInput logs and counts bad input: its kind and the address, never a
// byte of it.
func (s *Server) badInput(remote string, b *badInput) {
	s.badInputs.WithLabelValues(b.kind).Inc()
	level := slog.LevelDebug
	if b.framing {
		// Once per connection: it is closed after this.
		level = slog.LevelInfo
	}
	s.o.Log.Log(context.Background(), level, "bad SIP input refused", "kind", b.kind, "code", b.code, "closing", b.framing, "remote", remote)
}

func (s *Server) connectionClosed(remote string) {
	s.forget(remote)
	s.o.Registrar.ConnectionClosed(remote)
}

func (s *Server) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		s.o.Log.Debug("sip response not sent", "code", code, "err", err)
	}
}

// levelFloor drops records below a level, whatever the wrapped handler's
// own level is.
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (h levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}
func (h levelFloor) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFloor{h.Handler.WithAttrs(a), h.min}
}
func (h levelFloor) WithGroup(n string) slog.Handler {
	return levelFloor{h.Handler.WithGroup(n), h.min}
}
