package web_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/client/web"
	"github.com/sealpost/sealpost/internal/server/servertest"
)

// TestLocalUIRefusesStrangers: what any web page the user visits could
// make the browser send to 127.0.0.1 is refused: a request without the
// session cookie, with a foreign Host (DNS rebinding), or a cross-origin
// state change; and the token is exchanged for an HttpOnly,
// SameSite=Strict cookie and taken out of the address.
func TestLocalUIRefusesStrangers(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	base := alice.origin()
	hc := httpClient()
	do := func(method, path string, header http.Header, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, vs := range header {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		if h := header.Get("Host"); h != "" {
			req.Host = h
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

	// Without the cookie: nothing.
	for _, path := range []string{"/", "/c/bob", "/events", "/api/state", "/fragment/contacts", "/static/app.js"} {
		if res, _ := do("GET", path, nil, ""); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without the cookie: %d, want 401", path, res.StatusCode)
		}
	}
	if res, _ := do("POST", "/c/bob/send", form, "text=hi"); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST send without the cookie: %d, want 401", res.StatusCode)
	}
	if res, _ := do("GET", "/?token=not-the-token", nil, ""); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d, want 401", res.StatusCode)
	}

	// The token: a cookie, and a redirect to the address without it.
	res, _ := do("GET", "/c/bob?token="+url.QueryEscape(tokenOf(t, alice)), nil, "")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/c/bob" {
		t.Fatalf("token exchange: %d to %q, want 303 to /c/bob", res.StatusCode, res.Header.Get("Location"))
	}
	cookies := res.Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Value == tokenOf(t, alice) {
		t.Fatalf("session cookie %+v: want one, HttpOnly, SameSite=Strict, not the token itself", cookies)
	}
	withCookie := func(h http.Header) http.Header {
		h = h.Clone()
		if h == nil {
			h = http.Header{}
		}
		h.Set("Cookie", cookies[0].Name+"="+cookies[0].Value)
		return h
	}
	res, page := do("GET", "/", withCookie(nil), "")
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "Start a conversation") {
		t.Fatalf("with the cookie: %d", res.StatusCode)
	}
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(page, "<script>") || strings.Contains(page, " style=") {
		t.Errorf("inline script or style allowed or used")
	}

	// A foreign Host, even with the cookie: DNS rebinding.
	for _, host := range []string{"evil.example", "evil.example:" + portOf(base), "127.0.0.2:" + portOf(base)} {
		h := withCookie(http.Header{"Host": {host}})
		if res, _ := do("GET", "/", h, ""); res.StatusCode != http.StatusForbidden {
			t.Errorf("Host %s: %d, want 403", host, res.StatusCode)
		}
	}

	// Cross-origin state changes, even with the cookie.
	for name, h := range map[string]http.Header{
		"Origin":                   {"Origin": {"http://evil.example"}},
		"Sec-Fetch-Site":           {"Sec-Fetch-Site": {"cross-site"}},
		"another port on the host": {"Origin": {"http://127.0.0.1:1"}, "Sec-Fetch-Site": {"same-site"}},
	} {
		for k, v := range form {
			h[k] = v
		}
		if res, _ := do("POST", "/c/bob/send", withCookie(h), "text=forged"); res.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin POST (%s): %d, want 403", name, res.StatusCode)
		}
		if res, _ := do("POST", "/settings", withCookie(h), "validity=1s"); res.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin settings POST (%s): %d, want 403", name, res.StatusCode)
		}
	}
	if h, err := alice.core.Conversation(context.Background(), "bob"); err != nil || len(h) != 0 {
		t.Fatalf("a refused request sent something: %+v, %v", h, err)
	}

	// The same origin may.
	h := withCookie(form)
	h.Set("Origin", base)
	h.Set("Sec-Fetch-Site", "same-origin")
	if res, body := do("POST", "/c/bob/send", h, "text=mine"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin POST: %d %s", res.StatusCode, body)
	}
}

func portOf(base string) string {
	u, _ := url.Parse(base)
	return u.Port()
}

// TestListenLoopbackOnly: the UI refuses to listen where the network
// could reach it.
func TestListenLoopbackOnly(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.com:0"} {
		ui, err := web.New(alice.core, web.Options{Listen: addr})
		if err == nil {
			ui.Close()
			t.Errorf("listen %s: accepted", addr)
		} else if !strings.Contains(err.Error(), "loopback") && !strings.Contains(err.Error(), "want 127.0.0.1") {
			t.Errorf("listen %s: %v (does not say loopback only)", addr, err)
		}
	}
	ui, err := web.New(alice.core, web.Options{Listen: "localhost:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ui.Close()
	if !strings.HasPrefix(ui.Addr(), "127.0.0.1:") || !strings.HasPrefix(ui.URL(), "http://127.0.0.1:") || !strings.Contains(ui.URL(), "token=") {
		t.Errorf("addr %s, url %s", ui.Addr(), ui.URL())
	}
}
