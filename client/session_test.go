package client

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/clock"
)

// fakeRegistrar is a SIP-over-TLS registrar with knobs: it challenges
// every REGISTER (SHA-256 and MD5, as sealpostd does), checks the digest,
// grants what was asked, counts CRLF keepalives and answers them only while
// answerPings is set.
type fakeRegistrar struct {
	t  *testing.T
	ln net.Listener

	mu          sync.Mutex
	answerPings bool         // guarded by mu
	registered  int          // successful REGISTERs; guarded by mu
	pings       int          // guarded by mu
	conns       int          // connections accepted; guarded by mu
	lastReg     *sip.Request // guarded by mu
}

const testPassword = "correct horse"

func startRegistrar(t *testing.T) (*fakeRegistrar, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRegistrar{t: t, ln: ln, answerPings: true}
	go f.accept()
	t.Cleanup(func() { ln.Close() })
	return f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func (f *fakeRegistrar) get(p *int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *p
}

func (f *fakeRegistrar) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns++
		f.mu.Unlock()
		go f.serve(c)
	}
}

func (f *fakeRegistrar) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		b, err := br.Peek(4)
		if err != nil {
			return
		}
		if string(b) == "\r\n\r\n" {
			br.Discard(4)
			f.mu.Lock()
			f.pings++
			answer := f.answerPings
			f.mu.Unlock()
			if answer {
				c.Write([]byte("\r\n"))
			}
			continue
		}
		var head strings.Builder
		length := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
			if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length:"); ok {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		body := make([]byte, length)
		io.ReadFull(br, body)
		msg, err := sip.ParseMessage(append([]byte(head.String()), body...))
		if err != nil {
			f.t.Errorf("registrar: %v", err)
			return
		}
		req := msg.(*sip.Request)
		res := f.answer(req)
		c.Write([]byte(res.String()))
	}
}

func (f *fakeRegistrar) answer(req *sip.Request) *sip.Response {
	auth := req.GetHeader("Authorization")
	if auth == nil {
		res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
		for _, alg := range []string{"SHA-256", "MD5"} {
			ch := digest.Challenge{Realm: "localhost", Nonce: "n-" + alg, Algorithm: alg, QOP: []string{"auth"}}
			res.AppendHeader(sip.NewHeader("WWW-Authenticate", ch.String()))
		}
		return res
	}
	cred, err := digest.ParseCredentials(auth.Value())
	if err != nil {
		return sip.NewResponseFromRequest(req, 400, "Bad Authorization", nil)
	}
	want, _ := digest.Digest(&digest.Challenge{Realm: "localhost", Nonce: cred.Nonce, Algorithm: cred.Algorithm, QOP: []string{"auth"}},
		digest.Options{Method: "REGISTER", URI: cred.URI, Username: "alice", Password: testPassword, Cnonce: cred.Cnonce, Count: cred.Nc})
	if cred.Response != want.Response || cred.Algorithm != "SHA-256" {
		return sip.NewResponseFromRequest(req, 403, "Forbidden", nil)
	}
	f.mu.Lock()
	f.registered++
	f.lastReg = req
	f.mu.Unlock()
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Expires", req.GetHeader("Expires").Value()))
	return res
}

