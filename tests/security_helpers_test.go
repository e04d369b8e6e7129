package tests

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"

	"github.com/sealpost/sealpost/internal/server/servertest"
)

// rawSIP is a SIP over TLS connection the test writes by hand, from a
// chosen loopback source address (127.0.0.2 … stand for other hosts: an
// attacker, a NAT), so requests no SIP stack would send can be tried.
type rawSIP struct {
	t    testing.TB
	conn *tls.Conn
	r    *bufio.Reader
}

// loopbackDialer dials from source (an IP on loopback, e.g. 127.0.0.2).
func loopbackDialer(source string) *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
}

func dialRawSIP(t testing.TB, s *servertest.Server, source string) *rawSIP {
	t.Helper()
	conn, err := tls.DialWithDialer(loopbackDialer(source), "tcp", s.SIPAddr, s.TLSConfig())
	if err != nil {
		t.Fatalf("dialing SIP from %s: %v", source, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawSIP{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (c *rawSIP) send(msg string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, msg); err != nil {
		c.t.Fatalf("sending: %v", err)
	}
}

// sipAnswer is a response read off a rawSIP connection.
type sipAnswer struct {
	Code   int
	Reason string
	Header textproto.MIMEHeader
}

// read reads one response; err is io.EOF (or a reset) when the server
// closed the connection instead.
func (c *rawSIP) read() (sipAnswer, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewReader(c.r)
	line, err := tp.ReadLine()
	for err == nil && line == "" { // keepalive pongs
		line, err = tp.ReadLine()
	}
	if err != nil {
		return sipAnswer{}, err
	}
	proto, rest, _ := strings.Cut(line, " ")
	codeStr, reason, _ := strings.Cut(rest, " ")
	code, cerr := strconv.Atoi(codeStr)
	if proto != "SIP/2.0" || cerr != nil {
		return sipAnswer{}, fmt.Errorf("not a SIP status line: %q", line)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return sipAnswer{}, err
	}
	n, _ := strconv.Atoi(h.Get("Content-Length"))
	if _, err := io.CopyN(io.Discard, c.r, int64(n)); err != nil {
		return sipAnswer{}, err
	}
	return sipAnswer{Code: code, Reason: reason, Header: h}, nil
}

func (c *rawSIP) mustRead() sipAnswer {
	c.t.Helper()
	a, err := c.read()
	if err != nil {
		c.t.Fatalf("reading a SIP answer: %v", err)
	}
	return a
}

// closed reports whether the server has closed the connection (reading
// finds its end, not an answer).
func (c *rawSIP) closed() bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.r.ReadByte()
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// register builds a REGISTER for account from the raw connection's source,
// with an Authorization header when auth is not empty.
func rawRegister(account, source string, cseq int, auth string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "REGISTER sip:localhost SIP/2.0\r\n")
	fmt.Fprintf(&b, "Via: SIP/2.0/TLS %s:5555;branch=z9hG4bK-reg-%d\r\n", source, cseq)
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:%s@localhost>;tag=raw%d\r\n", account, cseq)
	fmt.Fprintf(&b, "To: <sip:%s@localhost>\r\n", account)
	fmt.Fprintf(&b, "Call-ID: raw-register-%s\r\n", source)
	fmt.Fprintf(&b, "CSeq: %d REGISTER\r\n", cseq)
	fmt.Fprintf(&b, "Contact: <sip:%s@%s:5555;transport=tls>\r\n", account, source)
	if auth != "" {
		fmt.Fprintf(&b, "Authorization: %s\r\n", auth)
	}
	fmt.Fprintf(&b, "Content-Length: 0\r\n\r\n")
	return b.String()
}

// digestFor answers a challenge (a WWW-Authenticate value).
func digestFor(t testing.TB, challenge, account, password string, nc int) string {
	t.Helper()
	chal, err := digest.ParseChallenge(challenge)
	if err != nil {
		t.Fatalf("challenge %q: %v", challenge, err)
	}
	cred, err := digest.Digest(chal, digest.Options{
		Method: "REGISTER", URI: "sip:localhost", Username: account, Password: password,
		Count: nc, Cnonce: fmt.Sprintf("cn%d", nc),
	})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}

// httpsFrom is an HTTPS client whose connections come from source.
func httpsFrom(s *servertest.Server, source string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: s.TLSConfig(), DialContext: loopbackDialer(source).DialContext,
		MaxConnsPerHost: 0, MaxIdleConnsPerHost: 256,
	}}
}

// metricValue scrapes the admin /metrics and returns the value of the
// sample named exactly (with its labels, e.g. `x_total{via="sip"}`), 0 if
// it is absent.
func metricValue(t testing.TB, s *servertest.Server, sample string) float64 {
	t.Helper()
	res, err := http.Get(s.AdminURL + "/metrics")
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("metric %s: %v", sample, err)
	}
	return v
}
