package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

// profile is one logged-in account with its core.
type profile struct {
	t    *testing.T
	name string
	home string
	core *client.Core

	mu     sync.Mutex
	events []client.Event // guarded by mu
	notes  []string       // notifications raised; guarded by mu

	cancel context.CancelFunc
	done   chan struct{}
}

func (p *profile) Notify(title, body string) error {
	p.mu.Lock()
	p.notes = append(p.notes, title)
	p.mu.Unlock()
	return nil
}

func login(t *testing.T, srv *servertest.Server, name string) *profile {
	t.Helper()
	password := "pw-" + name + "-secret"
	srv.AddUser(t, name, password)
	home := filepath.Join(t.TempDir(), name)
	err := client.Login(context.Background(), client.LoginOptions{
		Home: home, Server: srv.HTTPSURL, Account: name, Password: password,
		CAFile: srv.CAFile, SIPAddr: srv.SIPAddr, Domain: srv.Domain,
	})
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return &profile{t: t, name: name, home: home}
}

func (p *profile) open(settings *client.Settings, clk clock.Clock) {
	p.t.Helper()
	c, err := client.Open(client.Options{Home: p.home, Settings: settings, Notifier: p, Clock: clk,
		Logf: func(f string, a ...any) { p.t.Logf(p.name+": "+f, a...) }})
	if err != nil {
		p.t.Fatalf("open %s: %v", p.name, err)
	}
	p.core = c
	ch, stop := c.Subscribe()
	go func() {
		for e := range ch {
			p.mu.Lock()
			p.events = append(p.events, e)
			p.mu.Unlock()
		}
	}()
	p.t.Cleanup(func() { p.stop(); stop(); c.Close() })
}

func (p *profile) run() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.done = make(chan struct{})
	go func() { defer close(p.done); p.core.Run(ctx) }()
}

func (p *profile) stop() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
		p.cancel = nil
	}
}

func (p *profile) statuses(id string) []message.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []message.Status
	for _, e := range p.events {
		if e.Kind == client.EventStatus && e.ID == id {
			out = append(out, e.Status)
		}
	}
	return out
}

// fastSettings are the defaults with a quick reconnect, so that a device
// on the wall clock comes back within a fraction of a second after the
// server restarts.
func fastSettings() *client.Settings {
	s := client.DefaultSettings()
	s.ReconnectMin = client.Duration(50 * time.Millisecond)
	s.ReconnectMax = client.Duration(200 * time.Millisecond)
	return &s
}

func TestOnlineDelivery(t *testing.T) {
	srv := servertest.Start(t)
	alice := login(t, srv, "alice")
	bob := login(t, srv, "bob")
	alice.open(fastSettings(), nil)
	bob.open(fastSettings(), nil)
	bob.run()
	alice.run()
	servertest.CheckFor(t, 10*time.Second, func() error {
		if !bob.core.Online() || !alice.core.Online() {
			return fmt.Errorf("not both online")
		}
		return nil
	})
	m, err := alice.core.Send(context.Background(), "bob", "hello bob 👍🏽")
	if err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		got := alice.statuses(m.ID)
		want := []message.Status{message.Sending, message.Enqueued, message.Delivered}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("statuses %v, want %v", got, want)
		}
		return nil
	})
	h, err := bob.core.History(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 1 || h[0].Text != "hello bob 👍🏽" || h[0].Outgoing {
		t.Fatalf("bob's history: %+v", h)
	}
}

func (p *profile) eventsOf(kind client.EventKind) []client.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []client.Event
	for _, e := range p.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (p *profile) history(peer string) []client.Message {
	p.t.Helper()
	h, err := p.core.History(context.Background(), peer)
	if err != nil {
		p.t.Fatal(err)
	}
	return h
}

func texts(h []client.Message, outgoing bool) []string {
	var out []string
	for _, m := range h {
		if m.Outgoing == outgoing {
			out = append(out, m.Text)
		}
	}
	return out
}

