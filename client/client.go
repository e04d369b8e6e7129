// Package client is the Sealpost client core: a device's profile and local
// store, the outbox with the manual's retry rule, the SIP registration that
// keeps the device online and receives messages and delivery reports,
// device-side validity, and notifications. Front ends (the sealpost command,
// later a web or desktop UI) drive it through Core and never see its
// database, transport or logger.
//
// Life of an outgoing message: Send checks the text with package message,
// stores it (Sending) with a round of attempts ahead; the outbox submits it
// over HTTPS, recording each attempt before making it; 202 → Enqueued; a
// 4xx refusal → Error at once; after a failed round it waits for a trigger
// (registration, keepalive, another Send); 12 h in the queue → Error and a
// "Send error" notification. A delivery report over SIP then moves it to
// Delivered or Error.
package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/message"
)

// ErrNotFound: no such message in the local store.
var ErrNotFound = errors.New("no such message on this device")

// Options configure a Core.
type Options struct {
	// Home is the profile folder (see DefaultHome).
	Home string
	// Clock drives every time rule; nil means the wall clock.
	Clock clock.Clock
	// Settings overrides the profile's settings.json when not nil.
	Settings *Settings
	// Notifier shows notifications (new message, send error); nil shows
	// none. Events are reported to subscribers either way.
	Notifier Notifier
	// Logf receives diagnostics; never message text, passwords or tokens.
	Logf func(format string, args ...any)

	// submitter replaces the HTTPS API in unit tests.
	submitter submitter
}

// Notifier raises a notification for the user.
type Notifier interface {
	Notify(title, body string) error
}

// Core is one profile opened by one process.
type Core struct {
	home     string
	clock    clock.Clock
	settings atomic.Pointer[Settings] // in force; ApplySettings replaces it
	prof     profile
	caPEM    []byte
	db       *db
	api      *apiClient
	sub      submitter
	notifier Notifier
	logf     func(string, ...any)
	outbox   *outbox
	sweeper  *sweeper

	mu     sync.Mutex
	subs   map[int]chan Event // guarded by mu
	nextID int                // guarded by mu
	online bool               // registered with the SIP server; guarded by mu
}

// Open opens the profile in o.Home. It fails with ErrNoProfile (wrapped)
// when nobody has logged in there. Texts whose validity has passed are
// erased before Open returns.
func Open(o Options) (*Core, error) {
	if o.Home == "" {
		return nil, errors.New("no profile folder given")
	}
	prof, caPEM, err := loadProfile(o.Home)
	if err != nil {
		return nil, err
	}
	if err := makeHome(o.Home); err != nil {
		return nil, err
	}
	settings := DefaultSettings()
	if o.Settings != nil {
		settings = *o.Settings
		if err := settings.Check(); err != nil {
			return nil, err
		}
	} else if settings, err = loadSettings(o.Home); err != nil {
		return nil, err
	}
	d, err := openDB(filepath.Join(o.Home, storeFile))
	if err != nil {
		return nil, err
	}
	c := &Core{
		home: o.Home, clock: o.Clock, prof: prof, caPEM: caPEM,
		db: d, notifier: o.Notifier, logf: o.Logf, subs: map[int]chan Event{},
	}
	c.settings.Store(&settings)
	if c.clock == nil {
		c.clock = clock.Real{}
	}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	host := hostOf(prof.Server)
	conf, err := tlsConfig(caPEM, host)
	if err != nil {
		d.close()
		return nil, err
	}
	c.api = newAPIClient(prof.Server, conf, prof.Token)
	c.sub = c.api
	if o.submitter != nil {
		c.sub = o.submitter
	}
	c.outbox = newOutbox(c)
	c.sweeper = newSweeper(c)
	if err := c.outbox.expireOverdue(context.Background()); err != nil {
		c.logf("outbox: %v", err)
	}
	if err := c.sweeper.sweep(context.Background()); err != nil {
		c.logf("validity sweep: %v", err)
	}
	return c, nil
}

// Close releases the store. Run must have returned.
func (c *Core) Close() error {
	c.api.close()
	return c.db.close()
}

// Account is the profile's account name.
func (c *Core) Account() string { return c.prof.Account }

// Server is the URL of the profile's server.
func (c *Core) Server() string { return c.prof.Server }

// Settings returns the settings in force.
func (c *Core) Settings() Settings { return c.cfg() }

func (c *Core) cfg() Settings { return *c.settings.Load() }

