package tests

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/connlimit"
	"github.com/sealpost/sealpost/internal/loginguard"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/server/servertest"
)

var securityT0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// An attacker guesses carol's password over SIP digest from one address,
// thousands of times while time passes: only a few dozen guesses are
// checked, the rest get 503 with Retry-After whatever the password (the
// right one too), one log line tells of the episode, and carol's own
// device on another address registers during the attack. The same guard
// then refuses the attacker's address over HTTPS too.
func TestSIPDigestBruteForceIsBounded(t *testing.T) {
	s := servertest.Start(t, servertest.WithFakeClock(securityT0))
	s.AddUser(t, "carol", "carol-right-pw")
	s.AddUser(t, "dave", "dave-pw")
	const guesses = 2000
	attacker := dialRawSIP(t, s, "127.0.0.2")

	attacker.send(rawRegister("carol", "127.0.0.2", 1, ""))
	chal := attacker.mustRead()
	if chal.Code != 401 {
		t.Fatalf("first REGISTER: %d, want a 401 challenge", chal.Code)
	}
	challenge := chal.Header.Get("WWW-Authenticate")
	answers := map[int]int{}
	for i := 1; i <= guesses; i++ {
		if i%100 == 0 {
			// 2,000 guesses over 20 minutes of the server's time. The
			// attacker never authenticates, so the auth deadline
			// closes its connection each time: it dials again.
			s.Clock.Advance(time.Minute)
			if !attacker.closed() {
				t.Fatal("the guessing connection outlived the auth deadline")
			}
			attacker = dialRawSIP(t, s, "127.0.0.2")
		}
		attacker.send(rawRegister("carol", "127.0.0.2", i+1, digestFor(t, challenge, "carol", fmt.Sprintf("guess-%d", i), i)))
		a := attacker.mustRead()
		answers[a.Code]++
		switch a.Code {
		case 401:
			challenge = a.Header.Get("WWW-Authenticate")
		case 503:
			if a.Header.Get("Retry-After") == "" {
				t.Fatalf("guess %d: 503 without Retry-After", i)
			}
		default:
			t.Fatalf("guess %d: %d %s", i, a.Code, a.Reason)
		}
	}
	checks := metricValue(t, s, `sealpost_login_checks_total{via="sip"}`)
	t.Logf("%d guesses over 20 minutes: answers %v, %v digest responses checked", guesses, answers, checks)
	if checks > 40 || checks < loginguard.DefaultAddressFreeFailures {
		t.Fatalf("%v of %d guesses checked, want between %d and a few dozen", checks, guesses, loginguard.DefaultAddressFreeFailures)
	}
	if limited := metricValue(t, s, `sealpost_login_limited_total{scope="address",via="sip"}`); limited != float64(answers[503]) || limited < guesses-40 {
		t.Fatalf("limited metric %v, 503 answers %d", limited, answers[503])
	}

	// While limited, the right password gets the same 503: the answer
	// reveals nothing.
	attacker.send(rawRegister("carol", "127.0.0.2", guesses+2, digestFor(t, challenge, "carol", "carol-right-pw", guesses+1)))
	if a := attacker.mustRead(); a.Code != 503 {
		t.Fatalf("right password from the limited address: %d %s, want 503 like a wrong one", a.Code, a.Reason)
	}
	// The real carol, on another address, registers during the attack.
	dev := s.NewDevice(t, "carol", "carol-right-pw")
	if code, err := dev.Register(600, false); err != nil || code != 200 {
		t.Fatalf("carol's own device during the attack: %d %v", code, err)
	}
	// Another account from the attacking address is not limited.
	attacker.send(rawRegister("dave", "127.0.0.2", guesses+3, ""))
	davesChallenge := attacker.mustRead().Header.Get("WWW-Authenticate")
	attacker.send(rawRegister("dave", "127.0.0.2", guesses+4, digestFor(t, davesChallenge, "dave", "dave-pw", 1)))
	if a := attacker.mustRead(); a.Code != 200 {
		t.Fatalf("dave from the same address: %d %s", a.Code, a.Reason)
	}
	// SIP and HTTPS share the guard: the attacker's address is limited
	// for carol over HTTPS as well.
	req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathTokens, nil)
	req.SetBasicAuth("carol", "carol-right-pw")
	res, err := httpsFrom(s, "127.0.0.2").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("HTTPS login from the SIP-guessing address: %d, want 429", res.StatusCode)
	}
	// One log line for the episode, none per guess.
	var episode, perGuess int
	for _, l := range s.Logs() {
		if strings.Contains(l, "login attempts limited") {
			episode++
		}
		if strings.Contains(l, "authentication failed") {
			perGuess++
		}
	}
	if episode != 1 || perGuess > 40 {
		t.Fatalf("%d episode log lines (want 1) and %d failure lines for %d guesses", episode, perGuess, guesses)
	}
}

