package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// The protections of a web UI served on the user's own machine, as Jupyter,
// Syncthing and Tailscale's web client have them. Any web page the user
// visits can make the browser send requests to 127.0.0.1, so being on
// loopback proves nothing:
//
//   - the Host header must name this listener (127.0.0.1:PORT,
//     localhost:PORT, [::1]:PORT), which defeats DNS rebinding: a page of
//     evil.example resolved to 127.0.0.1 still sends Host: evil.example;
//   - the printed URL carries a random per-launch token, exchanged for an
//     HttpOnly, SameSite=Strict cookie and then removed from the address bar
//     by a redirect; every other request needs the cookie;
//   - every state-changing request passes http.CrossOriginProtection;
//   - a strict Content-Security-Policy: no inline script or style, nothing
//     from another origin, no framing.

// contentSecurityPolicy allows this origin's files and nothing inline.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// newSecret returns 32 random bytes, URL-safe.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// guard wraps the UI's handler with the checks above.
type guard struct {
	next    http.Handler
	hosts   map[string]bool // accepted Host header values
	token   string          // in the printed URL
	session string          // the cookie's value
	cookie  string          // the cookie's name: one per port, as cookies ignore ports
	cop     *http.CrossOriginProtection
}

func newGuard(next http.Handler, port int, token string) *guard {
	p := strconv.Itoa(port)
	g := &guard{
		next:    next,
		hosts:   map[string]bool{"127.0.0.1:" + p: true, "localhost:" + p: true, "[::1]:" + p: true},
		token:   token,
		session: newSecret(),
		cookie:  "sealpost_" + p,
		cop:     http.NewCrossOriginProtection(),
	}
	g.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse(w, r, http.StatusForbidden, "cross-origin request refused: only pages of this sealpost web may change anything")
	}))
	return g
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !g.hosts[strings.ToLower(r.Host)] {
		refuse(w, r, http.StatusForbidden, fmt.Sprintf("unexpected Host %q: open the address sealpost web printed", r.Host))
		return
	}
	if tok := r.URL.Query().Get("token"); tok != "" && r.Method == http.MethodGet {
		g.exchange(w, r, tok)
		return
	}
	c, err := r.Cookie(g.cookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(g.session)) != 1 {
		refuse(w, r, http.StatusUnauthorized, "not signed in: open the address with the token that sealpost web printed when it started")
		return
	}
	g.cop.Handler(g.next).ServeHTTP(w, r)
}

// exchange turns a valid token into the session cookie and redirects to
// the same address without the token, so that it leaves the address bar
// and the browser's history.
func (g *guard) exchange(w http.ResponseWriter, r *http.Request, tok string) {
	if subtle.ConstantTimeCompare([]byte(tok), []byte(g.token)) != 1 {
		refuse(w, r, http.StatusUnauthorized, "wrong token: it changes each time sealpost web starts; open the address it printed last")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: g.cookie, Value: g.session, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	q := r.URL.Query()
	q.Del("token")
	u := *r.URL
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
}

// refuse answers a refused request: JSON for the page's scripts, a line of
// text for a person.
func refuse(w http.ResponseWriter, r *http.Request, code int, why string) {
	if wantsJSON(r) {
		writeError(w, code, "refused", why)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, why)
}

// loopbackListen checks that addr binds a loopback address only and
// returns it with "localhost" spelled as 127.0.0.1 (a name could resolve
// to anything).
func loopbackListen(addr string) (string, error) {
	if addr == "" {
		return "127.0.0.1:0", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w (want 127.0.0.1:PORT)", addr, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("listen address %q: the web UI listens on loopback only (127.0.0.1 or ::1), so that nobody else on the network can reach it", addr)
	}
	return net.JoinHostPort(ip.String(), port), nil
}
