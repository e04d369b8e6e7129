package seal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/store/sqlite"
	"github.com/sealpost/sealpost/message"
)

// t0 is a period boundary for one-hour periods: 2026-03-14 15:00:00 UTC.
var t0 = time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)

var errNoKey = errors.New("memkeys: no such key")

// memKeys is a KeyStore in memory, with knobs: block makes DataKey wait
// (after it has read the key) until the channel is closed.
type memKeys struct {
	mu    sync.Mutex
	keys  map[int64][]byte
	puts  int
	block chan struct{}
	// loaded is signalled (if set) when a blocked DataKey has read its key.
	loaded chan struct{}
}

func newMemKeys() *memKeys { return &memKeys{keys: map[int64][]byte{}} }

func (m *memKeys) DataKey(ctx context.Context, period int64) ([]byte, error) {
	m.mu.Lock()
	k, ok := m.keys[period]
	block, loaded := m.block, m.loaded
	m.mu.Unlock()
	if block != nil {
		loaded <- struct{}{}
		<-block
	}
	if !ok {
		return nil, errNoKey
	}
	return k, nil
}

func (m *memKeys) PutDataKey(ctx context.Context, period int64, wrapped []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.puts++
	if k, ok := m.keys[period]; ok {
		return k, nil
	}
	m.keys[period] = wrapped
	return wrapped, nil
}

func (m *memKeys) DeleteDataKeys(ctx context.Context, before int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for p := range m.keys {
		if p < before {
			delete(m.keys, p)
			n++
		}
	}
	return n, nil
}

func (m *memKeys) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys)
}

func isNoKey(err error) bool { return errors.Is(err, errNoKey) }

func masterKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func newSealer(t testing.TB, keys KeyStore, notFound IsNotFound) *Sealer {
	t.Helper()
	s, err := New(masterKey(1), keys, notFound, time.Hour)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// keyStores runs f against the in-memory KeyStore and the real SQLite store.
func keyStores(t *testing.T, f func(t *testing.T, keys KeyStore, notFound IsNotFound)) {
	t.Run("memory", func(t *testing.T) { f(t, newMemKeys(), isNoKey) })
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(filepath.Join(t.TempDir(), "keys.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f(t, st, func(err error) bool { return errors.Is(err, store.ErrNotFound) })
	})
}

// text160 is 160 user-perceived characters, several of them multi-byte.
var text160 = strings.Repeat("Grüße 👍🏽 ", 20)

func TestSealOpenRoundTrip(t *testing.T) {
	keyStores(t, func(t *testing.T, keys KeyStore, notFound IsNotFound) {
		ctx := t.Context()
		if message.CheckText(text160) != nil || message.CheckText(text160+"x") == nil {
			t.Fatalf("text160 is not exactly 160 characters")
		}
		s := newSealer(t, keys, notFound)
		for _, text := range []string{"hi", "line one\nline two", text160} {
			period, sealed, err := s.Seal(ctx, "id-1", "alice", "bob", text, t0.Add(72*time.Hour))
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if bytes.Contains(sealed, []byte(text)) {
				t.Fatalf("sealed text contains the plain text")
			}
			got, err := s.Open(ctx, "id-1", "alice", "bob", period, sealed)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got != text {
				t.Errorf("Open = %q, want %q", got, text)
			}
			// A new Sealer (a restart) reads the stored key.
			fresh := newSealer(t, keys, notFound)
			if got, err := fresh.Open(ctx, "id-1", "alice", "bob", period, sealed); err != nil || got != text {
				t.Errorf("Open after restart = %q, %v", got, err)
			}
		}
		_, a, _ := s.Seal(ctx, "id-2", "alice", "bob", "same", t0.Add(time.Hour))
		_, b, _ := s.Seal(ctx, "id-2", "alice", "bob", "same", t0.Add(time.Hour))
		if bytes.Equal(a, b) {
			t.Errorf("two seals of the same text are identical: nonces are not fresh")
		}
	})
}

func TestOpenRefusesOtherMessage(t *testing.T) {
	ctx := t.Context()
	s := newSealer(t, newMemKeys(), isNoKey)
	exp := t0.Add(72 * time.Hour)
	period, sealed, err := s.Seal(ctx, "id-1", "alice", "bob", "secret", exp)
	if err != nil {
		t.Fatal(err)
	}
	otherPeriod, _, err := s.Seal(ctx, "id-9", "alice", "bob", "x", exp.Add(5*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for _, c := range []struct {
		name             string
		id, from, to     string
		period           int64
		sealed           []byte
		wantKeyDestroyed bool
	}{
		{"wrong id", "id-2", "alice", "bob", period, sealed, false},
		{"wrong sender", "id-1", "mallory", "bob", period, sealed, false},
		{"wrong recipient", "id-1", "alice", "mallory", period, sealed, false},
		{"sender and recipient swapped", "id-1", "bob", "alice", period, sealed, false},
		{"id and sender shifted", "id-1\x00alice", "", "bob", period, sealed, false},
		{"another period's key", "id-1", "alice", "bob", otherPeriod, sealed, false},
		{"a period without a key", "id-1", "alice", "bob", period + 100, sealed, true},
		{"flipped bit", "id-1", "alice", "bob", period, flipped, false},
		{"truncated", "id-1", "alice", "bob", period, sealed[:10], false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.Open(ctx, c.id, c.from, c.to, c.period, c.sealed)
			if err == nil {
				t.Fatalf("Open succeeded (%q)", got)
			}
			if errors.Is(err, ErrKeyDestroyed) != c.wantKeyDestroyed {
				t.Errorf("Open error %v: ErrKeyDestroyed = %v, want %v", err, !c.wantKeyDestroyed, c.wantKeyDestroyed)
			}
		})
	}
	if got, err := s.Open(ctx, "id-1", "alice", "bob", period, sealed); err != nil || got != "secret" {
		t.Errorf("the right message no longer opens: %q, %v", got, err)
	}
}

func TestPeriods(t *testing.T) {
	keys := newMemKeys()
	s := newSealer(t, keys, isNoKey)
	p := s.PeriodOf(t0)
	if s.PeriodOf(t0.Add(-time.Nanosecond)) != p-1 {
		t.Errorf("a nanosecond before a boundary is period %d, want %d", s.PeriodOf(t0.Add(-time.Nanosecond)), p-1)
	}
	if s.PeriodOf(t0.Add(time.Hour-time.Nanosecond)) != p {
		t.Errorf("the last instant of a period is not in it")
	}
	if s.PeriodOf(t0.Add(time.Hour)) != p+1 {
		t.Errorf("the next boundary starts period %d, want %d", s.PeriodOf(t0.Add(time.Hour)), p+1)
	}
	// Time zone does not matter, only the instant.
	if s.PeriodOf(t0.In(time.FixedZone("x", 5*3600+1800))) != p {
		t.Errorf("PeriodOf depends on the time zone")
	}

	// Messages expiring within one period share one data key.
	ctx := t.Context()
	for i, exp := range []time.Time{t0, t0.Add(time.Minute), t0.Add(time.Hour - time.Nanosecond)} {
		got, _, err := s.Seal(ctx, fmt.Sprint(i), "a", "b", "x", exp)
		if err != nil || got != p {
			t.Fatalf("Seal expiring %v: period %d, %v; want %d", exp, got, err, p)
		}
	}
	if n := keys.count(); n != 1 {
		t.Errorf("%d data keys for one period, want 1", n)
	}
	if got, _, _ := s.Seal(ctx, "next", "a", "b", "x", t0.Add(time.Hour)); got != p+1 || keys.count() != 2 {
		t.Errorf("a message at the next boundary got period %d with %d keys; want %d and a second key", got, keys.count(), p+1)
	}

	// A longer period groups more expiry times.
	day, err := New(masterKey(1), newMemKeys(), isNoKey, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if day.PeriodOf(t0) != day.PeriodOf(t0.Add(8*time.Hour)) {
		t.Errorf("with one-day periods, 15:00 and 23:00 of one day fall in different periods")
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	if _, err := New(make([]byte, 16), newMemKeys(), isNoKey, time.Hour); err == nil {
		t.Errorf("New accepted a 16-byte master key")
	}
	if _, err := New(masterKey(1), newMemKeys(), isNoKey, 500*time.Millisecond); err == nil {
		t.Errorf("New accepted a key period under a second")
	}
}

func TestDestroyExpired(t *testing.T) {
	keyStores(t, func(t *testing.T, keys KeyStore, notFound IsNotFound) {
		ctx := t.Context()
		s := newSealer(t, keys, notFound)
		// old expires inside [t0, t0+1h); live inside [t0+2h, t0+3h).
		oldExp, liveExp := t0.Add(30*time.Minute), t0.Add(2*time.Hour+time.Minute)
		oldP, oldSealed, err := s.Seal(ctx, "old", "alice", "bob", "old text", oldExp)
		if err != nil {
			t.Fatal(err)
		}
		liveP, liveSealed, err := s.Seal(ctx, "live", "alice", "bob", "live text", liveExp)
		if err != nil {
			t.Fatal(err)
		}

		// The old message has expired but its period has not ended: a
		// message of the same period may still be waiting.
		if _, err := s.DestroyExpired(ctx, t0.Add(time.Hour-time.Nanosecond)); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Open(ctx, "old", "alice", "bob", oldP, oldSealed); err != nil || got != "old text" {
			t.Fatalf("Open before the period ended = %q, %v", got, err)
		}

		n, err := s.DestroyExpired(ctx, t0.Add(time.Hour)) // the period ends exactly now
		if err != nil || n != 1 {
			t.Fatalf("DestroyExpired at the end of the period = %d, %v; want 1", n, err)
		}
		if _, err := s.Open(ctx, "old", "alice", "bob", oldP, oldSealed); !errors.Is(err, ErrKeyDestroyed) {
			t.Errorf("Open of an ended period: %v, want ErrKeyDestroyed", err)
		}
		if got, err := s.Open(ctx, "live", "alice", "bob", liveP, liveSealed); err != nil || got != "live text" {
			t.Errorf("Open of a live period = %q, %v", got, err)
		}
		// Another process with the same master key cannot read it either.
		other := newSealer(t, keys, notFound)
		if _, err := other.Open(ctx, "old", "alice", "bob", oldP, oldSealed); !errors.Is(err, ErrKeyDestroyed) {
			t.Errorf("Open in a fresh Sealer: %v, want ErrKeyDestroyed", err)
		}
		if got, err := other.Open(ctx, "live", "alice", "bob", liveP, liveSealed); err != nil || got != "live text" {
			t.Errorf("Open of a live period in a fresh Sealer = %q, %v", got, err)
		}
		if n, err := s.DestroyExpired(ctx, t0.Add(time.Hour)); err != nil || n != 0 {
			t.Errorf("second DestroyExpired = %d, %v; want 0", n, err)
		}
	})
}

// TestDestroyWhileLoading: an Open that loads a key while DestroyExpired
// destroys it must not leave the key usable in the cache.
func TestDestroyWhileLoading(t *testing.T) {
	ctx := t.Context()
	keys := newMemKeys()
	s := newSealer(t, keys, isNoKey)
	p, sealed, err := s.Seal(ctx, "m", "alice", "bob", "text", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	s = newSealer(t, keys, isNoKey) // empty cache: the next Open loads the key

	keys.mu.Lock()
	keys.block, keys.loaded = make(chan struct{}), make(chan struct{})
	block := keys.block
	keys.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := s.Open(ctx, "m", "alice", "bob", p, sealed)
		done <- err
	}()
	<-keys.loaded // the Open has read the wrapped key
	keys.mu.Lock()
	keys.block = nil
	keys.mu.Unlock()
	if n, err := s.DestroyExpired(ctx, t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("DestroyExpired = %d, %v", n, err)
	}
	close(block)
	if err := <-done; err != nil && !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("the racing Open: %v", err)
	}
	if _, err := s.Open(ctx, "m", "alice", "bob", p, sealed); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Open after DestroyExpired: %v, want ErrKeyDestroyed (the key survived in the cache)", err)
	}
}

func TestWrongMasterKey(t *testing.T) {
	ctx := t.Context()
	keys := newMemKeys()
	s := newSealer(t, keys, isNoKey)
	p, sealed, err := s.Seal(ctx, "m", "alice", "bob", "text", t0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := New(masterKey(2), keys, isNoKey, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.Open(ctx, "m", "alice", "bob", p, sealed)
	if err == nil || errors.Is(err, ErrKeyDestroyed) || !strings.Contains(err.Error(), "master key") {
		t.Errorf("Open with another master key: %v; want an error naming the master key", err)
	}
}

// TestConcurrentSealersAgree: two nodes creating the same period's key at
// once end up with one key that both use.
func TestConcurrentSealersAgree(t *testing.T) {
	keyStores(t, func(t *testing.T, keys KeyStore, notFound IsNotFound) {
		ctx := t.Context()
		const nodes = 6
		sealers := make([]*Sealer, nodes)
		for i := range sealers {
			sealers[i] = newSealer(t, keys, notFound)
		}
		sealed := make([][]byte, nodes)
		errs := make([]error, nodes)
		var p int64
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var pi int64
				pi, sealed[i], errs[i] = sealers[i].Seal(ctx, fmt.Sprint(i), "a", "b", fmt.Sprint("text ", i), t0)
				if i == 0 {
					p = pi
				}
			}()
		}
		wg.Wait()
		for i := range nodes {
			if errs[i] != nil {
				t.Fatalf("Seal on node %d: %v", i, errs[i])
			}
			for j := range nodes {
				got, err := sealers[j].Open(ctx, fmt.Sprint(i), "a", "b", p, sealed[i])
				if err != nil || got != fmt.Sprint("text ", i) {
					t.Errorf("node %d cannot open node %d's text: %q, %v", j, i, got, err)
				}
			}
		}
	})
}

func TestSecret(t *testing.T) {
	s := newSealer(t, newMemKeys(), isNoKey)
	plain := []byte("md5:0123456789abcdef sha256:fedcba9876543210")
	sealed := s.SealSecret(plain, "sip-ha1:alice")
	if bytes.Contains(sealed, plain) {
		t.Fatalf("sealed secret contains the secret")
	}
	got, err := s.OpenSecret(sealed, "sip-ha1:alice")
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("OpenSecret = %q, %v", got, err)
	}
	// A secret sealed for alice cannot be passed off as bob's.
	if _, err := s.OpenSecret(sealed, "sip-ha1:bob"); err == nil {
		t.Errorf("OpenSecret accepted another label")
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)/2] ^= 0x80
	if _, err := s.OpenSecret(flipped, "sip-ha1:alice"); err == nil {
		t.Errorf("OpenSecret accepted a tampered secret")
	}
	if _, err := s.OpenSecret(sealed[:5], "sip-ha1:alice"); err == nil {
		t.Errorf("OpenSecret accepted a truncated secret")
	}
	other, _ := New(masterKey(2), newMemKeys(), isNoKey, time.Hour)
	if _, err := other.OpenSecret(sealed, "sip-ha1:alice"); err == nil {
		t.Errorf("OpenSecret with another master key succeeded")
	}
	// Secrets and message keys are separated: a message's associated data
	// is never a valid secret label and vice versa.
	if _, err := s.OpenSecret(sealed, ""); err == nil {
		t.Errorf("OpenSecret with an empty label succeeded")
	}
}

func TestMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	key, err := LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatalf("creating: %v", err)
	}
	if len(key) != KeySize || bytes.Equal(key, make([]byte, KeySize)) {
		t.Fatalf("created key is %d bytes (all zero: %v)", len(key), bytes.Equal(key, make([]byte, KeySize)))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("created key file has mode %v, want 0600", st.Mode().Perm())
	}
	again, err := LoadOrCreateMasterKey(path)
	if err != nil || !bytes.Equal(again, key) {
		t.Errorf("loading the key again = %x, %v; want the created key", again, err)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadOrCreateMasterKey(path)
	if err == nil || !strings.Contains(err.Error(), "0600") {
		t.Errorf("a 0644 key file: %v; want a refusal that says 0600", err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateMasterKey(path); err == nil {
		t.Errorf("a group-readable key file was accepted")
	}

	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, make([]byte, 16), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadOrCreateMasterKey(short)
	if err == nil || !strings.Contains(err.Error(), "16 bytes") {
		t.Errorf("a 16-byte key file: %v; want a refusal that gives the size", err)
	}

	if _, err := LoadOrCreateMasterKey(filepath.Join(dir, "missing-dir", "master.key")); err == nil {
		t.Errorf("creating a key in a missing folder succeeded")
	}
	if _, err := LoadOrCreateMasterKey(filepath.Join(dir, "other.key")); err != nil {
		t.Fatal(err)
	}
	k2, _ := LoadOrCreateMasterKey(filepath.Join(dir, "other.key"))
	if bytes.Equal(k2, key) {
		t.Errorf("two created master keys are equal")
	}
}

func BenchmarkSeal(b *testing.B) {
	s := newSealer(b, newMemKeys(), isNoKey)
	ctx := context.Background()
	exp := t0.Add(72 * time.Hour)
	if _, _, err := s.Seal(ctx, "warm", "alice", "bob", text160, exp); err != nil { // creates the period key
		b.Fatal(err)
	}
	b.SetBytes(int64(len(text160)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Seal(ctx, "0190f2b4-7c1e-7a3b-9d2f-4e5a6b7c8d9e", "alice", "bob", text160, exp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	s := newSealer(b, newMemKeys(), isNoKey)
	ctx := context.Background()
	id := "0190f2b4-7c1e-7a3b-9d2f-4e5a6b7c8d9e"
	p, sealed, err := s.Seal(ctx, id, "alice", "bob", text160, t0.Add(72*time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(text160)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(ctx, id, "alice", "bob", p, sealed); err != nil {
			b.Fatal(err)
		}
	}
}