// 200 concurrent wrong HTTPS logins from one address: the limit is counted
// before the password hash, so all but a handful get 429 with Retry-After
// and only that handful is checked; the real user, logging in from
// another address during the attack, gets a token.
func TestHTTPSConcurrentBruteForceIsBounded(t *testing.T) {
	s := servertest.Start(t, servertest.WithFakeClock(securityT0))
	s.AddUser(t, "carol", "carol-right-pw")
	attacker := httpsFrom(s, "127.0.0.2")
	const guesses = 200
	var mu sync.Mutex
	codes := map[int]int{}
	resent := 0 // guesses sent again after a transport error
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < guesses; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			// On a busy machine a handshake can time out or a connection
			// break under 200 at once; such a guess is sent again (an
			// attacker would), and counts as one.
			var res *http.Response
			var err error
			for try := 0; try < 3; try++ {
				req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathTokens, nil)
				req.SetBasicAuth("carol", fmt.Sprintf("guess-%d", i))
				if res, err = attacker.Do(req); err == nil {
					break
				}
				mu.Lock()
				resent++
				mu.Unlock()
			}
			if err != nil {
				t.Errorf("guess %d: %v", i, err)
				return
			}
			res.Body.Close()
			if res.StatusCode == 429 && res.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
			mu.Lock()
			codes[res.StatusCode]++
			mu.Unlock()
		}(i)
	}
	close(start)
	wg.Wait()
	checks := metricValue(t, s, `sealpost_login_checks_total{via="https"}`)
	t.Logf("%d concurrent guesses: answers %v, %v passwords checked, %d sent again after a transport error", guesses, codes, checks, resent)
	free := loginguard.DefaultAddressFreeFailures
	switch {
	case resent == 0 && (codes[401] != free || codes[429] != guesses-free):
		t.Fatalf("answers %v, want %d × 401 and the rest 429", codes, free)
	case codes[401] > free || codes[401]+codes[429] != guesses:
		// A guess whose answer was lost may have been checked: its
		// second sending is then limited.
		t.Fatalf("answers %v (%d sent again), want at most %d × 401 and the rest 429", codes, resent, free)
	}
	if checks != float64(loginguard.DefaultAddressFreeFailures) {
		t.Fatalf("%v passwords checked, want %d", checks, loginguard.DefaultAddressFreeFailures)
	}
	// The right password from the attacking address: 429 too, the same
	// answer as a wrong one.
	req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathTokens, nil)
	req.SetBasicAuth("carol", "carol-right-pw")
	res, err := attacker.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 429 {
		t.Fatalf("right password from the attacking address: %d, want 429", res.StatusCode)
	}
	// The real carol, from her own address: not locked out.
	if tok := s.Token(t, "carol", "carol-right-pw"); tok == "" {
		t.Fatal("no token for carol")
	}
}

// tableBranch makes each request of sipRequest its own transaction.
var tableBranch int