// TestSessionTimeRules runs the SIP session on a fake clock against a
// registrar: keepalives every 60 s, each one a retry trigger; re-REGISTER
// at three quarters of the granted 600 s; an unanswered keepalive drops
// the flow after 10 s; the reconnect and its registration (a trigger).
func TestSessionTimeRules(t *testing.T) {
	reg, caPEM := startRegistrar(t)
	home := filepath.Join(t.TempDir(), "alice")
	if err := makeHome(home); err != nil {
		t.Fatal(err)
	}
	p := profile{Server: "https://127.0.0.1:1", SIPAddr: reg.ln.Addr().String(), Domain: "localhost", Account: "alice",
		Token: "spt_test", CustomCA: true,
		HA1MD5: ha1(md5hex, "alice", "localhost", testPassword), HA1SHA256: ha1(sha256hex, "alice", "localhost", testPassword)}
	b, _ := json.Marshal(p)
	writeFile0600(filepath.Join(home, profileFile), b)
	writeFile0600(filepath.Join(home, caFile), caPEM)
	clk := clock.NewFake(t0)
	srv := &fakeServer{clk: clk, answer: unavailable}
	s := DefaultSettings()
	c, err := Open(Options{Home: home, Clock: clk, Settings: &s, Logf: t.Logf, submitter: srv})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := &rig{t: t, c: c, clk: clk, srv: srv, home: home, notes: &notes{}}
	evs, stop := c.Subscribe()
	defer stop()
	go func() {
		for e := range evs {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.outbox.run(ctx) }()
	go func() { defer wg.Done(); c.runSession(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	at := func(d time.Duration) time.Time { return t0.Add(d) }
	// answered waits until the keepalive sent at ping has had its answer:
	// its 10 s timeout timer is stopped. The answer is real I/O; moving the
	// fake clock past ping+10 s before it is read would time the flow out.
	answered := func(ping time.Duration) {
		t.Helper()
		waitFor(t, func() bool { return !clk.HasTimerAt(at(ping + 10*time.Second)) })
	}
	waitFor(t, func() bool { return c.Online() && clk.HasTimerAt(at(60*time.Second)) })
	last := reg.lastReg
	if v := last.GetHeader(api.HeaderFeatures); v == nil || v.Value() != "imdn" {
		t.Errorf("REGISTER does not ask for delivery reports: %v", last)
	}
	if v := last.GetHeader("Accept"); v == nil || !strings.Contains(v.Value(), api.ContentTypeIMDN) {
		t.Errorf("REGISTER Accept: %v", v)
	}
	if v := last.GetHeader("Expires"); v == nil || v.Value() != "600" {
		t.Errorf("REGISTER Expires: %v", v)
	}

	// A message whose first round fails, then waits.
	r.send("bob", "hi")
	r.advance(59*time.Second, 12*time.Second)
	if n := len(srv.attempts()); n != 5 || reg.get(&reg.pings) != 0 {
		t.Fatalf("at 59 s: %d attempts, %d keepalives", n, reg.get(&reg.pings))
	}
	// 60 s: a keepalive goes out, and it is a trigger.
	clk.Advance(time.Second)
	waitFor(t, func() bool { return reg.get(&reg.pings) == 1 && clk.HasTimerAt(at(120*time.Second)) })
	answered(60 * time.Second)
	r.settle()
	if n := len(srv.attempts()); n != 6 {
		t.Fatalf("the keepalive started no new round: %d attempts", n)
	}
	// Re-REGISTER at 450 s, not before.
	for d := 120 * time.Second; d < 450*time.Second; d += 60 * time.Second {
		clk.Set(at(d))
		waitFor(t, func() bool { return clk.HasTimerAt(at(d + 60*time.Second)) })
		answered(d)
	}
	clk.Set(at(449 * time.Second))
	if n := reg.get(&reg.registered); n != 1 {
		t.Fatalf("%d registrations before 450 s", n)
	}
	clk.Set(at(450 * time.Second))
	waitFor(t, func() bool { return reg.get(&reg.registered) == 2 })
	waitFor(t, func() bool { return clk.HasTimerAt(at(450*time.Second + 450*time.Second)) })
	if !c.Online() || reg.get(&reg.conns) != 1 {
		t.Fatal("the refresh used a new connection")
	}
	// The registrar stops answering keepalives: 10 s after the next one
	// the flow counts as dead and the client reconnects.
	reg.mu.Lock()
	reg.answerPings = false
	reg.mu.Unlock()
	clk.Set(at(480 * time.Second))
	waitFor(t, func() bool { return reg.get(&reg.pings) == 8 && clk.HasTimerAt(at(490*time.Second)) })
	clk.Set(at(489 * time.Second))
	if !c.Online() {
		t.Fatal("offline before the keepalive timeout")
	}
	clk.Set(at(490 * time.Second))
	waitFor(t, func() bool { return !c.Online() && len(r.eventsOf(EventOffline)) == 1 })
	if d := r.eventsOf(EventOffline)[0].Detail; !strings.Contains(d, "did not answer a keepalive within 10s") {
		t.Fatalf("offline reason %q", d)
	}
	// Reconnect after the backoff: at most ReconnectMin (1 s) the first time.
	reg.mu.Lock()
	reg.answerPings = true
	reg.mu.Unlock()
	clk.Advance(time.Second)
	waitFor(t, func() bool { return c.Online() && reg.get(&reg.conns) == 2 && reg.get(&reg.registered) == 3 })
}