func online(t *testing.T, ps ...*profile) {
	t.Helper()
	servertest.CheckFor(t, 10*time.Second, func() error {
		for _, p := range ps {
			if !p.core.Online() {
				return fmt.Errorf("%s is not online", p.name)
			}
		}
		return nil
	})
}

func TestOfflineRecipientGetsMessagesInOrder(t *testing.T) {
	srv := servertest.Start(t)
	alice := login(t, srv, "alice")
	bob := login(t, srv, "bob")
	alice.open(fastSettings(), nil)
	bob.open(fastSettings(), nil)
	alice.run()
	online(t, alice)
	var ids []string
	sent := []string{"one", "two", "three", "four"}
	for _, text := range sent {
		m, err := alice.core.Send(context.Background(), "bob", text)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		for _, id := range ids {
			if m, _ := alice.core.Message(context.Background(), id); m.Status != message.Enqueued {
				return fmt.Errorf("%s is %s, want enqueued while bob is offline", id, m.Status)
			}
		}
		return nil
	})
	bob.run()
	servertest.CheckFor(t, 10*time.Second, func() error {
		for _, id := range ids {
			if m, _ := alice.core.Message(context.Background(), id); m.Status != message.Delivered {
				return fmt.Errorf("%s is %s, want delivered once bob is online", id, m.Status)
			}
		}
		return nil
	})
	if got := texts(bob.history("alice"), false); fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Fatalf("bob got %q, want %q in order", got, sent)
	}
	if n := len(bob.eventsOf(client.EventReceived)); n != len(sent) {
		t.Fatalf("bob was notified of %d new messages, want %d", n, len(sent))
	}
	// bob answers; the conversation reads in time order on both sides.
	if _, err := bob.core.Send(context.Background(), "alice", "got them"); err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		h := alice.history("bob")
		if len(h) != 5 || h[4].Outgoing || h[4].Text != "got them" {
			return fmt.Errorf("alice's history %v", texts(h, false))
		}
		return nil
	})
}

func TestServerDownThenBack(t *testing.T) {
	srv := servertest.Start(t)
	alice := login(t, srv, "alice")
	bob := login(t, srv, "bob")
	// alice's time rules run on a fake clock: the test moves it.
	clk := clock.NewFake(time.Now())
	s := fastSettings()
	s.ReconnectMin = client.Duration(time.Second)
	s.ReconnectMax = client.Duration(2 * time.Second)
	alice.open(s, clk)
	bob.open(fastSettings(), nil)
	alice.run()
	bob.run()
	online(t, alice, bob)

	srv.Stop(t)
	servertest.CheckFor(t, 10*time.Second, func() error {
		if alice.core.Online() {
			return fmt.Errorf("alice has not noticed the server went down")
		}
		return nil
	})
	start := clk.Now()
	m, err := alice.core.Send(context.Background(), "bob", "sent while the server was down")
	if err != nil {
		t.Fatal(err)
	}
	failed := func(n int) func() error {
		return func() error {
			for _, e := range alice.eventsOf(client.EventAttemptFailed) {
				if e.ID == m.ID && e.Count == n {
					return nil
				}
			}
			return fmt.Errorf("attempt %d has not failed yet", n)
		}
	}
	servertest.CheckFor(t, 10*time.Second, failed(1))
	for n := 2; n <= 5; n++ {
		// Advance only once the next attempt is scheduled, or the
		// advance could come before the timer it is meant to fire.
		next := start.Add(time.Duration(n-1) * 12 * time.Second)
		servertest.CheckFor(t, 10*time.Second, func() error {
			if !clk.HasTimerAt(next) {
				return fmt.Errorf("attempt %d not scheduled at %v", n, next)
			}
			return nil
		})
		clk.Advance(12 * time.Second)
		servertest.CheckFor(t, 10*time.Second, failed(n))
	}
	clk.Advance(10 * time.Minute) // no trigger: nothing more happens
	if cur, _ := alice.core.Message(context.Background(), m.ID); cur.Status != message.Sending || cur.Attempts != 5 {
		t.Fatalf("after a failed round: %s after %d attempts", cur.Status, cur.Attempts)
	}
	if got := alice.statuses(m.ID); fmt.Sprint(got) != fmt.Sprint([]message.Status{message.Sending}) {
		t.Fatalf("statuses %v while the server is down", got)
	}

	srv.Restart(t)
	// The reconnect timer is due within ReconnectMax; the registration
	// that follows is the trigger.
	servertest.CheckFor(t, 20*time.Second, func() error {
		clk.Advance(2 * time.Second)
		got := alice.statuses(m.ID)
		want := []message.Status{message.Sending, message.Enqueued, message.Delivered}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("statuses %v, want %v", got, want)
		}
		return nil
	})
	servertest.CheckFor(t, 10*time.Second, func() error {
		if got := texts(bob.history("alice"), false); len(got) != 1 || got[0] != "sent while the server was down" {
			return fmt.Errorf("bob has %q", got)
		}
		return nil
	})
	// More triggers and reconnects do not make a second copy.
	alice.core.Trigger(context.Background(), client.TriggerKeepalive)
	bob.stop()
	bob.run()
	online(t, bob)
	clk.Advance(2 * time.Minute)
	if got := texts(bob.history("alice"), false); len(got) != 1 {
		t.Fatalf("bob has %d copies: %q", len(got), got)
	}
	if got := bob.eventsOf(client.EventReceived); len(got) != 1 {
		t.Fatalf("bob was notified %d times", len(got))
	}
}

