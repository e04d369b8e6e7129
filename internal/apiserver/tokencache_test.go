package apiserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/auth"
	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/store/sqlite"
)

// A token is trusted without the store for at most tokenCacheTTL: one
// revoked elsewhere (another node, the passwd command) stops working within
// that time, and one revoked through this server stops at once.
func TestTokenCacheIsBoundedInTime(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "a.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	ctx := context.Background()
	if err := st.CreateAccount(ctx, store.Account{Name: "alice", PasswordHash: "x", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	newToken := func() string {
		tok, hash := auth.NewToken()
		if err := st.AddToken(ctx, store.Token{Hash: hash, Account: "alice", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	h := New(Options{Store: st, Clock: clk}).Handler()
	// GET of an unknown message: 404 when the token is good, 401 when not.
	call := func(method, path, tok string) int {
		r := httptest.NewRequest(method, path, nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	status := func(tok string) int {
		return call("GET", api.PathMessages+"/123e4567-e89b-12d3-a456-426614174000", tok)
	}

	tok := newToken()
	if got := status(tok); got != http.StatusNotFound {
		t.Fatalf("valid token: %d", got)
	}
	if err := st.RevokeToken(ctx, auth.HashToken(tok)); err != nil {
		t.Fatal(err)
	}
	if got := status(tok); got != http.StatusNotFound {
		t.Fatalf("revoked elsewhere, within the cache lifetime: %d, want the cached answer 404", got)
	}
	clk.Advance(tokenCacheTTL)
	if got := status(tok); got != http.StatusUnauthorized {
		t.Fatalf("revoked elsewhere, after tokenCacheTTL: %d, want 401", got)
	}

	tok = newToken()
	if got := status(tok); got != http.StatusNotFound {
		t.Fatalf("second token: %d", got)
	}
	if got := call("DELETE", api.PathTokens, tok); got != http.StatusNoContent {
		t.Fatalf("revoke: %d", got)
	}
	if got := status(tok); got != http.StatusUnauthorized {
		t.Fatalf("revoked here: %d, want 401 at once", got)
	}

	// A token expiring before the cache lifetime ends is not trusted past
	// its expiry.
	short, hash := auth.NewToken()
	if err := st.AddToken(ctx, store.Token{Hash: hash, Account: "alice", CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if got := status(short); got != http.StatusNotFound {
		t.Fatalf("short-lived token: %d", got)
	}
	clk.Advance(time.Second)
	if got := status(short); got != http.StatusUnauthorized {
		t.Fatalf("expired token still cached: %d", got)
	}

	// ForgetAccount (a password change or deletion through this server)
	// drops the account's tokens from the cache.
	a := New(Options{Store: st, Clock: clk})
	h = a.Handler()
	tok = newToken()
	status(tok)
	if err := st.RevokeToken(ctx, auth.HashToken(tok)); err != nil {
		t.Fatal(err)
	}
	a.ForgetAccount("alice")
	if got := status(tok); got != http.StatusUnauthorized {
		t.Fatalf("after ForgetAccount: %d, want 401", got)
	}
}