// sipRequest builds a request with the fields every request needs, then
// extra (each a whole field line, CRLF added), then Content-Length and the
// body, unless noLength.
func sipRequest(method, uri string, cseq string, extra []string, body string, noLength bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, uri)
	tableBranch++
	fmt.Fprintf(&b, "Via: SIP/2.0/TLS 127.0.0.3:5555;branch=z9hG4bK-table-%d\r\n", tableBranch)
	b.WriteString("From: <sip:alice@localhost>;tag=t1\r\n")
	b.WriteString("To: <sip:alice@localhost>\r\n")
	b.WriteString("Call-ID: table-call\r\n")
	if cseq != "" {
		fmt.Fprintf(&b, "CSeq: %s\r\n", cseq)
	}
	b.WriteString("Max-Forwards: 70\r\n")
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	if !noLength {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

// Each malformed or wrong SIP input of the issue gets its exact answer;
// when its framing cannot be trusted the connection is then closed, and
// otherwise a valid OPTIONS on the same connection still gets 200.
func TestBadSIPInputGetsAnAnswer(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "alice-pw")
	options := sipRequest("OPTIONS", "sip:localhost", "2 OPTIONS", nil, "", false)
	nextOptions := func() string { return sipRequest("OPTIONS", "sip:localhost", "2 OPTIONS", nil, "", false) }
	without := func(req, field string) string {
		i := strings.Index(req, field)
		j := i + strings.Index(req[i:], "\r\n") + 2
		return req[:i] + req[j:]
	}
	manyFields := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("X-Field-%d: 1", i)
		}
		return out
	}
	cases := []struct {
		name   string
		input  string
		answer string // "" for none
		closes bool
	}{
		{"70 KB header", sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", []string{"X-Big: " + strings.Repeat("a", 70<<10)}, "", false),
			"513 Message Too Large: header section over 16384 bytes", true},
		{"10,000 header fields", sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", manyFields(10000), "", false),
			"513 Message Too Large: header section over 16384 bytes", true},
		{"200 header fields", sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", manyFields(200), "", false),
			"513 Message Too Large: more than 128 header fields", true},
		{"1 MB body", sipRequest("MESSAGE", "sip:alice@localhost", "1 MESSAGE", []string{"Content-Length: 1048576"}, "", true) + strings.Repeat("x", 64<<10),
			"413 Request Entity Too Large: body over 16384 bytes", true},
		{"Content-Length -1", sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", []string{"Content-Length: -1"}, "", true),
			"400 Bad Request: malformed Content-Length", true},
		{"Content-Length 4294967295", sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", []string{"Content-Length: 4294967295"}, "", true),
			"413 Request Entity Too Large: body over 16384 bytes", true},
		{"Content-Length missing", sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", nil, "", true),
			"400 Bad Request: Content-Length missing (required on TLS)", true},
		{"two Content-Lengths", sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", []string{"Content-Length: 0"}, "", false),
			"400 Bad Request: more than one Content-Length", true},
		{"field without a colon", sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", []string{"NoColonHere"}, "", false),
			"400 Bad Request: header field without a colon", true},
		{"request line without version", strings.Replace(options, " SIP/2.0\r\n", "\r\n", 1),
			"400 Bad Request: request line without SIP version", true},
		{"garbage, then a valid OPTIONS", "hello there\r\n\r\n" + options,
			"400 Bad Request: malformed request line", true},
		{"bare LF line ends", strings.ReplaceAll(options, "\r\n", "\n"),
			"400 Bad Request: lines must end with CRLF", true},
		{"SIP/3.0", strings.Replace(sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", nil, "", false), "SIP/2.0\r\n", "SIP/3.0\r\n", 1),
			"505 Version Not Supported: only SIP/2.0", false},
		{"CSeq above 2^32", sipRequest("OPTIONS", "sip:localhost", "4294967296 OPTIONS", nil, "", false),
			"400 Bad Request: malformed CSeq header", false},
		{"CSeq method not the request's", sipRequest("OPTIONS", "sip:localhost", "1 REGISTER", nil, "", false),
			"400 Bad Request: CSeq method does not match the request method", false},
		{"MESSAGE without To", without(sipRequest("MESSAGE", "sip:alice@localhost", "1 MESSAGE", []string{"Content-Type: text/plain"}, "hi", false), "To: "),
			"400 Bad Request: To header missing", false},
		{"MESSAGE without CSeq", sipRequest("MESSAGE", "sip:alice@localhost", "", []string{"Content-Type: text/plain"}, "hi", false),
			"400 Bad Request: CSeq header missing", false},
		{"Contact * with Expires 3600", sipRequest("REGISTER", "sip:localhost", "1 REGISTER", []string{"Contact: *", "Expires: 3600"}, "", false),
			"400 Bad Request: Contact * needs Expires: 0 and no other Contact", false},
		{"Contact javascript:", sipRequest("REGISTER", "sip:localhost", "1 REGISTER", []string{"Contact: <javascript:alert(1)>"}, "", false),
			"400 Bad Request: Contact URI must be sip: or sips:", false},
		{"Contact of 8 KB", sipRequest("REGISTER", "sip:localhost", "1 REGISTER", []string{"Contact: <sip:alice@" + strings.Repeat("h", 8<<10) + ".example>"}, "", false),
			"400 Bad Request: Contact URI longer than 512 bytes", false},
		{"Contact with %00%0d%0a", sipRequest("REGISTER", "sip:localhost", "1 REGISTER", []string{"Contact: <sip:alice%00%0d%0a@127.0.0.3>"}, "", false),
			"400 Bad Request: Contact URI holds control characters", false},
		{"Request-URI of another scheme", sipRequest("OPTIONS", "tel:+15551234", "1 OPTIONS", nil, "", false),
			"416 Unsupported URI Scheme: use sip or sips", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRawSIP(t, s, "127.0.0.3")
			// The write may fail half way when the server has answered
			// and closed early (an oversized input): that is fine.
			go func() { _, _ = c.conn.Write([]byte(tc.input)) }()
			a := c.mustRead()
			if got := fmt.Sprintf("%d %s", a.Code, a.Reason); got != tc.answer {
				t.Fatalf("answer %q, want %q", got, tc.answer)
			}
			if a.Header.Get("Call-ID") != "table-call" && !strings.HasPrefix(tc.name, "garbage") && !strings.HasPrefix(tc.name, "bare LF") {
				t.Errorf("answer without the request's Call-ID: %v", a.Header)
			}
			if tc.closes {
				if !c.closed() {
					t.Fatal("connection left open after a framing error")
				}
				return
			}
			c.send(nextOptions())
			if a := c.mustRead(); a.Code != 200 {
				t.Fatalf("OPTIONS after the bad input: %d %s", a.Code, a.Reason)
			}
		})
	}
	if refused := metricValue(t, s, `sealpost_sip_bad_input_total{kind="bad version"}`); refused != 1 {
		t.Errorf("bad version counted %v times, want 1", refused)
	}
}

