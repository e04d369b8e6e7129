package sipflow

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

const message1 = "MESSAGE sip:alice@127.0.0.1 SIP/2.0\r\n" +
	"Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-1\r\n" +
	"From: <sip:bob@localhost>;tag=1\r\nTo: <sip:alice@localhost>\r\n" +
	"Call-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n" +
	"Content-Length: 5\r\n\r\nhello"

// The stream may be cut anywhere: a CRLF pong, then a message split in
// every possible place, must give one pong and one whole message.
func TestReadMessageSplitAnywhere(t *testing.T) {
	stream := "\r\n" + message1 + "\r\n"
	for cut := 0; cut <= len(stream); cut++ {
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte(stream[:cut]))
			pw.Write([]byte(stream[cut:]))
			pw.Close()
		}()
		pongs := 0
		br := bufio.NewReader(pr)
		msg, err := readMessage(br, sip.NewParser(), func() { pongs++ })
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		req, ok := msg.(*sip.Request)
		if !ok || string(req.Body()) != "hello" || req.Method != sip.MESSAGE {
			t.Fatalf("cut %d: got %v", cut, msg)
		}
		if _, err := readMessage(br, sip.NewParser(), func() { pongs++ }); err != io.EOF {
			t.Fatalf("cut %d: after the message: %v", cut, err)
		}
		if pongs != 2 {
			t.Fatalf("cut %d: %d pongs, want 2", cut, pongs)
		}
	}
}

func TestReadMessageRefusesOversizeAndMissingLength(t *testing.T) {
	for name, in := range map[string]string{
		"no length": strings.Replace(message1, "Content-Length: 5\r\n", "", 1),
		"too big":   strings.Replace(message1, "Content-Length: 5", "Content-Length: 999999", 1),
	} {
		_, err := readMessage(bufio.NewReader(strings.NewReader(in)), sip.NewParser(), func() {})
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A request from the server is handed to the handler and answered on the
// same connection; a pong arrives on Pongs; closing the far end closes the
// flow at once.
func TestConnServesRequestsAndSeesPongsAndClose(t *testing.T) {
	near, far := net.Pipe()
	c := newConn(near, func(req *sip.Request) (int, string) { return 200, "OK" })
	defer c.Close()
	go far.Write([]byte(message1))
	br := bufio.NewReader(far)
	far.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := readMessage(br, sip.NewParser(), func() {})
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := res.(*sip.Response); !ok || r.StatusCode != 200 {
		t.Fatalf("answer %v", res)
	}
	go far.Write([]byte("\r\n"))
	select {
	case <-c.Pongs():
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
	go func() { b := make([]byte, 4); far.Read(b) }()
	if err := c.Ping(); err != nil {
		t.Fatal(err)
	}
	far.Close()
	select {
	case <-c.Done():
		if c.Err() == nil {
			t.Fatal("closed without a reason")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the flow did not notice the close")
	}
}
