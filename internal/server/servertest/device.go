package servertest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sealpost/sealpost/api"
)

// Device is a small SIP user agent for tests, on sipgo: it opens one TLS
// connection to the server (verifying its certificate), registers with
// digest authentication, and records every MESSAGE it receives.
type Device struct {
	Account, Password string
	srv               *Server
	ua                *sipgo.UserAgent
	client            *sipgo.Client

	mu       sync.Mutex
	received []Received // guarded by mu
	answers  []int      // status codes to answer with next; guarded by mu
	dropOn   string     // a MESSAGE with this body drops the connection; guarded by mu
	drops    int        // connections dropped so; guarded by mu
	stalled  bool       // MESSAGEs get no answer at all; guarded by mu
}

// Received is one MESSAGE a Device got.
type Received struct {
	From        string // user part of the From URI
	ContentType string
	Body        string
	ID          string // X-Sealpost-Message-Id
	SubmittedAt string
	Request     *sip.Request
}

// NewDevice creates a device for the account; it connects on Register.
func (s *Server) NewDevice(t testing.TB, account, password string) *Device {
	t.Helper()
	tlsConf := &tls.Config{RootCAs: s.CertPool, MinVersion: tls.VersionTLS12}
	quiet := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(account),
		sipgo.WithUserAgenTLSConfig(tlsConf),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
	)
	if err != nil {
		t.Fatalf("device ua: %v", err)
	}
	d := &Device{Account: account, Password: password, srv: s, ua: ua}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	if err != nil {
		t.Fatalf("device server: %v", err)
	}
	srv.OnMessage(d.onMessage)
	d.client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(quiet), sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatalf("device client: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// AnswerNext makes the device answer its next MESSAGEs with these status
// codes, in order; after them it answers 200 again.
func (d *Device) AnswerNext(codes ...int) {
	d.mu.Lock()
	d.answers = append(d.answers, codes...)
	d.mu.Unlock()
}

// DropOn makes the device close its connection, without answering,
// whenever a MESSAGE with this body arrives: a phone that crashes on one
// message. It connects again on its next request (Register).
func (d *Device) DropOn(body string) {
	d.mu.Lock()
	d.dropOn = body
	d.mu.Unlock()
}

// Drops returns how many times DropOn's message dropped the connection.
func (d *Device) Drops() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.drops
}

// Stall makes the device stop answering MESSAGEs, keeping its connection
// open: a phone whose connection stalled. Nothing it gets is recorded.
func (d *Device) Stall() {
	d.mu.Lock()
	d.stalled = true
	d.mu.Unlock()
}

func (d *Device) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	d.mu.Lock()
	if d.stalled {
		d.mu.Unlock()
		return
	}
	if d.dropOn != "" && string(req.Body()) == d.dropOn {
		d.drops++
		d.mu.Unlock()
		if c, ok := tx.(interface{ Connection() sip.Connection }); ok {
			_ = c.Connection().Close()
		}
		return
	}
	code := 200
	if len(d.answers) > 0 {
		code, d.answers = d.answers[0], d.answers[1:]
	}
	if code >= 200 && code < 300 {
		r := Received{Body: string(req.Body()), Request: req}
		if f := req.From(); f != nil {
			r.From = f.Address.User
		}
		if h := req.ContentType(); h != nil {
			r.ContentType = h.Value()
		}
		if h := req.GetHeader(api.HeaderMessageID); h != nil {
			r.ID = h.Value()
		}
		if h := req.GetHeader(api.HeaderSubmittedAt); h != nil {
			r.SubmittedAt = h.Value()
		}
		d.received = append(d.received, r)
	}
	d.mu.Unlock()
	_ = tx.Respond(sip.NewResponseFromRequest(req, code, "Test", nil))
}

// Received returns the messages accepted so far.
func (d *Device) Received() []Received {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Received(nil), d.received...)
}

// Texts returns the bodies of the received text messages, in order.
func (d *Device) Texts() []string {
	var out []string
	for _, r := range d.Received() {
		if r.ContentType != api.ContentTypeIMDN {
			out = append(out, r.Body)
		}
	}
	return out
}

// Reports returns the delivery reports received, in order.
func (d *Device) Reports() []api.IMDN {
	var out []api.IMDN
	for _, r := range d.Received() {
		if r.ContentType == api.ContentTypeIMDN {
			if m, err := api.ParseIMDN([]byte(r.Body)); err == nil {
				out = append(out, m)
			}
		}
	}
	return out
}

// Register registers the device (expires seconds; 0 un-registers). With
// reports it asks for delivery reports. It returns the final status code.
func (d *Device) Register(expires int, reports bool) (int, error) {
	return d.RegisterAs(d.Account, expires, reports)
}

// RegisterAs registers the AOR of aor with the device's own credentials.
func (d *Device) RegisterAs(aor string, expires int, reports bool) (int, error) {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: d.srv.Domain})
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: aor, Host: d.srv.Domain}, Params: tagParams()})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: aor, Host: d.srv.Domain}, Params: sip.NewParams()})
	req.AppendHeader(sip.NewHeader("Contact", fmt.Sprintf("<sip:%s@127.0.0.1;transport=tls>", d.Account)))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	if reports {
		req.AppendHeader(sip.NewHeader(api.HeaderFeatures, "imdn"))
	}
	return d.do(req)
}

// Send submits a text over SIP MESSAGE to the account to.
func (d *Device) Send(to, text string) (int, error) {
	return d.SendContent(to, "text/plain;charset=utf-8", text)
}

// SendContent sends a MESSAGE with any content type and body.
func (d *Device) SendContent(to, contentType, body string) (int, error) {
	req := sip.NewRequest(sip.MESSAGE, sip.Uri{Scheme: "sip", User: to, Host: d.srv.Domain})
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: d.Account, Host: d.srv.Domain}, Params: tagParams()})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: to, Host: d.srv.Domain}, Params: sip.NewParams()})
	req.AppendHeader(sip.NewHeader("Content-Type", contentType))
	req.SetBody([]byte(body))
	return d.do(req)
}

func (d *Device) do(req *sip.Request) (int, error) {
	req.SetTransport("TLS")
	req.SetDestination(d.srv.SIPAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A request written on a connection the server has just closed (its
	// registration expired, or the auth deadline passed, both on a fake
	// clock that jumps) gets no answer: after a few seconds it is sent
	// again, on a new connection, as a phone does.
	first, cancelFirst := context.WithTimeout(ctx, 3*time.Second)
	res, err := d.client.Do(first, req)
	cancelFirst()
	if err != nil && ctx.Err() == nil {
		retry := req.Clone()
		retry.RemoveHeader("Via") // a new transaction
		res, err = d.client.Do(ctx, retry)
	}
	if err != nil {
		return 0, err
	}
	if res.StatusCode == 401 || res.StatusCode == 407 {
		res, err = d.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: d.Account, Password: d.Password})
		if err != nil {
			return 0, err
		}
	}
	return res.StatusCode, nil
}

// Close drops the device's connection.
func (d *Device) Close() { _ = d.ua.Close() }

func tagParams() sip.HeaderParams {
	p := sip.NewParams()
	p.Add("tag", sip.GenerateTagN(12))
	return p
}