// A phone that counts characters instead of bytes sends a Content-Length
// shorter than its body; the rest of the text then reads as the start of a
// new message. It is answered 400 and the connection closed, and no byte
// of the text reaches the log: only the kind of error and the address.
func TestShortContentLengthKeepsTextOutOfTheLog(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "alice-pw")
	s.AddUser(t, "bob", "bob-pw")
	c := dialRawSIP(t, s, "127.0.0.4")
	c.send(rawRegister("alice", "127.0.0.4", 1, ""))
	chal := c.mustRead()
	c.send(rawRegister("alice", "127.0.0.4", 2, digestFor(t, chal.Header.Get("WWW-Authenticate"), "alice", "alice-pw", 1)))
	if a := c.mustRead(); a.Code != 200 {
		t.Fatalf("register: %d %s", a.Code, a.Reason)
	}
	const canary = "Grüße CANARY-7d1f secret text"
	body := "Hi! " + canary
	msg := "MESSAGE sip:bob@localhost SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 127.0.0.4:5555;branch=z9hG4bK-short\r\n" +
		"From: <sip:alice@localhost>;tag=s1\r\nTo: <sip:bob@localhost>\r\n" +
		"Call-ID: short-length\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n" +
		"Content-Type: text/plain;charset=utf-8\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n%s", 4, body) // counts "Hi! " only
	c.send(msg)
	// Two answers, in either order: 202 for the MESSAGE up to its
	// Content-Length, 400 for the rest of the body.
	got := map[string]bool{}
	for range 2 {
		a := c.mustRead()
		got[fmt.Sprintf("%d %s", a.Code, a.Reason)] = true
	}
	if !got["202 Accepted"] || !got["400 Bad Request: malformed request line"] {
		t.Fatalf("answers %v, want 202 Accepted and 400 Bad Request: malformed request line", got)
	}
	if !c.closed() {
		t.Fatal("connection left open after the framing error")
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		for _, l := range s.Logs() {
			if strings.Contains(l, "bad SIP input refused") && strings.Contains(l, "remote=127.0.0.4:") && strings.Contains(l, "kind=\"bad request line\"") {
				return nil
			}
		}
		return fmt.Errorf("no log line of the kind and address")
	})
	for _, l := range s.Logs() {
		for _, part := range []string{"CANARY", "7d1f", "secret text", "Grüße"} {
			if strings.Contains(l, part) {
				t.Errorf("the log holds %q: %s", part, l)
			}
		}
	}
}

