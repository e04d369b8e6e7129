package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/icholy/digest"

	"github.com/sealpost/sealpost/api"
)

// A device is one simulated phone: one TLS connection to the SIP port,
// REGISTER with digest, CRLF keepalives (RFC 5626 §3.5.1), a 200 for every
// MESSAGE it receives, and MESSAGE submissions of its own on the same
// connection. It speaks just enough SIP for that, written by hand rather
// than on a full stack: the tool shares the machine with the server, and
// every microsecond it spends is taken from the server it measures.
type device struct {
	account  string
	password string
	cfg      *deviceConfig
	id       string // unique per connection, for Call-IDs, branches and tags

	conn  net.Conn
	local string // ip:port of our end, for Via and Contact

	seq atomic.Uint64 // makes Call-IDs and branches unique

	mu      sync.Mutex
	waiting map[string]chan sipMsg // final responses awaited, by Call-ID; guarded by mu
	closed  bool                   // guarded by mu
	ka      *time.Timer            // keepalive timer; guarded by mu

	// dropped is closed when the read loop ends, whatever the cause.
	dropped chan struct{}
	readErr error // set before dropped is closed

	// state owned by the read loop goroutine (the onMessage callback runs
	// there): the last sequence number received from each sender, to
	// check order.
	lastSeq map[int]int
}

// deviceConfig is shared by every device of a run.
type deviceConfig struct {
	sipAddr   string
	domain    string
	tls       *tls.Config
	sources   *sources
	expires   int           // REGISTER expiry, seconds
	keepalive time.Duration // 0: none
	reports   bool          // ask for delivery reports
	timeout   time.Duration // one SIP round trip, and connect + TLS handshake

	// onMessage is called on the device's read goroutine for every MESSAGE
	// the server delivers, before the device answers 200.
	onMessage func(d *device, m *sipMsg, at time.Time)
	pongs     atomic.Int64
	pings     atomic.Int64
}

var errClosed = errors.New("device closed")

// dial opens the TLS connection (verifying the server certificate) and
// starts the read loop.
func (c *deviceConfig) dial(ctx context.Context, account, password string) (*device, error) {
	d := &device{
		account: account, password: password, cfg: c,
		id:      strconv.FormatUint(rand.Uint64(), 36),
		waiting: map[string]chan sipMsg{},
		dropped: make(chan struct{}),
		lastSeq: map[int]int{},
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	dialer := tls.Dialer{NetDialer: &net.Dialer{LocalAddr: c.sources.next()}, Config: c.tls}
	conn, err := dialer.DialContext(ctx, "tcp", c.sipAddr)
	if err != nil {
		return nil, classify("connect", err)
	}
	d.conn = conn
	d.local = conn.LocalAddr().String()
	go d.readLoop()
	d.scheduleKeepalive(true)
	return d, nil
}

// Close drops the connection (the server sees the device go offline).
func (d *device) Close() {
	d.mu.Lock()
	d.closed = true
	if d.ka != nil {
		d.ka.Stop()
	}
	d.mu.Unlock()
	_ = d.conn.Close()
	<-d.dropped
}

// scheduleKeepalive sends a CRLFCRLF ping every keepalive interval. The
// first comes after a random part of the interval, so that thousands of
// devices connected together do not ping together.
func (d *device) scheduleKeepalive(first bool) {
	if d.cfg.keepalive <= 0 {
		return
	}
	wait := d.cfg.keepalive
	if first {
		wait = time.Duration(rand.Int64N(int64(wait))) + time.Millisecond
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.ka = time.AfterFunc(wait, func() {
		if _, err := d.write([]byte("\r\n\r\n")); err == nil {
			d.cfg.pings.Add(1)
		}
		d.scheduleKeepalive(false)
	})
}

func (d *device) write(b []byte) (int, error) {
	// tls.Conn serialises Writes, and each of ours is one whole message,
	// so concurrent writers never interleave.
	if err := d.conn.SetWriteDeadline(time.Now().Add(d.cfg.timeout)); err != nil {
		return 0, err
	}
	return d.conn.Write(b)
}

// register sends REGISTER, answers the digest challenge and waits for 200.
func (d *device) register(ctx context.Context) error {
	callID := d.newID("r")
	uri := "sip:" + d.cfg.domain
	build := func(cseq int, authz string) []byte {
		var b bytes.Buffer
		fmt.Fprintf(&b, "REGISTER %s SIP/2.0\r\n", uri)
		d.writeVia(&b)
		fmt.Fprintf(&b, "Max-Forwards: 70\r\nFrom: <sip:%s@%s>;tag=%s\r\nTo: <sip:%s@%s>\r\n", d.account, d.cfg.domain, d.id, d.account, d.cfg.domain)
		fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d REGISTER\r\n", callID, cseq)
		fmt.Fprintf(&b, "Contact: <sip:%s@%s;transport=tls>\r\nExpires: %d\r\n", d.account, d.local, d.cfg.expires)
		if d.cfg.reports {
			fmt.Fprintf(&b, "%s: imdn\r\n", api.HeaderFeatures)
		}
		if authz != "" {
			fmt.Fprintf(&b, "Authorization: %s\r\n", authz)
		}
		b.WriteString("Content-Length: 0\r\n\r\n")
		return b.Bytes()
	}
	res, err := d.roundTrip(ctx, callID, build(1, ""))
	if err != nil {
		return err
	}
	if res.code == 401 {
		chal, err := pickChallenge(res.auth)
		if err != nil {
			return fmt.Errorf("register %s: %w", d.account, err)
		}
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: uri, Username: d.account, Password: d.password, Count: 1})
		if err != nil {
			return fmt.Errorf("register %s: computing digest: %w", d.account, err)
		}
		if res, err = d.roundTrip(ctx, callID, build(2, cred.String())); err != nil {
			return err
		}
	}
	if res.code != 200 {
		return &statusError{kind: "register_" + strconv.Itoa(res.code), msg: fmt.Sprintf("register %s: server answered %d %s", d.account, res.code, res.reason)}
	}
	return nil
}

