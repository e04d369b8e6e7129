package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/internal/auth"
)

// TestTheDomainLivesWithTheData: the first use records the domain; later
// uses without --domain take it from the folder (and so compute the same
// digest secrets); another --domain is refused with how to change it;
// SetDomain changes it.
func TestTheDomainLivesWithTheData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	open := func(domain string) (*Server, error) {
		return New(Options{DataDir: dir, Domain: domain})
	}
	srv, err := open("SP.test")
	if err != nil {
		t.Fatal(err)
	}
	if srv.Domain() != "sp.test" || !srv.FirstUse() {
		t.Fatalf("first use: domain %q, first %v", srv.Domain(), srv.FirstUse())
	}
	if err := srv.AddUser(context.Background(), "frank", "frank-password-1"); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if st, err := os.Stat(filepath.Join(dir, DomainFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("record: %v %v", st, err)
	}

	// A command without --domain (user passwd, user list, the server) gets sp.test.
	srv, err = open("")
	if err != nil {
		t.Fatal(err)
	}
	if srv.Domain() != "sp.test" || srv.FirstUse() {
		t.Fatalf("later use: domain %q, first %v", srv.Domain(), srv.FirstUse())
	}
	secrets, err := srv.sipSecrets(context.Background(), "frank")
	if err != nil {
		t.Fatal(err)
	}
	if want := auth.ComputeSIPSecrets("frank", "sp.test", "frank-password-1"); string(secrets.Marshal()) != string(want.Marshal()) {
		t.Fatal("the account's digest secrets are not those of realm sp.test")
	}
	srv.Close()

	// The same domain given again is fine; another is refused.
	if srv, err = open("sp.test"); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	_, err = open("localhost")
	if !errors.Is(err, ErrDomainMismatch) {
		t.Fatalf("another domain: %v", err)
	}
	for _, want := range []string{"--domain localhost", "created for sp.test", "domain set localhost", "user passwd", "phones cannot register"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q: %v", want, err)
		}
	}

	prev, err := SetDomain(dir, "localhost")
	if err != nil || prev != "sp.test" {
		t.Fatalf("SetDomain: %q %v", prev, err)
	}
	if srv, err = open("localhost"); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if _, err := SetDomain(dir, "bad domain"); err == nil {
		t.Fatal("a domain with a space accepted")
	}
}