// JSON naming a key twice (in any case) is refused with its own code
// instead of the last one silently winning.
func TestDuplicateJSONKeysRefused(t *testing.T) {
	s, token := newPair(t)
	s.AddUser(t, "carol", "carol-pw")
	for _, body := range []string{
		`{"id":"8d4b1f3e-2c6a-4e1b-9a7d-5f0e3c2b1a90","to":"bob","text":"hi","to":"carol"}`,
		`{"id":"8d4b1f3e-2c6a-4e1b-9a7d-5f0e3c2b1a91","to":"bob","text":"hi","TO":"carol"}`,
		`{"id":"8d4b1f3e-2c6a-4e1b-9a7d-5f0e3c2b1a92","to":"bob","text":"hi","\u0054o":"carol"}`,
	} {
		req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathMessages, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := s.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb api.ErrorBody
		_ = json.NewDecoder(res.Body).Decode(&eb)
		res.Body.Close()
		if res.StatusCode != 400 || eb.Error.Code != api.CodeDuplicateKey {
			t.Errorf("%s: %d %+v, want 400 %s", body, res.StatusCode, eb.Error, api.CodeDuplicateKey)
		}
	}
}

// TLS on both ports: 1.2 with AEAD suites only, or 1.3; a client that
// offers only CBC suites gets no connection; the SIP port offers no ALPN
// (no h2), the HTTPS port does.
func TestTLSSettings(t *testing.T) {
	s := servertest.Start(t)
	cbcOnly := s.TLSConfig()
	cbcOnly.MaxVersion = tls.VersionTLS12
	cbcOnly.CipherSuites = []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	}
	addrs := map[string]string{"HTTPS": strings.TrimPrefix(s.HTTPSURL, "https://"), "SIP": s.SIPAddr}
	for port, addr := range addrs {
		if c, err := tls.Dial("tcp", addr, cbcOnly); err == nil {
			c.Close()
			t.Errorf("%s: a client offering only CBC suites connected (%s)", port, tls.CipherSuiteName(c.ConnectionState().CipherSuite))
		}
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			conf := s.TLSConfig()
			conf.MinVersion, conf.MaxVersion = v, v
			conf.NextProtos = []string{"h2", "http/1.1"}
			c, err := tls.Dial("tcp", addr, conf)
			if err != nil {
				t.Errorf("%s: %s refused: %v", port, tls.VersionName(v), err)
				continue
			}
			st := c.ConnectionState()
			c.Close()
			if !strings.Contains(tls.CipherSuiteName(st.CipherSuite), "GCM") && !strings.Contains(tls.CipherSuiteName(st.CipherSuite), "CHACHA20") {
				t.Errorf("%s: %s negotiated %s", port, tls.VersionName(v), tls.CipherSuiteName(st.CipherSuite))
			}
			switch {
			case port == "SIP" && st.NegotiatedProtocol != "":
				t.Errorf("SIP port negotiated ALPN %q", st.NegotiatedProtocol)
			case port == "HTTPS" && st.NegotiatedProtocol != "h2":
				t.Errorf("HTTPS port negotiated ALPN %q, want h2", st.NegotiatedProtocol)
			}
		}
	}
}

// "Expect: 100-continue" with a body far over the limit gets 413 before
// any "100 Continue", whether or not the request carries a token.
func TestOversizedExpectContinueRefusedFirst(t *testing.T) {
	s, token := newPair(t)
	for _, auth := range []string{"Authorization: Bearer " + token + "\r\n", ""} {
		c, err := tls.Dial("tcp", strings.TrimPrefix(s.HTTPSURL, "https://"), s.TLSConfig())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: localhost\r\n%sContent-Type: application/json\r\nContent-Length: 10737418240\r\nExpect: 100-continue\r\n\r\n", api.PathMessages, auth)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		c.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("10 GB with Expect: 100-continue (token %v): first answer %d, want 413", auth != "", res.StatusCode)
		}
	}
}

