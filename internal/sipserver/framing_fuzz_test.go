package sipserver

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// scriptedConn is a connection whose peer sends chunks, then closes; what
// the server writes is kept.
type scriptedConn struct {
	net.Conn // nil: only the methods below are used
	chunks   [][]byte
	written  bytes.Buffer
}

func (c *scriptedConn) Read(b []byte) (int, error) {
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}
func (c *scriptedConn) Write(b []byte) (int, error)      { return c.written.Write(b) }
func (c *scriptedConn) SetWriteDeadline(time.Time) error { return nil }
func (c *scriptedConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5061}
}

// readAll drives a framedConn the way sipgo's reader does (with its 1 KiB
// buffer) and reassembles the units it hands over.
func readAll(t *testing.T, fc *framedConn) (units [][]byte) {
	buf := make([]byte, readBufferSize)
	var cur []byte
	for i := 0; ; i++ {
		if i > 1<<20 {
			t.Fatal("reader does not end")
		}
		n, err := fc.Read(buf)
		if len(fc.acc) > maxHeaderBytes+maxBodyBytes+readBufferSize {
			t.Fatalf("holding %d bytes: unbounded", len(fc.acc))
		}
		cur = append(cur, buf[:n]...)
		if len(fc.pending) == 0 && len(cur) > 0 {
			units = append(units, cur)
			cur = nil
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read error %v", err)
			}
			return units
		}
	}
}

var fuzzSeeds = []string{
	"OPTIONS sip:localhost SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@localhost>;tag=1\r\nTo: <sip:a@localhost>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
	"\r\n\r\n",
	"MESSAGE sip:bob@localhost SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK2\r\nFrom: <sip:alice@localhost>;tag=1\r\nTo: <sip:bob@localhost>\r\nCall-ID: c2\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nHi! secret",
	"REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK3\r\nFrom: <sip:a@localhost>;tag=1\r\nTo: <sip:a@localhost>\r\nCall-ID: c3\r\nCSeq: 1 REGISTER\r\nContact: *\r\nExpires: 60\r\nl: 0\r\n\r\n",
	"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK4\r\nFrom: <sip:a@localhost>;tag=1\r\nTo: <sip:b@localhost>;tag=2\r\nCall-ID: c4\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
	"OPTIONS sip:x SIP/3.0\r\nContent-Length: 0\r\n\r\n",
	"garbage\r\n\r\n",
	"OPTIONS sip:x SIP/2.0\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\n",
	"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TLS h\r\n folded: yes\r\nContent-Length: 0\r\n\r\n",
}

// FuzzSIPConnection feeds bytes, split in two at a fuzzed point, to the
// framing of a connection: it never panics, never holds more than a
// message's worth of bytes, writes only SIP responses, and hands sipgo only
// keepalives and messages that sipgo parses with the fields a request needs.
func FuzzSIPConnection(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add([]byte(s), uint16(i*7))
		f.Add([]byte(s+fuzzSeeds[(i+1)%len(fuzzSeeds)]), uint16(len(s)))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		at := int(split) % (len(data) + 1)
		sc := &scriptedConn{chunks: [][]byte{append([]byte{}, data[:at]...), append([]byte{}, data[at:]...)}}
		fc := newFramedConn(sc, nil)
		fc.grace = 0 // nothing answers the requests here
		for _, u := range readAll(t, fc) {
			if len(bytes.Trim(u, "\r\n")) == 0 {
				if len(u) > 4 {
					t.Fatalf("keepalive unit of %d bytes", len(u))
				}
				continue
			}
			msg, err := sip.ParseMessage(u)
			if err != nil {
				t.Fatalf("handed sipgo an unparsable message %q: %v", u, err)
			}
			if req, ok := msg.(*sip.Request); ok {
				if req.Via() == nil || req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.ContentLength() == nil {
					t.Fatalf("handed sipgo a request without a required field: %q", u)
				}
			}
		}
		out := sc.written.String()
		for out != "" {
			if !strings.HasPrefix(out, "SIP/2.0 ") {
				t.Fatalf("wrote something that is not a SIP response: %q", out)
			}
			end := strings.Index(out, "\r\n\r\n")
			if end < 0 {
				t.Fatalf("wrote an unterminated response: %q", out)
			}
			if _, err := sip.ParseMessage([]byte(out[:end+4])); err != nil {
				t.Fatalf("wrote an unparsable response %q: %v", out[:end+4], err)
			}
			out = out[end+4:]
		}
	})
}

// Every check's answer, for a few inputs, as sipgo reads it: unit-level
// companions of tests/security_e2e_test.go, without a server.
func TestFramingSplitAnywhere(t *testing.T) {
	msg := fuzzSeeds[0] + "\r\n\r\n" + fuzzSeeds[2] + fuzzSeeds[4]
	for at := 0; at <= len(msg); at++ {
		sc := &scriptedConn{chunks: [][]byte{[]byte(msg[:at]), []byte(msg[at:])}}
		fc := newFramedConn(sc, nil)
		fc.grace = 0
		units := readAll(t, fc)
		var got []string
		for _, u := range units {
			got = append(got, string(u))
		}
		want := []string{fuzzSeeds[0], "\r\n\r\n", fuzzSeeds[2][:len(fuzzSeeds[2])-len(" secret")], fuzzSeeds[4]}
		// The tail of the short body (" secret") then fails as a start
		// line: answered 400, and the connection ends there.
		if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Fatalf("split at %d: units %q", at, got)
		}
		if w := sc.written.String(); !strings.HasPrefix(w, "SIP/2.0 400 Bad Request: malformed request line\r\n") {
			t.Fatalf("split at %d: wrote %q", at, w)
		}
	}
}
