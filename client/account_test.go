package client

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
)

// tokenServer answers POST /v1/tokens for any account with the password
// testPassword, as sealpostd does; it returns the server's URL and a CA
// file for its certificate.
func tokenServer(t *testing.T) (string, string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, pw, ok := r.BasicAuth()
		if r.URL.Path != api.PathTokens || !ok || pw != testPassword {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(api.TokenResponse{Token: "spt_" + name, Account: name, ExpiresAt: time.Now().Add(time.Hour), Domain: "localhost", SIPPort: 5061})
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL, ca
}

func TestOneProfileOneAccount(t *testing.T) {
	url, ca := tokenServer(t)
	home := filepath.Join(t.TempDir(), "profile")
	login := func(account string, force bool) error {
		return Login(context.Background(), LoginOptions{Home: home, Server: url, Account: account, Password: testPassword, CAFile: ca, Force: force})
	}
	if err := login("DAVE", false); err != nil {
		t.Fatal(err)
	}
	// settings.json is there from the start, with the defaults.
	if s, err := loadSettings(home); err != nil || s != DefaultSettings() {
		t.Fatalf("settings after login: %+v, %v", s, err)
	}
	if _, err := os.Stat(filepath.Join(home, settingsFile)); err != nil {
		t.Fatalf("no settings.json after login: %v", err)
	}
	c, err := Open(Options{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	if c.Account() != "dave" {
		t.Errorf("account %q, want the name lower-cased", c.Account())
	}
	if _, err := c.db.addIncoming(context.Background(), "0b0e6f5e-6d0b-4d7e-9a55-9b1a2d3c4e5f", "carol", "for dave only", time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// The same account again keeps the history.
	if err := login("dave", false); err != nil {
		t.Fatalf("login again as the same account: %v", err)
	}
	if n := countMessages(t, home); n != 1 {
		t.Fatalf("%d messages after logging in again as dave, want 1", n)
	}
	// Another account is refused, and nothing changes.
	err = login("bob", false)
	if !errors.Is(err, ErrOtherAccount) {
		t.Fatalf("login as bob on dave's profile: %v, want ErrOtherAccount", err)
	}
	if p, _, _ := loadProfile(home); p.Account != "dave" || countMessages(t, home) != 1 {
		t.Fatalf("a refused login changed the profile: %s, %d messages", p.Account, countMessages(t, home))
	}
	// A failed login with --force deletes nothing.
	if err := Login(context.Background(), LoginOptions{Home: home, Server: url, Account: "bob", Password: "wrong", CAFile: ca, Force: true}); err == nil {
		t.Fatal("wrong password accepted")
	}
	if countMessages(t, home) != 1 {
		t.Fatal("a failed forced login deleted the messages")
	}
	// --force clears the store: bob does not see dave's messages.
	if err := login("bob", true); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := loadProfile(home); p.Account != "bob" || countMessages(t, home) != 0 {
		t.Fatalf("after --force: account %s, %d messages; want bob and none", p.Account, countMessages(t, home))
	}
}

func countMessages(t *testing.T, home string) int {
	t.Helper()
	c, err := Open(Options{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var n int
	if err := c.db.sql.QueryRow("SELECT count(*) FROM messages").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