// A flood of idle TLS and half-open TCP connections from a few addresses,
// with the limits lowered (40 in total, 16 reserved for newcomers, 16 SIP
// and 8 HTTPS connections per address): each address stops at its cap, the flood stops short of the
// total, and meanwhile a real device on another address
// registers and receives, HTTPS logins work and /healthz answers. When the
// auth deadline passes, the idle connections are closed and the device's
// stays.
func TestConnectionFloodLeavesRoomForRealUsers(t *testing.T) {
	limits := connlimit.Settings{Max: 40, Reserve: 16, PerAddressSIP: 16, PerAddressHTTPS: 8}
	s := servertest.Start(t, servertest.WithFakeClock(securityT0), servertest.WithOptions(func(o *server.Options) {
		o.Connections = limits
		o.SIPAuthTimeout = 30 * time.Second
	}))
	s.AddUser(t, "carol", "carol-pw")
	s.AddUser(t, "bob", "bob-pw")

	// HTTPS from one address: its cap of connections that send nothing.
	httpsHeld := 0
	var httpsConns []*tls.Conn
	for range 12 {
		conn, err := tls.DialWithDialer(loopbackDialer("127.0.0.8"), "tcp", strings.TrimPrefix(s.HTTPSURL, "https://"), s.TLSConfig())
		if err != nil {
			continue
		}
		httpsConns = append(httpsConns, conn)
		httpsHeld++
	}
	if httpsHeld != limits.PerAddressHTTPS {
		t.Fatalf("127.0.0.8 held %d HTTPS connections, want its cap %d", httpsHeld, limits.PerAddressHTTPS)
	}
	if n := metricValue(t, s, `sealpost_connections_refused_total{limit="address",listener="https"}`); n != float64(12-limits.PerAddressHTTPS) {
		t.Fatalf("%v HTTPS connections refused, want %d", n, 12-limits.PerAddressHTTPS)
	}
	// (They go, so that the SIP flood below meets the numbers it expects
	// whenever the server would time them out.)
	for _, c := range httpsConns {
		c.Close()
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if n := metricValue(t, s, `sealpost_connections_open{listener="https"}`); n != 0 {
			return fmt.Errorf("%v HTTPS connections still open", n)
		}
		return nil
	})

	// Idle TLS connections from 127.0.0.2 and 127.0.0.5: each proves it
	// is being read (an OPTIONS, which needs no login) and then idles.
	var idle []*rawSIP
	openIdle := func(source string, n int) (opened int) {
		for range n {
			conn, err := tls.DialWithDialer(loopbackDialer(source), "tcp", s.SIPAddr, s.TLSConfig())
			if err != nil {
				continue // closed on arrival: over a limit
			}
			c := &rawSIP{t: t, conn: conn, r: bufio.NewReader(conn)}
			t.Cleanup(func() { conn.Close() })
			c.send(sipRequest("OPTIONS", "sip:localhost", "1 OPTIONS", nil, "", false))
			if a, err := c.read(); err != nil || a.Code != 200 {
				continue
			}
			idle = append(idle, c)
			opened++
		}
		return opened
	}
	if n := openIdle("127.0.0.2", 24); n != limits.PerAddressSIP {
		t.Fatalf("127.0.0.2 held %d connections, want its cap %d", n, limits.PerAddressSIP)
	}
	// A second address fills the total up to the newcomers' reserve.
	if n := openIdle("127.0.0.6", 24); n != limits.Max-limits.Reserve-limits.PerAddressSIP {
		t.Fatalf("127.0.0.6 held %d connections, want %d", n, limits.Max-limits.Reserve-limits.PerAddressSIP)
	}
	// A third flooding address gets a newcomer's two and no more.
	if n := openIdle("127.0.0.5", 10); n != 2 {
		t.Fatalf("127.0.0.5 held %d connections during the flood, want 2", n)
	}
	// Half-open: TCP only, no TLS handshake; a newcomer's two again.
	for range 20 {
		if c, err := loopbackDialer("127.0.0.3").Dial("tcp", s.SIPAddr); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if n := metricValue(t, s, `sealpost_connections_refused_total{limit="total",listener="sip"}`); n < 16+8+18 {
			return fmt.Errorf("%v connections refused by the total so far", n)
		}
		return nil
	})
	if open := metricValue(t, s, `sealpost_connections_open{listener="sip"}`); open > float64(limits.Max) {
		t.Fatalf("%v SIP connections open, over the total of %d", open, limits.Max)
	}

	// Meanwhile, from 127.0.0.1: the device registers, bob logs in and
	// sends, the device receives, /healthz answers.
	dev := s.NewDevice(t, "carol", "carol-pw")
	if code, err := dev.Register(600, false); err != nil || code != 200 {
		t.Fatalf("carol's device during the flood: %d %v", code, err)
	}
	bob := s.Token(t, "bob", "bob-pw")
	if code, _, e := submit(t, s, bob, "0f8fad5b-d9cb-469f-a165-70867728950e", "carol", "during the flood"); code != 202 {
		t.Fatalf("submit during the flood: %d %+v", code, e)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if texts := dev.Texts(); len(texts) != 1 {
			return fmt.Errorf("device has %q", texts)
		}
		return nil
	})
	res, err := http.Get(s.AdminURL + "/healthz")
	if err != nil {
		t.Fatalf("/healthz during the flood: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("/healthz during the flood: %d", res.StatusCode)
	}

	// The auth deadline passes: every idle connection is closed; the
	// registered device's is not.
	s.Clock.Advance(31 * time.Second)
	for i, c := range idle {
		if !c.closed() {
			t.Fatalf("idle connection %d still open after the auth deadline", i)
		}
	}
	if n := metricValue(t, s, `sealpost_sip_unauthenticated_closed_total`); n < float64(len(idle)) {
		t.Fatalf("%v connections closed for not authenticating, want at least %d", n, len(idle))
	}
	if code, _, e := submit(t, s, bob, "7c9e6679-7425-40de-944b-e07fc1f90ae7", "carol", "after the flood"); code != 202 {
		t.Fatalf("submit after the flood: %d %+v", code, e)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if texts := dev.Texts(); len(texts) != 2 {
			return fmt.Errorf("device has %q", texts)
		}
		return nil
	})
}