// pickChallenge prefers SHA-256 (RFC 8760), as a modern phone does.
func pickChallenge(values []string) (*digest.Challenge, error) {
	var first *digest.Challenge
	for _, v := range values {
		c, err := digest.ParseChallenge(v)
		if err != nil {
			continue
		}
		if strings.EqualFold(c.Algorithm, "SHA-256") {
			return c, nil
		}
		if first == nil {
			first = c
		}
	}
	if first == nil {
		return nil, fmt.Errorf("401 without a usable digest challenge (%d WWW-Authenticate headers)", len(values))
	}
	return first, nil
}

// sendMessage submits a text over SIP MESSAGE on the registered connection
// and returns the final status code (202 when stored).
func (d *device) sendMessage(ctx context.Context, to, id, text string) (int, error) {
	callID := d.newID("m")
	var b bytes.Buffer
	b.Grow(512 + len(text))
	fmt.Fprintf(&b, "MESSAGE sip:%s@%s SIP/2.0\r\n", to, d.cfg.domain)
	d.writeVia(&b)
	fmt.Fprintf(&b, "Max-Forwards: 70\r\nFrom: <sip:%s@%s>;tag=%s\r\nTo: <sip:%s@%s>\r\n", d.account, d.cfg.domain, d.id, to, d.cfg.domain)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain;charset=utf-8\r\n%s: %s\r\n", callID, api.HeaderMessageID, id)
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(text), text)
	res, err := d.roundTrip(ctx, callID, b.Bytes())
	if err != nil {
		return 0, err
	}
	return res.code, nil
}

func (d *device) writeVia(b *bytes.Buffer) {
	// RFC 3261 §8.1.1.7: a branch unique per transaction, starting with
	// the magic cookie.
	fmt.Fprintf(b, "Via: SIP/2.0/TLS %s;branch=z9hG4bK%s.%d;rport\r\n", d.local, d.id, d.seq.Add(1))
}

func (d *device) newID(kind string) string {
	return kind + d.id + "." + strconv.FormatUint(d.seq.Add(1), 36)
}

// roundTrip writes a request and waits for its final response (matched by
// Call-ID; a device has one transaction per Call-ID at a time).
func (d *device) roundTrip(ctx context.Context, callID string, req []byte) (sipMsg, error) {
	ch := make(chan sipMsg, 1)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return sipMsg{}, errClosed
	}
	d.waiting[callID] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.waiting, callID)
		d.mu.Unlock()
	}()
	if _, err := d.write(req); err != nil {
		return sipMsg{}, classify("connection", err)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.timeout)
	defer cancel()
	select {
	case res := <-ch:
		return res, nil
	case <-d.dropped:
		return sipMsg{}, &statusError{kind: "connection_dropped", msg: fmt.Sprintf("%s: connection dropped while waiting for an answer: %v", d.account, d.readErr)}
	case <-ctx.Done():
		return sipMsg{}, &statusError{kind: "timeout", msg: fmt.Sprintf("%s: no final answer within %v", d.account, d.cfg.timeout)}
	}
}

// readLoop reads SIP messages and keepalives until the connection ends.
func (d *device) readLoop() {
	br := bufio.NewReaderSize(d.conn, 4096)
	var err error
	for {
		var m sipMsg
		m, err = readSIP(br, d)
		if err != nil {
			break
		}
		if !m.request {
			if m.code < 200 {
				continue
			}
			d.mu.Lock()
			ch := d.waiting[m.callID]
			d.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default: // a retransmitted final response
				}
			}
			continue
		}
		if m.method == "MESSAGE" && d.cfg.onMessage != nil {
			d.cfg.onMessage(d, &m, time.Now())
		}
		if _, err = d.write(m.response(200, "OK", d.id)); err != nil {
			break
		}
	}
	d.mu.Lock()
	if d.ka != nil {
		d.ka.Stop()
	}
	d.closed = true
	d.mu.Unlock()
	d.readErr = err
	_ = d.conn.Close()
	close(d.dropped)
}

