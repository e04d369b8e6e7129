package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/seal"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

// TestNoTextOrSecretAtRest writes known texts (delivered, pending, expired),
// then scans every file under the data folder — database, WAL, keys — and
// every log line for them, and for the passwords and tokens.
func TestNoTextOrSecretAtRest(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s, tok := newPair(t, servertest.WithFakeClock(t0), servertest.WithOptions(func(o *server.Options) {
		o.SweepInterval = time.Hour
	}))
	bob := s.NewDevice(t, "bob", "bob-pw")
	secrets := []string{"alice-pw", "bob-pw", tok}
	var texts []string
	send := func(prefix string) string {
		text := fmt.Sprintf("%s canary %s", prefix, strings.ReplaceAll(message.NewID(), "-", ""))
		if code, _, _ := submit(t, s, tok, message.NewID(), "bob", text); code != 202 {
			t.Fatalf("submit %s: %d", prefix, code)
		}
		texts = append(texts, text)
		return text
	}
	send("expiring")
	s.Clock.Advance(72 * time.Hour) // expires the first
	servertest.CheckFor(t, 10*time.Second, func() error {
		n, err := s.Store().CountPending(t.Context())
		if err != nil || n != 0 {
			return fmt.Errorf("pending %d %v", n, err)
		}
		return nil
	})
	mustRegister(t, bob, false)
	delivered := send("delivered")
	servertest.CheckFor(t, 10*time.Second, func() error {
		if got := bob.Texts(); len(got) != 1 || got[0] != delivered {
			return fmt.Errorf("bob has %q", got)
		}
		return nil
	})
	bob.Close()
	servertest.CheckFor(t, 10*time.Second, func() error {
		if _, ok := s.Registrar().Lookup("bob"); ok {
			return errors.New("bob still registered")
		}
		return nil
	})
	send("pending")
	send("pending too 👍🏽")

	// Scan while running (WAL not yet checkpointed) and after a clean stop.
	scan := func(when string) {
		err := filepath.WalkDir(s.DataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if !d.Type().IsRegular() { // the control socket
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, needle := range append(append([]string{}, texts...), secrets...) {
				if bytes.Contains(data, []byte(needle)) {
					t.Errorf("%s: %s holds %q in clear", when, filepath.Base(path), needle)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if servertest.OnPostgres() {
		// The database's own files and the server's WAL (which holds every
		// database's changes) instead of a file in the data folder.
		dirs := postgresFiles(t, s.StoreURL)
		scanPG := func(when string) {
			for _, dir := range dirs {
				scanFiles(t, when, dir, append(append([]string{}, texts...), secrets...))
			}
		}
		scanPG("running, PostgreSQL")
		defer scanPG("stopped, PostgreSQL")
	}
	scan("running")
	s.Stop(t)
	scan("stopped")
	for _, line := range s.Logs() {
		for _, needle := range append(append([]string{}, texts...), secrets...) {
			if strings.Contains(line, needle) {
				t.Errorf("log line holds %q: %s", needle, line)
			}
		}
	}
	// And the files holding secrets are private.
	private := []string{"master.key", "key.pem", "sealpost.db"}
	if servertest.OnPostgres() {
		private = private[:2] // no database file in the data folder
	}
	for _, name := range private {
		st, err := os.Stat(filepath.Join(s.DataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(s.DataDir); st.Mode().Perm() != 0o700 {
		t.Errorf("data folder has mode %v, want 0700", st.Mode().Perm())
	}
}

// TestExpiredPeriodCannotBeOpened copies a sealed message out of the store,
// lets its period expire, and shows that its text cannot be opened any more,
// even from the copy: the data key is destroyed.
func TestExpiredPeriodCannotBeOpened(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s, tok := newPair(t, servertest.WithFakeClock(t0), servertest.WithOptions(func(o *server.Options) {
		o.SweepInterval = time.Hour
	}))
	id := message.NewID()
	submit(t, s, tok, id, "bob", "shred me")
	old, err := s.Store().Message(t.Context(), "alice", id)
	if err != nil || len(old.Sealed) == 0 {
		t.Fatalf("stored message: %+v %v", old, err)
	}
	if text, err := s.Sealer().Open(t.Context(), id, "alice", "bob", old.KeyPeriod, old.Sealed); err != nil || text != "shred me" {
		t.Fatalf("open before expiry: %q %v", text, err)
	}
	// 72 h plus the rest of the one-hour key period.
	s.Clock.Advance(74 * time.Hour)
	servertest.CheckFor(t, 10*time.Second, func() error {
		_, err := s.Store().DataKey(t.Context(), old.KeyPeriod)
		if err == nil {
			return errors.New("data key still stored")
		}
		return nil
	})
	if _, err := s.Sealer().Open(t.Context(), id, "alice", "bob", old.KeyPeriod, old.Sealed); !errors.Is(err, seal.ErrKeyDestroyed) {
		t.Fatalf("open after the key period ended: %v, want ErrKeyDestroyed", err)
	}
	// A restarted server (no cached keys) cannot open it either.
	s.Restart(t)
	if _, err := s.Sealer().Open(t.Context(), id, "alice", "bob", old.KeyPeriod, old.Sealed); !errors.Is(err, seal.ErrKeyDestroyed) {
		t.Fatalf("open after restart: %v, want ErrKeyDestroyed", err)
	}
}

func TestMasterKeyOutsideDataFolder(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "elsewhere.key")
	s, tok := newPair(t, servertest.WithOptions(func(o *server.Options) { o.MasterKeyFile = keyFile }))
	if code, _, _ := submit(t, s, tok, message.NewID(), "bob", "sealed with the outside key"); code != 202 {
		t.Fatalf("submit: %d", code)
	}
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("master key: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "master.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a master key was also written into the data folder: %v", err)
	}
	// Without it, the data folder's store cannot be opened for reading text:
	// a server started on the same folder with a fresh key fails to unwrap.
	s.Stop(t)
	other := servertest.Start(t, servertest.WithOptions(func(o *server.Options) {
		o.DataDir = s.DataDir
		o.StoreURL = s.StoreURL
		o.MasterKeyFile = filepath.Join(t.TempDir(), "new.key")
	}))
	msgs, err := other.Store().Pending(t.Context(), "bob", 0, time.Time{}, 10)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("pending: %d %v", len(msgs), err)
	}
	m := msgs[0]
	if _, err := other.Sealer().Open(t.Context(), m.ID, m.From, m.To, m.KeyPeriod, m.Sealed); err == nil {
		t.Fatal("a different master key opened the text")
	}
}