// ApplySettings checks s, writes it to the profile and puts it in force at
// once: the validity sweep runs again under it, and the next attempt, round
// and notification follow it (a SIP session takes its keepalive settings
// when it starts).
func (c *Core) ApplySettings(s Settings) error {
	if err := s.Check(); err != nil {
		return err
	}
	if err := saveSettings(c.home, s); err != nil {
		return err
	}
	c.settings.Store(&s)
	c.sweeper.kick()
	return nil
}

// Home is the profile folder.
func (c *Core) Home() string { return c.home }

// SaveSettings writes s as the profile's settings. A running Core keeps the
// settings it was opened with (ApplySettings changes those too).
func SaveSettings(home string, s Settings) error { return saveSettings(home, s) }

// LoadSettings reads the profile's settings (defaults where unset).
func LoadSettings(home string) (Settings, error) { return loadSettings(home) }

// Send checks text with the shared message rules, stores it in the outbox
// (status Sending) with a new id, and starts its first round; it is also the
// trigger "the user sends another message" for every message waiting after
// a failed round. It returns once the message is stored; the outbox submits
// it while Run (or Flush) is running.
func (c *Core) Send(ctx context.Context, to, text string) (Message, error) {
	if !c.LoggedIn() {
		return Message{}, ErrLoggedOut
	}
	to = NormalizeAccount(to)
	if err := message.CheckAccount(to); err != nil {
		return Message{}, fmt.Errorf("recipient: %w", err)
	}
	if err := message.CheckText(text); err != nil {
		return Message{}, err
	}
	r, err := c.db.addOutgoing(ctx, message.NewID(), to, text, c.clock.Now(), c.cfg().RoundAttempts)
	if err != nil {
		return Message{}, err
	}
	m := c.toMessage(r)
	c.emit(Event{Kind: EventStatus, ID: m.ID, Peer: to, Status: message.Sending})
	c.Trigger(ctx, TriggerSend)
	return m, nil
}

// Run keeps the device online until ctx ends: it drains the outbox,
// registers over SIP/TLS (reconnecting with backoff), receives messages and
// delivery reports, erases texts whose validity passed, and answers
// `sealpost send` from other processes on the profile's socket.
func (c *Core) Run(ctx context.Context) error {
	if !c.LoggedIn() {
		return ErrLoggedOut
	}
	ln, err := c.listenHandOff()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); c.outbox.run(ctx) }()
	go func() { defer wg.Done(); c.sweeper.run(ctx) }()
	go func() { defer wg.Done(); c.runSession(ctx) }()
	go func() { defer wg.Done(); c.serveHandOff(ctx, ln) }()
	<-ctx.Done()
	ln.Close()
	wg.Wait()
	os.Remove(filepath.Join(c.home, socketFile))
	return nil
}

// Flush runs the outbox without going online, for a process that sends
// while no Run is up: it returns when no message is in the middle of a
// round (each is Enqueued, Error, or waiting for a trigger) or ctx ends.
func (c *Core) Flush(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.outbox.run(ctx) }()
	err := c.outbox.waitRoundsOver(ctx)
	cancel()
	<-done
	return err
}

// Trigger kinds: the manual's three events that start a new round for
// messages waiting after a failed one.
const (
	TriggerRegister  = "register"
	TriggerKeepalive = "keepalive"
	TriggerSend      = "send"
)

// Trigger starts a new round for every message waiting after a failed
// round. The core fires it itself on registration, keepalive and Send.
func (c *Core) Trigger(ctx context.Context, why string) {
	n, err := c.db.newRound(ctx, c.cfg().RoundAttempts, c.clock.Now())
	if err != nil {
		c.logf("trigger %s: %v", why, err)
		return
	}
	if n > 0 {
		c.logf("trigger %s: new round for %d queued message(s)", why, n)
	}
	c.outbox.kick()
}

// hostOf returns the host of a URL or of a HOST:PORT address: the name the
// server's certificate must be valid for.
func hostOf(s string) string {
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		return u.Hostname()
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	return s
}

// withClockTimeout is context.WithTimeout on the core's clock, so an
// attempt's 12 s can pass on a fake clock in tests.
func withClockTimeout(ctx context.Context, clk clock.Clock, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := clk.AfterFunc(d, func() { cancel(fmt.Errorf("no answer within %s: %w", d, context.DeadlineExceeded)) })
	return ctx, func() { t.Stop(); cancel(context.Canceled) }
}
