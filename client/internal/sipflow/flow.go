// Package sipflow is the client's one SIP-over-TLS connection to its server,
// a "flow" in the words of RFC 5626: it frames SIP messages on the stream,
// matches responses to the requests sent on it, tells CRLF keepalive answers
// apart from messages, and hands the requests the server sends (MESSAGE) to
// a handler.
//
// Why not sipgo's UserAgent: the client must hold exactly one connection,
// notice at once when it closes, and see the keepalive answers (RFC 5626
// §4.4.1); sipgo's transport pool swallows pongs, may dial a second
// connection on its own and does not report a closed flow to the
// application. sipgo's sip package still does all the SIP syntax here.
package sipflow

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// Limits on what the server may send; a larger message closes the flow,
// since there is no way to find the next message boundary after it.
const (
	maxHeaderBytes = 64 << 10
	maxBodyBytes   = 64 << 10
)

// Handler answers a request the server sent on the flow. It returns the
// status code and reason phrase of the final response. It runs on the
// reading goroutine, so requests are handled one at a time, in the order the
// server sent them; it must not send requests on the same flow.
type Handler func(req *sip.Request) (code int, reason string)

// ErrClosed is returned for requests on a flow that has closed.
var ErrClosed = errors.New("sipflow: connection closed")

// Conn is one flow. Its methods are safe for concurrent use.
type Conn struct {
	nc      net.Conn
	handler Handler

	wmu sync.Mutex // serialises writes so that messages never interleave

	mu      sync.Mutex
	pending map[string]chan *sip.Response // by Via branch; guarded by mu
	err     error                         // why the flow closed; guarded by mu

	pongs chan struct{}
	done  chan struct{}
}

// Dial opens a TLS connection to addr and starts reading from it. conf must
// verify the server (RootCAs and ServerName); Dial never weakens it.
func Dial(ctx context.Context, addr string, conf *tls.Config, h Handler) (*Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to SIP server %s: %w", addr, err)
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS with SIP server %s: %w", addr, err)
	}
	return newConn(tc, h), nil
}

// newConn starts a flow on an established connection (tests use net.Pipe).
func newConn(nc net.Conn, h Handler) *Conn {
	c := &Conn{
		nc:      nc,
		handler: h,
		pending: map[string]chan *sip.Response{},
		pongs:   make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	go c.read()
	return c
}

// LocalAddr is the client's end of the connection, used in Via and Contact.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// Done is closed when the flow has closed; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the flow closed, or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Pongs receives a value for each keepalive answer (a single CRLF between
// messages, RFC 5626 §3.5.1). It holds at most one unread value.
func (c *Conn) Pongs() <-chan struct{} { return c.pongs }

// Close closes the flow.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	return nil
}

// Ping sends a CRLF keepalive (a double CRLF, RFC 5626 §3.5.1); the server
// answers with a single CRLF, which arrives on Pongs.
func (c *Conn) Ping() error {
	return c.write([]byte("\r\n\r\n"))
}

// Do sends req and waits for its final response. req must carry a Via
// header with a branch parameter unique to this request. Provisional
// responses are skipped.
func (c *Conn) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	via := req.Via()
	if via == nil {
		return nil, errors.New("sipflow: request has no Via header")
	}
	branch, _ := via.Params.Get("branch")
	if branch == "" {
		return nil, errors.New("sipflow: request Via has no branch")
	}
	ch := make(chan *sip.Response, 4)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.pending[branch] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, branch)
		c.mu.Unlock()
	}()

	var buf bytes.Buffer
	req.StringWrite(&buf)
	if err := c.write(buf.Bytes()); err != nil {
		return nil, err
	}
	for {
		select {
		case res := <-ch:
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-c.done:
			return nil, c.Err()
		case <-ctx.Done():
			return nil, fmt.Errorf("no answer to %s: %w", req.Method, ctx.Err())
		}
	}
}

func (c *Conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return c.Err()
	default:
	}
	if _, err := c.nc.Write(b); err != nil {
		err = fmt.Errorf("write to SIP server: %w", err)
		c.fail(err)
		return err
	}
	return nil
}

// fail closes the flow once, recording the first reason.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	close(c.done)
	c.mu.Unlock()
	c.nc.Close()
}

func (c *Conn) read() {
	br := bufio.NewReaderSize(c.nc, 16<<10)
	parser := sip.NewParser()
	remote := c.nc.RemoteAddr().String()
	for {
		msg, err := readMessage(br, parser, c.pong)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = fmt.Errorf("SIP server closed the connection: %w", err)
			}
			c.fail(err)
			return
		}
		msg.SetSource(remote)
		msg.SetTransport("TLS")
		switch m := msg.(type) {
		case *sip.Response:
			c.deliverResponse(m)
		case *sip.Request:
			c.serve(m)
		}
	}
}

func (c *Conn) pong() {
	select {
	case c.pongs <- struct{}{}:
	default:
	}
}

func (c *Conn) deliverResponse(res *sip.Response) {
	via := res.Via()
	if via == nil {
		return
	}
	branch, _ := via.Params.Get("branch")
	c.mu.Lock()
	ch := c.pending[branch]
	c.mu.Unlock()
	if ch == nil {
		return // a late answer to a request we gave up on
	}
	select {
	case ch <- res:
	default:
	}
}

func (c *Conn) serve(req *sip.Request) {
	if req.IsAck() {
		return // ACK gets no response (RFC 3261 §17.2.1)
	}
	code, reason := 501, "Not Implemented"
	if c.handler != nil {
		code, reason = c.handler(req)
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	var buf bytes.Buffer
	res.StringWrite(&buf)
	_ = c.write(buf.Bytes()) // a failed write closes the flow; the server retries the request
}

// readMessage reads one SIP message from a stream: CRLFs before it are
// keepalive traffic (each bare CRLF is a pong, RFC 5626 §3.5.1), then a
// header block up to an empty line, then Content-Length bytes of body
// (RFC 3261 §18.3: Content-Length is mandatory on stream transports).
func readMessage(br *bufio.Reader, parser *sip.Parser, pong func()) (sip.Message, error) {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return nil, err
		}
		if b[0] != '\r' && b[0] != '\n' {
			break
		}
		br.ReadByte()
		if b[0] == '\n' {
			pong()
		}
	}
	var head bytes.Buffer
	contentLength := -1
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("SIP server sent a header line longer than 16 KiB")
		}
		if err != nil {
			return nil, err
		}
		head.Write(line)
		if head.Len() > maxHeaderBytes {
			return nil, fmt.Errorf("SIP server sent more than %d bytes of headers", maxHeaderBytes)
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			break
		}
		name, value, ok := strings.Cut(string(trimmed), ":")
		if !ok {
			continue // the start line
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "content-length" || name == "l" {
			n, err := strconv.Atoi(strings.TrimSpace(value))
			if err != nil || n < 0 {
				return nil, fmt.Errorf("SIP server sent a bad Content-Length %q", value)
			}
			contentLength = n
		}
	}
	if contentLength < 0 {
		return nil, errors.New("SIP server sent a message without Content-Length")
	}
	if contentLength > maxBodyBytes {
		return nil, fmt.Errorf("SIP server sent a %d-byte body; the limit is %d", contentLength, maxBodyBytes)
	}
	body := make([]byte, contentLength)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	head.Write(body)
	msg, err := parser.ParseSIP(head.Bytes())
	if err != nil {
		return nil, fmt.Errorf("SIP server sent an unparsable message: %w", err)
	}
	return msg, nil
}