// sipMsg is a parsed SIP message: only what a device needs.
type sipMsg struct {
	request     bool
	method      string // requests
	code        int    // responses
	reason      string
	vias        []string // whole Via values, in order, to copy into a response
	from, to    string
	callID      string
	cseq        string
	messageID   string
	contentType string
	auth        []string // WWW-Authenticate values
	body        []byte
}

// maxSIPMessage bounds what the device reads for one message.
const maxSIPMessage = 64 << 10

// readSIP reads one message from br. Empty lines between messages are
// keepalives: a lone CRLF is the server's pong, CRLFCRLF a ping from the
// server, answered with a pong (RFC 5626 §3.5.1).
func readSIP(br *bufio.Reader, d *device) (sipMsg, error) {
	var m sipMsg
	var line []byte
	var err error
	for {
		if line, err = br.ReadSlice('\n'); err != nil {
			return m, fmt.Errorf("reading start line: %w", err)
		}
		if len(bytes.TrimRight(line, "\r\n")) > 0 {
			break
		}
		if b, _ := br.Peek(min(2, br.Buffered())); string(b) == "\r\n" {
			_, _ = br.Discard(2)
			if _, err := d.write([]byte("\r\n")); err != nil {
				return m, err
			}
			continue
		}
		d.cfg.pongs.Add(1)
	}
	start := strings.TrimRight(string(line), "\r\n")
	if rest, ok := strings.CutPrefix(start, "SIP/2.0 "); ok {
		codeStr, reason, _ := strings.Cut(rest, " ")
		m.code, err = strconv.Atoi(codeStr)
		if err != nil {
			return m, fmt.Errorf("status line %q: %w", start, err)
		}
		m.reason = reason
	} else {
		method, _, ok := strings.Cut(start, " ")
		if !ok || !strings.HasSuffix(start, " SIP/2.0") {
			return m, fmt.Errorf("not a SIP start line: %q", start)
		}
		m.request, m.method = true, method
	}
	length, size := 0, len(line)
	for {
		if line, err = br.ReadSlice('\n'); err != nil {
			return m, fmt.Errorf("reading headers: %w", err)
		}
		if size += len(line); size > maxSIPMessage {
			return m, fmt.Errorf("message larger than %d bytes", maxSIPMessage)
		}
		h := strings.TrimRight(string(line), "\r\n")
		if h == "" {
			break
		}
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return m, fmt.Errorf("header line without ':': %q", h)
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v":
			m.vias = append(m.vias, value)
		case "from", "f":
			m.from = value
		case "to", "t":
			m.to = value
		case "call-id", "i":
			m.callID = value
		case "cseq":
			m.cseq = value
		case "content-length", "l":
			if length, err = strconv.Atoi(value); err != nil || length < 0 || length > maxSIPMessage {
				return m, fmt.Errorf("bad Content-Length %q", value)
			}
		case "content-type", "c":
			m.contentType = value
		case "www-authenticate":
			m.auth = append(m.auth, value)
		case "x-sealpost-message-id":
			m.messageID = value
		}
	}
	if length > 0 {
		m.body = make([]byte, length)
		if _, err := io.ReadFull(br, m.body); err != nil {
			return m, fmt.Errorf("reading body: %w", err)
		}
	}
	return m, nil
}

// response builds the answer to request m (RFC 3261 §8.2.6.2: Via, From,
// Call-ID and CSeq copied, To copied with a tag added).
func (m *sipMsg) response(code int, reason, tag string) []byte {
	var b bytes.Buffer
	b.Grow(512)
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range m.vias {
		b.WriteString("Via: ")
		b.WriteString(v)
		b.WriteString("\r\n")
	}
	to := m.to
	if !strings.Contains(to, ";tag=") {
		to += ";tag=" + tag
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n", m.from, to, m.callID, m.cseq)
	return b.Bytes()
}

// sources hands out local addresses round robin, so that more connections
// than one address has ephemeral ports (about 28,000 on Linux) can be
// opened: 127.0.0.1, 127.0.0.2, … all reach a server on loopback.
type sources struct {
	ips []net.IP
	n   atomic.Uint64
}

func (s *sources) next() net.Addr {
	if s == nil || len(s.ips) == 0 {
		return nil
	}
	return &net.TCPAddr{IP: s.ips[int(s.n.Add(1)-1)%len(s.ips)]}
}

// statusError is a failure with a kind for the error table.
type statusError struct {
	kind string
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// errorKind names the kind of err for the error table.
func errorKind(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return se.kind
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "other"
}

// classify wraps a network error with a kind: what was being done, or
// "timeout" or "tls" when that is what went wrong.
func classify(what string, err error) error {
	kind := what
	var ne net.Error
	var cv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cv):
		kind = "tls_verify"
	case errors.As(err, &ne) && ne.Timeout():
		kind = what + "_timeout"
	}
	return &statusError{kind: kind, msg: fmt.Sprintf("%s: %v", what, err)}
}
