package interop

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

type serverInfo = servertest.Server

// wait is how long any one step may take: each is a few SIP round trips on
// loopback, so this bounds a hung step, not a slow one.
const wait = 15 * time.Second

// Accounts: two Sealpost users (one on the client core, one on the bare
// HTTPS API) and one account per standard client.
const (
	alice = "alice" // sealpost client core
	dave  = "dave"  // HTTPS API
	bob   = "bob"   // baresip
	carol = "carol" // linphonec
)

// env is one run: the server, the clients, and what each check needs.
type env struct {
	t       *testing.T
	srv     *servertest.Server
	dir     string
	missing map[string]string // client → why its checks are skipped
	n       int

	alice *sealpostUser
	dave  *apiUser
	bob   *baresip
	carol *linphonec
	// Set by the registration checks; later checks of that client need it.
	bobUp, carolUp bool
}

// check runs one check as a subtest and counts it for the clients named.
// A check for a client whose binary is missing is skipped.
func (e *env) check(name string, who []string, f func(t *testing.T)) {
	e.t.Run(name, func(t *testing.T) {
		defer record(t, who...)
		for _, c := range who {
			if why := e.missing[c]; why != "" {
				t.Skip(why)
			}
		}
		defer func() {
			if t.Failed() {
				if e.bob != nil && contains(who, "baresip") {
					e.bob.dump(t)
				}
				if e.carol != nil && contains(who, "linphonec") {
					e.carol.dump(t)
				}
			}
		}()
		f(t)
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// text returns a message text no other check uses, with non-ASCII and an
// emoji of two code points (one character) to prove UTF-8 passes intact.
func (e *env) text(what string) string {
	e.n++
	return fmt.Sprintf("%s #%d: grüße 👍🏽", what, e.n)
}

func (e *env) aor(account string) string { return "sip:" + account + "@" + e.srv.Domain }

func (e *env) needBob(t *testing.T) {
	t.Helper()
	if !e.bobUp {
		t.Fatal("baresip is not registered (see its registration check)")
	}
}

func (e *env) needCarol(t *testing.T) {
	t.Helper()
	if !e.carolUp {
		t.Fatal("linphonec is not registered (see its registration check)")
	}
}

// lookClients finds the client binaries; a missing one is reported, not
// installed.
func lookClients() map[string]string {
	missing := map[string]string{}
	if _, err := exec.LookPath("baresip"); err != nil {
		missing["baresip"] = "baresip not found on PATH: install the Debian package baresip (.ci/install-sip-clients.sh does)"
	} else if _, err := findBaresipModules(); err != nil {
		missing["baresip"] = "baresip is installed but its modules are not: " + err.Error()
	}
	if _, err := exec.LookPath("linphonec"); err != nil {
		missing["linphonec"] = "linphonec not found on PATH: install the Debian package linphone-cli (.ci/install-sip-clients.sh does)"
	}
	return missing
}

func password() string {
	return "pw" + strings.ToLower(rand.Text())
}

// logDir is where the clients' configurations and logs go: kept in
// $SEALPOST_INTEROP_LOGS when set, else removed with the test.
func logDir(t *testing.T) string {
	if d := os.Getenv("SEALPOST_INTEROP_LOGS"); d != "" {
		d = filepath.Join(d, time.Now().Format("20060102-150405"))
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("SEALPOST_INTEROP_LOGS: %v", err)
		}
		return d
	}
	return t.TempDir()
}

// TestStandardClients runs baresip and linphonec against one sealpostd and
// checks each point of "works with standard SIP clients". The checks share
// the running clients, so they run in order.
func TestStandardClients(t *testing.T) {
	e := &env{t: t, missing: lookClients()}
	for _, c := range clients {
		if why := e.missing[c]; why != "" {
			t.Logf("skipping %s checks: %s", c, why)
		}
	}
	if len(e.missing) < len(clients) {
		// A short Flow-Timer, so the test sees baresip's RFC 5626
		// keepalives answered within one run.
		e.srv = servertest.Start(t, servertest.WithOptions(func(o *server.Options) { o.FlowTimer = 20 * time.Second }))
		e.dir = logDir(t)
		pw := map[string]string{}
		for _, a := range []string{alice, dave, bob, carol} {
			pw[a] = password()
			e.srv.AddUser(t, a, pw[a])
		}
		e.alice = startSealpostUser(t, e.srv, e.dir, alice, pw[alice])
		e.dave = newAPIUser(t, e.srv, dave, pw[dave])
		e.carol = newLinphonec(t, e.dir, e.srv, carol, pw[carol])
		e.runChecks(pw)
		return
	}
	e.runChecks(nil)
}

func (e *env) runChecks(pw map[string]string) {
	B, L, both := []string{"baresip"}, []string{"linphonec"}, []string{"baresip", "linphonec"}

	e.check("baresip registers over TLS with digest authentication", B, func(t *testing.T) {
		e.bob = startBaresip(t, e.t, e.dir, e.srv, bob, pw[bob], []string{alice, carol})
		e.bob.waitRegistered(t, wait)
		tr := e.bob.trace()
		regs := registerRequests(tr)
		if len(regs) == 0 || !strings.HasPrefix(regs[len(regs)-1].header("Authorization"), "Digest ") {
			t.Fatalf("the REGISTER that succeeded carried no digest credentials; REGISTERs: %v", regs)
		}
		if !strings.Contains(e.bob.output(), "-> "+e.srv.SIPAddr) || !strings.Contains(regs[0].header("Via"), "SIP/2.0/TLS") {
			t.Fatalf("baresip did not register over TLS to %s (Via %q)", e.srv.SIPAddr, regs[0].header("Via"))
		}
		info, err := e.bob.reginfo()
		if err != nil || !strings.Contains(info, "sip:"+bob+"@"+e.srv.Domain) || !strings.Contains(info, " OK ") {
			t.Fatalf("baresip reginfo does not show %s registered: %q (%v)", bob, info, err)
		}
		e.bobUp = true
	})

	e.check("linphonec registers over TLS, verifying the server certificate", L, func(t *testing.T) {
		e.carol.start(t)
		e.carol.waitRegistered(t, wait)
		log := e.carol.log()
		if !strings.Contains(log, "Found certificate depth=[0], flags=[]") || !strings.Contains(log, "SSL handshake finished") {
			t.Fatal("linphonec log does not show a verified TLS handshake (certificate flags [] and handshake finished)")
		}
		regs := registerRequests(e.carol.trace())
		if len(regs) == 0 || !strings.Contains(regs[len(regs)-1].header("Authorization"), "Digest ") {
			t.Fatalf("the REGISTER that succeeded carried no digest credentials; REGISTERs: %v", regs)
		}
		e.carolUp = true
	})

	// linphonec sends a CRLF keepalive every second (keepalive_period); the
	// registration and its one connection must survive them.
	e.check("linphonec keepalives are answered and it stays registered", L, func(t *testing.T) {
		e.needCarol(t)
		waitFor(t, wait, "linphonec to send 3 keepalives", func() error {
			if n := e.carol.keepalivesSent(); n < 3 {
				return fmt.Errorf("%d sent", n)
			}
			return nil
		})
		e.carol.waitStatus(t, wait, "registered, identity=sip:"+carol+"@"+e.srv.Domain)
		log := e.carol.log()
		if n := strings.Count(log, "Connected at TCP level"); n != 1 {
			t.Fatalf("linphonec opened %d connections to the server, want 1 (a lost connection means a keepalive was not answered well)", n)
		}
		if n := len(linphoneRegOK.FindAllString(log, -1)); n != 1 {
			t.Fatalf("linphonec registered %d times, want once", n)
		}
	})

	e.check("baresip shows a message from a Sealpost user; the sender sees Delivered", B, func(t *testing.T) {
		e.needBob(t)
		text := e.text("alice to bob")
		id := e.alice.send(t, bob, text)
		e.bob.waitShown(t, wait, e.aor(alice), text)
		e.checkDelivery(t, e.bob.trace(), bob, alice, text, id)
		e.alice.waitStatus(t, wait, id, message.Delivered)
	})

	e.check("baresip shows a message sent through the HTTPS API; the sender sees delivered", B, func(t *testing.T) {
		e.needBob(t)
		text := e.text("dave to bob")
		id := e.dave.submit(t, bob, text)
		e.bob.waitShown(t, wait, e.aor(dave), text)
		e.checkDelivery(t, e.bob.trace(), bob, dave, text, id)
		e.dave.waitStatus(t, wait, id, message.Delivered)
	})

	e.check("linphonec shows a message from a Sealpost user; the sender sees Delivered", L, func(t *testing.T) {
		e.needCarol(t)
		text := e.text("alice to carol")
		id := e.alice.send(t, carol, text)
		e.carol.waitShown(t, wait, e.aor(alice), text)
		e.checkDelivery(t, e.carol.trace(), carol, alice, text, id)
		e.alice.waitStatus(t, wait, id, message.Delivered)
	})

	e.check("linphonec shows a message sent through the HTTPS API; the sender sees delivered", L, func(t *testing.T) {
		e.needCarol(t)
		text := e.text("dave to carol")
		id := e.dave.submit(t, carol, text)
		e.carol.waitShown(t, wait, e.aor(dave), text)
		e.checkDelivery(t, e.carol.trace(), carol, dave, text, id)
		e.dave.waitStatus(t, wait, id, message.Delivered)
	})

	e.check("baresip sends to a Sealpost account: 202 Accepted, then in the Sealpost history", B, func(t *testing.T) {
		e.needBob(t)
		text := e.text("bob to alice")
		if err := e.bob.message(alice, e.srv.Domain, text); err != nil {
			t.Fatal(err)
		}
		e.waitAccepted(t, "baresip", e.bob.trace, text)
		e.alice.waitInHistory(t, wait, bob, text)
	})

	e.check("linphonec sends to a Sealpost account: 202 Accepted, then in the Sealpost history", L, func(t *testing.T) {
		e.needCarol(t)
		text := e.text("carol to alice")
		if err := e.carol.chat(alice, text); err != nil {
			t.Fatal(err)
		}
		e.waitAccepted(t, "linphonec", e.carol.trace, text)
		e.alice.waitInHistory(t, wait, carol, text)
	})

	e.check("baresip to linphonec through the server", both, func(t *testing.T) {
		e.needBob(t)
		e.needCarol(t)
		text := e.text("bob to carol")
		if err := e.bob.message(carol, e.srv.Domain, text); err != nil {
			t.Fatal(err)
		}
		e.waitAccepted(t, "baresip", e.bob.trace, text)
		e.carol.waitShown(t, wait, e.aor(bob), text)
	})

	// Comes after bob's own messages were delivered: a delivery report for
	// them, wrongly forwarded, would reach baresip with this delivery.
	e.check("linphonec to baresip through the server", both, func(t *testing.T) {
		e.needBob(t)
		e.needCarol(t)
		text := e.text("carol to bob")
		if err := e.carol.chat(bob, text); err != nil {
			t.Fatal(err)
		}
		e.waitAccepted(t, "linphonec", e.carol.trace, text)
		e.bob.waitShown(t, wait, e.aor(carol), text)
	})

	e.check("linphonec gets the messages stored while it was offline when it registers, in order", L, func(t *testing.T) {
		e.needCarol(t)
		e.carolOffline(t)
	})

	e.check("baresip stays registered on its connection", B, func(t *testing.T) {
		e.needBob(t)
		e.baresipStays(t)
	})

	e.check("baresip never receives a delivery report", B, func(t *testing.T) {
		e.needBob(t)
		noReports(t, "baresip", bob, e.bob.trace())
	})

	e.check("linphonec never receives a delivery report", L, func(t *testing.T) {
		e.needCarol(t)
		// Every run of linphonec: the offline one was the second.
		for run := 1; run <= e.carol.run; run++ {
			log := readFile(filepath.Join(e.carol.home, fmt.Sprintf("linphone-%d.log", run)))
			noReports(t, fmt.Sprintf("linphonec (run %d)", run), carol, parseTrace(log))
		}
	})
}

// checkDelivery checks the MESSAGE the server delivered to a standard
// client: From the sender's AOR, UTF-8 text/plain, the message id and
// submission time headers, answered 200 by the client.
func (e *env) checkDelivery(t *testing.T, trace []sipMsg, account, from, text, id string) {
	t.Helper()
	var got *sipMsg
	for _, m := range receivedMessages(trace, account) {
		if m.header(api.HeaderMessageID) == id {
			got = &m
		}
	}
	if got == nil {
		t.Fatalf("no MESSAGE with %s: %s in the client's trace", api.HeaderMessageID, id)
	}
	if u := uriUser(got.header("From")); u != from {
		t.Errorf("delivered MESSAGE has From %q, want the sender's AOR %s", got.header("From"), e.aor(from))
	}
	if ct := strings.ReplaceAll(strings.ToLower(got.header("Content-Type")), " ", ""); ct != "text/plain;charset=utf-8" {
		t.Errorf("delivered MESSAGE has Content-Type %q, want text/plain;charset=utf-8", got.header("Content-Type"))
	}
	if _, err := time.Parse(time.RFC3339Nano, got.header(api.HeaderSubmittedAt)); err != nil {
		t.Errorf("delivered MESSAGE has %s %q: %v", api.HeaderSubmittedAt, got.header(api.HeaderSubmittedAt), err)
	}
	if got.Body != text {
		t.Errorf("delivered MESSAGE body %q, want %q", got.Body, text)
	}
}

// waitAccepted waits for the final response to the client's MESSAGE with
// text and requires 202 Accepted (RFC 3428: stored, not yet delivered).
func (e *env) waitAccepted(t *testing.T, name string, trace func() []sipMsg, text string) {
	t.Helper()
	var res sipMsg
	waitFor(t, wait, name+"'s MESSAGE to get its final response", func() error {
		tr := trace()
		_, r, ok := finalResponse(tr, text)
		if !ok {
			return fmt.Errorf("none yet; SIP so far:\n%s", traceTail(tr, 8))
		}
		res = r
		return nil
	})
	if res.Status != 202 {
		t.Fatalf("%s's MESSAGE was answered %d %s, want 202 Accepted", name, res.Status, res.Reason)
	}
}

// noReports fails if any MESSAGE the server sent the client is a delivery
// report, or anything but text.
func noReports(t *testing.T, name, account string, trace []sipMsg) {
	t.Helper()
	got := receivedMessages(trace, account)
	if len(got) == 0 {
		t.Fatalf("%s received no MESSAGE at all: the trace cannot show what it got", name)
	}
	if r := reportsIn(got); len(r) > 0 {
		t.Fatalf("%s received %d delivery report(s) it never asked for:\n%s", name, len(r), traceTail(r, 5))
	}
	for _, m := range got {
		if !strings.HasPrefix(strings.ToLower(m.header("Content-Type")), "text/plain") {
			t.Errorf("%s received a MESSAGE that is not text: %v", name, m)
		}
	}
}

// carolOffline: linphonec un-registers and quits; messages to it wait on
// the server; when linphonec starts again and registers, they come, after
// the registration, in submission order (the server puts several on the
// connection before the first is answered).
func (e *env) carolOffline(t *testing.T) {
	l := e.carol
	if err := l.send("unregister"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "linphonec's un-REGISTER to be answered 200", func() error {
		tr := l.trace()
		regs := registerRequests(tr)
		if len(regs) == 0 || expiresOf(regs[len(regs)-1]) != 0 {
			return fmt.Errorf("no REGISTER with expires 0 yet")
		}
		last := regs[len(regs)-1]
		for _, r := range registerResponses(tr) {
			if n, _ := r.cseq(); r.Line > last.Line && n >= mustCSeq(last) && r.Status == 200 {
				return nil
			}
		}
		return fmt.Errorf("un-REGISTER not answered 200 yet:\n%s", traceTail(tr, 4))
	})
	l.waitStatus(t, wait, "registered=0")

	const stored = 12
	var texts, ids []string
	for range stored {
		text := e.text("dave to carol while offline")
		texts, ids = append(texts, text), append(ids, e.dave.submit(t, carol, text))
	}
	// A negative can only be watched over a window: one second in which the
	// server, having honoured the un-REGISTER, must not deliver over the
	// connection linphonec still holds open.
	if err := poll(time.Second, func() error {
		if strings.Contains(l.output(), texts[0]) {
			return nil
		}
		return fmt.Errorf("not shown")
	}); err == nil {
		t.Fatal("the server delivered to linphonec after it un-registered")
	}
	l.stop(t, 10*time.Second)
	for _, id := range ids {
		if st, err := e.dave.status(id); err != nil || st.Status != string(message.Enqueued) {
			t.Fatalf("message to offline linphonec: status %q (%v), want enqueued", st.Status, err)
		}
	}

	l.start(t)
	l.waitRegistered(t, wait)
	for _, text := range texts {
		l.waitShown(t, wait, e.aor(dave), text)
	}
	tr := l.trace()
	ok := registerResponses(tr)
	var delivered []sipMsg
	for _, m := range receivedMessages(tr, carol) {
		if slices.ContainsFunc(texts, func(text string) bool { return strings.Contains(m.Body, text) }) {
			delivered = append(delivered, m)
		}
	}
	if len(delivered) < stored || len(ok) == 0 || ok[0].Line > delivered[0].Line {
		t.Fatalf("the stored messages did not all come after the registration; trace:\n%s", traceTail(tr, 10))
	}
	for i, text := range texts {
		if !strings.Contains(delivered[i].Body, text) {
			t.Fatalf("linphonec received the stored messages out of order: #%d is %q, want %q", i, delivered[i].Body, text)
		}
	}
	out := l.output()
	for i := 1; i < stored; i++ {
		if strings.Index(out, texts[i-1]) > strings.Index(out, texts[i]) {
			t.Fatalf("linphonec showed %q before %q", texts[i], texts[i-1])
		}
	}
	for i, text := range texts {
		e.checkDelivery(t, tr, carol, dave, text, ids[i])
		e.dave.waitStatus(t, wait, ids[i], message.Delivered)
	}
}

func mustCSeq(m sipMsg) int { n, _ := m.cseq(); return n }

// baresipStays checks that baresip is still registered, on the one
// connection it opened, with no failed or repeated registration. baresip
// sends RFC 5626 CRLF keepalives only when the registrar answers Require:
// outbound, then every 80–100% of max(Flow-Timer, 20 s) and counts a pong
// missing after 10 s as a failed registration. When the server asks for
// them, this waits for one keepalive to be answered.
func (e *env) baresipStays(t *testing.T) {
	b := e.bob
	tr := b.trace()
	oks := registerResponses(tr)
	var first sipMsg
	for _, r := range oks {
		if r.Status == 200 {
			first = r
			break
		}
	}
	if first.Status != 200 {
		t.Fatal("no REGISTER answered 200 in baresip's trace")
	}
	if strings.Contains(strings.ToLower(first.header("Require")), "outbound") {
		interval := 120
		if n, err := strconv.Atoi(first.header("Flow-Timer")); err == nil {
			interval = n
		}
		interval = max(interval, 20)
		if interval > 40 {
			t.Logf("server asks for keepalives every %d s: too long to wait for here; checking registration only", interval)
		} else {
			// The registration's line in the output is the time origin: the
			// output has no timestamps, so the wait starts from the check
			// that saw it, which was earlier still.
			t.Logf("server answered Require: outbound, Flow-Timer %d: waiting for one keepalive and its pong", interval)
			deadline := time.Duration(interval+11) * time.Second
			if err := poll(deadline, func() error {
				if strings.Contains(b.output(), "Register: ") {
					return nil
				}
				return fmt.Errorf("no failure")
			}); err == nil {
				t.Fatalf("baresip reported a failed registration (a keepalive not answered):\n%s", tail(b.output(), 10))
			}
		}
	} else {
		t.Logf("the server's 200 to REGISTER has no Require: outbound, so baresip sends no keepalives (RFC 5626 §4.4.1); checking that it stays registered on its connection")
	}
	out := b.output()
	if i := strings.Index(out, "Register: "); i >= 0 {
		t.Fatalf("baresip reported a registration failure: %s", firstLine(out[i:]))
	}
	conns := map[string]bool{}
	for _, m := range regexp.MustCompile(`TLS (\S+) -> `+regexp.QuoteMeta(e.srv.SIPAddr)).FindAllStringSubmatch(out, -1) {
		conns[m[1]] = true
	}
	if len(conns) != 1 {
		t.Fatalf("baresip used %d connections to the server, want 1: %v", len(conns), conns)
	}
	regs := registerRequests(b.trace())
	if len(regs) > 2 {
		t.Fatalf("baresip sent %d REGISTERs, want 2 (challenge and answer): it had to register again", len(regs))
	}
	info, err := b.reginfo()
	if err != nil || !strings.Contains(info, " OK ") {
		t.Fatalf("baresip reginfo does not show it registered: %q (%v)", info, err)
	}
}
