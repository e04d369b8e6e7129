package sipserver_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/internal/sipserver"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUnparsableMessageTextNeverLogged sends MESSAGEs that sipgo cannot
// parse, carrying a text and digest credentials, and checks that each is
// answered 400 naming the bad field and that neither the text nor the
// credentials reach any log: the server's own, or sipgo's package-level one.
func TestUnparsableMessageTextNeverLogged(t *testing.T) {
	var lib syncBuffer
	defer sipserver.SetLibraryLogOutput(&lib)()
	s := servertest.Start(t)
	s.AddUser(t, "alice", "alice-pw")
	s.AddUser(t, "bob", "bob-pw")

	const canary = "CANARY-TEXT-4711"
	const response = "0123456789abcdef0123456789abcdef"
	body := "top secret " + canary
	malformed := []string{
		// A display name without <> around the address.
		"MESSAGE sip:bob@localhost SIP/2.0\r\n" +
			"Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-1\r\n" +
			"From: Alice Smith sip:alice@localhost;tag=1\r\n" +
			"To: <sip:bob@localhost>\r\nCall-ID: leak-1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n" +
			`Proxy-Authorization: Digest username="alice", realm="localhost", nonce="n", uri="sip:bob@localhost", response="` + response + `"` + "\r\n" +
			"Content-Type: text/plain\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body),
		// A CSeq that is not a number.
		"MESSAGE sip:bob@localhost SIP/2.0\r\n" +
			"Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-2\r\n" +
			"From: <sip:alice@localhost>;tag=1\r\nTo: <sip:bob@localhost>\r\nCall-ID: leak-2\r\nCSeq: one MESSAGE\r\n" +
			"Content-Type: text/plain\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body),
	}
	answers := []string{"SIP/2.0 400 Bad Request: malformed From header\r\n", "SIP/2.0 400 Bad Request: malformed CSeq header\r\n"}
	for i, m := range malformed {
		conn, err := tls.Dial("tcp", s.SIPAddr, s.TLSConfig())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 512)
		n, _ := conn.Read(buf)
		conn.Close()
		if !strings.HasPrefix(string(buf[:n]), answers[i]) {
			t.Errorf("answer %q, want %q", buf[:n], answers[i])
		}
	}
	// The refusals were logged (so the path really ran) ...
	servertest.CheckFor(t, 10*time.Second, func() error {
		if n := strings.Count(strings.Join(s.Logs(), "\n"), "bad SIP input refused"); n < len(malformed) {
			return fmt.Errorf("%d refusals logged", n)
		}
		return nil
	})
	// ... without the text or the credentials.
	all := lib.String() + strings.Join(s.Logs(), "\n")
	for _, secret := range []string{canary, response} {
		if strings.Contains(all, secret) {
			t.Errorf("a log holds %q:\n%s", secret, all)
		}
	}
}
