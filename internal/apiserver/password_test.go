package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

func TestChangePassword(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "a.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	if err := st.CreateAccount(ctx, store.Account{Name: "alice", PasswordHash: auth.HashPassword("old-password"), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	tok, hash := auth.NewToken()
	if err := st.AddToken(ctx, store.Token{Hash: hash, Account: "alice", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	calls := 0
	a := New(Options{Store: st, Clock: clock.NewFake(t0),
		SetPassword: func(ctx context.Context, name, pw string) error {
			calls++
			return st.SetPassword(ctx, name, auth.HashPassword(pw), nil)
		},
		MinPasswordLength: 15,
	})
	h := a.Handler()
	change := func(tok, current, next string) (int, api.TokenResponse) {
		b, _ := json.Marshal(api.PasswordRequest{Password: current, NewPassword: next})
		r := httptest.NewRequest("POST", api.PathPassword, bytes.NewReader(b))
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var res api.TokenResponse
		json.Unmarshal(w.Body.Bytes(), &res)
		return w.Code, res
	}
	withDefault := New(Options{Store: st, Clock: clock.NewFake(t0), SetPassword: func(context.Context, string, string) error {
		t.Error("SetPassword called for a short password")
		return nil
	}}).Handler()
	b, _ := json.Marshal(api.PasswordRequest{Password: "old-password", NewPassword: "x"})
	r := httptest.NewRequest("POST", api.PathPassword, bytes.NewReader(b))
	r.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	withDefault.ServeHTTP(w, r)
	if w.Code != http.StatusUnprocessableEntity || !bytes.Contains(w.Body.Bytes(), []byte("at least 12")) {
		t.Errorf("the password x without a rule set: %d %s", w.Code, w.Body)
	}
	if code, _ := change(tok, "wrong-password", "new-long-password"); code != http.StatusForbidden {
		t.Errorf("wrong current password: %d", code)
	}
	if code, _ := change(tok, "old-password", "fourteen-chars"); code != http.StatusUnprocessableEntity {
		t.Errorf("new password shorter than MinPasswordLength 15: %d", code)
	}
	if code, _ := change(tok, "old-password", "short"); code != http.StatusUnprocessableEntity {
		t.Errorf("new password breaking the rule: %d", code)
	}
	if code, _ := change(tok, "old-password", ""); code != http.StatusUnprocessableEntity {
		t.Errorf("empty new password: %d", code)
	}
	if code, _ := change("spt_unknown", "old-password", "new-long-password"); code != http.StatusUnauthorized {
		t.Errorf("unknown token: %d", code)
	}
	if calls != 0 {
		t.Fatalf("SetPassword called %d times for refused requests", calls)
	}
	code, res := change(tok, "old-password", "new-long-password")
	if code != http.StatusOK || res.Token == "" || res.Token == tok || res.Account != "alice" {
		t.Fatalf("change: %d %+v", code, res)
	}
	acct, _ := st.Account(ctx, "alice")
	if !auth.CheckPassword(acct.PasswordHash, "new-long-password") {
		t.Fatal("the new password was not stored")
	}
	if _, err := st.TokenByHash(ctx, auth.HashToken(tok), t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the old token survived the change: %v", err)
	}
	if _, err := st.TokenByHash(ctx, auth.HashToken(res.Token), t0); err != nil {
		t.Errorf("the new token is not stored: %v", err)
	}
}
