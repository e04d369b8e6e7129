package tests

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server/servertest"
)

// FuzzSIPServer sends bytes, in two writes split at a fuzzed point, on a
// TLS connection to the real server: whatever comes back is SIP responses
// (or keepalive pongs), the server never goes down (a panic would end the
// test binary), and after every input it still answers a valid OPTIONS on
// a new connection. internal/sipserver's FuzzSIPConnection covers the
// framing alone, much faster.
func FuzzSIPServer(f *testing.F) {
	for i, seed := range []string{
		sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", nil, "", false),
		sipRequest("MESSAGE", "sip:alice@localhost", "1 MESSAGE", []string{"Content-Type: text/plain"}, "hi", false),
		sipRequest("REGISTER", "sip:localhost", "1 REGISTER", []string{"Contact: *", "Expires: 0"}, "", false),
		"\r\n\r\n" + sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", nil, "", false),
		"garbage\r\n\r\n",
		"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
		sipRequest("MESSAGE", "sip:alice@localhost", "1 MESSAGE", []string{"Content-Type: text/plain", "Content-Length: 2"}, "hello", true),
	} {
		f.Add([]byte(seed), uint16(i*13))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		// A server per input: its log goes to this input's t.
		s := servertest.Start(t)
		s.AddUser(t, "alice", "alice-pw")
		at := int(split) % (len(data) + 1)
		conn, err := tls.DialWithDialer(loopbackDialer("127.0.0.9"), "tcp", s.SIPAddr, s.TLSConfig())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer conn.Close()
		_, _ = conn.Write(data[:at])
		_, _ = conn.Write(data[at:])
		var got bytes.Buffer
		buf := make([]byte, 4096)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := conn.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				break // closed by the server, or quiet
			}
		}
		checkOnlySIPResponses(t, got.Bytes())
		// The server still serves.
		c := dialRawSIP(t, s, "127.0.0.10")
		c.send(sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", nil, "", false))
		if a := c.mustRead(); a.Code != 200 {
			t.Fatalf("OPTIONS after the input: %d %s", a.Code, a.Reason)
		}
	})
}

// checkOnlySIPResponses fails unless out is a run of CRLF pongs and whole
// SIP responses (a last one may be cut short by the read's end).
func checkOnlySIPResponses(t *testing.T, out []byte) {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(out))
	for {
		b, err := r.Peek(1)
		if err != nil {
			return
		}
		if b[0] == '\r' || b[0] == '\n' {
			_, _ = r.ReadByte()
			continue
		}
		tp := textproto.NewReader(r)
		line, err := tp.ReadLine()
		if err != nil {
			return // cut short
		}
		if !strings.HasPrefix(line, "SIP/2.0 ") {
			t.Fatalf("the server wrote something other than a SIP response: %q", line)
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			return
		}
		n, err := strconv.Atoi(h.Get("Content-Length"))
		if err != nil {
			t.Fatalf("a response without a Content-Length: %q %v", line, h)
		}
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return
		}
	}
}