// A device that registered with an RFC 5626 flow (told Flow-Timer: 60)
// keeps its connection while it pings; once its pings stop, the connection
// is closed after twice the Flow-Timer, though its registration has not
// run out.
func TestSilentFlowIsClosed(t *testing.T) {
	s := servertest.Start(t, servertest.WithFakeClock(securityT0))
	s.AddUser(t, "alice", "alice-pw")
	c := dialRawSIP(t, s, "127.0.0.7")
	outbound := func(reg string) string {
		reg = strings.Replace(reg, "transport=tls>\r\n", "transport=tls>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000000001>\"\r\nSupported: outbound\r\n", 1)
		return strings.Replace(reg, "Content-Length: 0\r\n", "Expires: 600\r\nContent-Length: 0\r\n", 1)
	}
	c.send(outbound(rawRegister("alice", "127.0.0.7", 1, "")))
	chal := c.mustRead()
	c.send(outbound(rawRegister("alice", "127.0.0.7", 2, digestFor(t, chal.Header.Get("WWW-Authenticate"), "alice", "alice-pw", 1))))
	a := c.mustRead()
	if a.Code != 200 || a.Header.Get("Flow-Timer") != "60" {
		t.Fatalf("register: %d %s, Flow-Timer %q", a.Code, a.Reason, a.Header.Get("Flow-Timer"))
	}
	ping := func() {
		t.Helper()
		c.send("\r\n\r\n")
		pong := make([]byte, 2)
		_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c.r, pong); err != nil || string(pong) != "\r\n" {
			t.Fatalf("ping: %q %v", pong, err)
		}
	}
	for range 5 { // five minutes of pings
		s.Clock.Advance(60 * time.Second)
		ping()
	}
	s.Clock.Advance(2*60*time.Second + time.Second)
	if !c.closed() {
		t.Fatal("the connection outlived two Flow-Timers of silence")
	}
	if _, ok := s.Registrar().Lookup("alice"); ok {
		t.Fatal("the registration outlived its closed connection")
	}
}
