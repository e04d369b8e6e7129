// Package web is `sealpost web`: the manual's screens (contacts, a
// conversation with a status icon on each outgoing message, a compose box
// with a live n/160 counter, notifications that open the conversation) in
// a browser, on top of the client core. Every rule stays in the core and in
// package message: this package only shows what the core knows and hands
// it what the user does.
//
// Pages are rendered by html/template (so message text is always escaped);
// a small script of our own (embedded, no CDN, no build step) keeps them
// live over Server-Sent Events. Bubbles that change are rendered by the
// same templates on the server and sent in the event. See guard.go for how
// a UI on 127.0.0.1 is protected.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/sealpost/sealpost/client"
)

//go:embed assets templates
var files embed.FS

// Options configure a UI.
type Options struct {
	// Listen is the address to serve on; loopback only. Empty: 127.0.0.1
	// on a free port.
	Listen string
	// Listener, when not nil, is used instead of listening on Listen (a
	// socket handed over by a service manager, or a test's). It must be on
	// a loopback address.
	Listener net.Listener
	// Logf receives diagnostics; never message text or the token.
	Logf func(format string, args ...any)
}

// UI is the web front end of one open client core.
type UI struct {
	core  *client.Core
	logf  func(string, ...any)
	ln    net.Listener
	token string
	tmpl  *template.Template
	srv   *http.Server
}

// New listens on o.Listen (loopback only) and prepares the UI for core.
// The core is run by the caller (Core.Run), exactly as `sealpost run` does.
func New(core *client.Core, o Options) (*UI, error) {
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	ln := o.Listener
	if ln == nil {
		addr, err := loopbackListen(o.Listen)
		if err != nil {
			return nil, err
		}
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("web UI: %w", err)
		}
	} else if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		return nil, fmt.Errorf("web UI: listener on %s: the web UI listens on loopback only", ln.Addr())
	}
	u := &UI{core: core, logf: o.Logf, ln: ln, token: newSecret(), tmpl: tmpl}
	if u.logf == nil {
		u.logf = func(string, ...any) {}
	}
	port := ln.Addr().(*net.TCPAddr).Port
	u.srv = &http.Server{
		Handler:           newGuard(u.routes(), port, u.token),
		ReadHeaderTimeout: 10 * time.Second,
	}
	return u, nil
}

// URL is the address to open: it carries the per-launch token, so print it
// only to the user who started the UI.
func (u *UI) URL() string {
	return (&url.URL{Scheme: "http", Host: u.Addr(), Path: "/", RawQuery: "token=" + u.token}).String()
}

// Addr is the HOST:PORT served on.
func (u *UI) Addr() string {
	a := u.ln.Addr().(*net.TCPAddr)
	if a.IP.To4() == nil {
		return fmt.Sprintf("[%s]:%d", a.IP, a.Port)
	}
	return a.String()
}

// Serve serves until ctx ends, then closes open event streams and waits
// briefly for requests in progress.
func (u *UI) Serve(ctx context.Context) error {
	u.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	errc := make(chan error, 1)
	go func() { errc <- u.srv.Serve(u.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := u.srv.Shutdown(sctx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

// Close stops listening (for a UI that was never served).
func (u *UI) Close() error { return u.ln.Close() }

func (u *UI) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(files, "assets")
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticFiles(static)))
	mux.HandleFunc("GET /{$}", u.contactsPage)
	mux.HandleFunc("GET /start", u.start)
	mux.HandleFunc("GET /c/{peer}", u.conversationPage)
	mux.HandleFunc("GET /settings", u.settingsPage)
	mux.HandleFunc("POST /settings", u.saveSettings)
	mux.HandleFunc("GET /fragment/contacts", u.contactsFragment)
	mux.HandleFunc("GET /fragment/c/{peer}", u.conversationFragment)
	mux.HandleFunc("GET /api/state", u.state)
	mux.HandleFunc("GET /events", u.events)
	mux.HandleFunc("POST /c/{peer}/send", u.send)
	mux.HandleFunc("POST /c/{peer}/read", u.markRead)
	mux.HandleFunc("POST /retry/{id}", u.retry)
	return mux
}

// staticFiles serves the embedded assets. They change only with the
// binary, whose start makes a new token anyway, so a short cache is safe.
func staticFiles(fsys fs.FS) http.Handler {
	h := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=60")
		h.ServeHTTP(w, r)
	})
}