func TestWrongCAIsRefused(t *testing.T) {
	srv := servertest.Start(t)
	srv.AddUser(t, "alice", "pw-alice-secret")
	other := writeOtherCA(t)
	home := filepath.Join(t.TempDir(), "alice")
	err := client.Login(context.Background(), client.LoginOptions{
		Home: home, Server: srv.HTTPSURL, Account: "alice", Password: "pw-alice-secret",
		CAFile: other, SIPAddr: srv.SIPAddr, Domain: srv.Domain,
	})
	if err == nil || !strings.Contains(err.Error(), "is not trusted") {
		t.Fatalf("login with the wrong CA: %v", err)
	}
	if _, err := os.Stat(filepath.Join(home, "profile.json")); err == nil {
		t.Fatal("a profile was written despite the refusal")
	}
	// Without --ca the system roots do not know a self-signed server either.
	err = client.Login(context.Background(), client.LoginOptions{
		Home: home, Server: srv.HTTPSURL, Account: "alice", Password: "pw-alice-secret",
		SIPAddr: srv.SIPAddr, Domain: srv.Domain,
	})
	if err == nil || !strings.Contains(err.Error(), "is not trusted") {
		t.Fatalf("login without a CA against a self-signed server: %v", err)
	}
	// A wrong password says so.
	err = client.Login(context.Background(), client.LoginOptions{
		Home: home, Server: srv.HTTPSURL, Account: "alice", Password: "wrong",
		CAFile: srv.CAFile, SIPAddr: srv.SIPAddr, Domain: srv.Domain,
	})
	if err == nil || !strings.Contains(err.Error(), "password") {
		t.Fatalf("login with a wrong password: %v", err)
	}
}

// The SIP side verifies the same way: a profile whose CA does not match
// the SIP server's certificate never registers, and says why.
func TestWrongCAOnSIPIsRefused(t *testing.T) {
	srv := servertest.Start(t)
	alice := login(t, srv, "alice")
	if err := os.WriteFile(filepath.Join(alice.home, "ca.pem"), mustRead(t, writeOtherCA(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	alice.open(fastSettings(), nil)
	alice.run()
	servertest.CheckFor(t, 10*time.Second, func() error {
		for _, e := range alice.eventsOf(client.EventOffline) {
			if strings.Contains(e.Detail, "is not trusted") {
				return nil
			}
		}
		return fmt.Errorf("no offline event naming the untrusted certificate: %v", alice.eventsOf(client.EventOffline))
	})
	if alice.core.Online() {
		t.Fatal("registered over a connection whose certificate was not trusted")
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeOtherCA writes a self-signed certificate for localhost and 127.0.0.1
// that did not sign the test server's certificate.
func writeOtherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "not the server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}
