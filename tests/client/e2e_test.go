package client_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/client"
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

func (p *profile) open(settings *client.Settings) {
	p.t.Helper()
	c, err := client.Open(client.Options{Home: p.home, Settings: settings, Notifier: p,
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

func fastSettings() *client.Settings {
	s := client.DefaultSettings()
	return &s
}

func TestOnlineDelivery(t *testing.T) {
	srv := servertest.Start(t)
	alice := login(t, srv, "alice")
	bob := login(t, srv, "bob")
	alice.open(fastSettings())
	bob.open(fastSettings())
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
