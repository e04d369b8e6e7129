package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/store/postgres/pgtest"
	"github.com/sealpost/sealpost/internal/store/storetest"
)

func openURL(t testing.TB, url string, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), url, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openURL(t, pgtest.NewDatabase(t), Options{})
	})
}

func TestConformanceShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		url := pgtest.NewDatabase(t)
		return openURL(t, url, Options{}), openURL(t, url, Options{})
	})
}

// TestNodesStartingAtOnceMigrateOnce opens several handles on a fresh
// database at the same moment, as nodes starting together do: all open,
// and each schema step is applied once.
func TestNodesStartingAtOnceMigrateOnce(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const nodes = 4
	errs := make(chan error, nodes)
	stores := make(chan *Store, nodes)
	for range nodes {
		go func() {
			s, err := Open(context.Background(), url, Options{})
			errs <- err
			stores <- s
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Errorf("Open: %v", err)
		}
		if s := <-stores; s != nil {
			t.Cleanup(func() { s.Close() })
		}
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var steps, max int
	if err := conn.QueryRow(t.Context(), "SELECT count(*), max(version) FROM sealpost_schema").Scan(&steps, &max); err != nil {
		t.Fatal(err)
	}
	if steps != SchemaVersion || max != SchemaVersion {
		t.Errorf("sealpost_schema has %d steps up to version %d, want each of %d once", steps, max, SchemaVersion)
	}
	// A database from a newer build is refused, not misread.
	if _, err := conn.Exec(t.Context(), "INSERT INTO sealpost_schema (version) VALUES ($1)", SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(t.Context(), url, Options{}); err == nil || !strings.Contains(err.Error(), "newer than this build") {
		if s != nil {
			s.Close()
		}
		t.Errorf("Open on a newer schema: %v, want a refusal", err)
	}
}

// TestPeriodGoesInOneDrop: a period's sealed text has a partition of its
// own, and destroying the period's key drops it in the same transaction.
func TestPeriodGoesInOneDrop(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := openURL(t, url, Options{})
	ctx := t.Context()
	if err := s.CreateAccount(ctx, store.Account{Name: "bob", PasswordHash: "x"}); err != nil {
		t.Fatal(err)
	}
	for i, p := range []int64{41, 42} {
		m := store.Message{ID: fmt.Sprintf("id-%d", i), From: "alice", To: "bob", Sealed: []byte("sealed"), KeyPeriod: p,
			SubmittedAt: time.Unix(0, 1), ExpiresAt: time.Unix(3600, 0)}
		if _, _, err := s.Submit(ctx, m, 0); err != nil {
			t.Fatalf("Submit: %v", err)
		}
		if _, err := s.PutDataKey(ctx, p, []byte("wrapped")); err != nil {
			t.Fatal(err)
		}
	}
	partitions := func() []string {
		rows, _ := s.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = 'sealed_texts'::regclass ORDER BY 1`)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	if got := partitions(); !slices.Equal(got, []string{"sealed_texts_p41", "sealed_texts_p42"}) {
		t.Fatalf("partitions = %v, want one per period", got)
	}
	if n, err := s.DeleteDataKeys(ctx, 42); err != nil || n != 1 {
		t.Fatalf("DeleteDataKeys(42) = %d, %v", n, err)
	}
	if got := partitions(); !slices.Equal(got, []string{"sealed_texts_p42"}) {
		t.Errorf("partitions after period 41 ended = %v, want only period 42's", got)
	}
}

// TestGroupCommit: submissions that arrive while a batch commits share the
// next transaction, and every one is answered as stored.
func TestGroupCommit(t *testing.T) {
	var mu sync.Mutex
	var batches []int
	s := openURL(t, pgtest.NewDatabase(t), Options{Committers: 1, OnCommit: func(ops int, _ time.Duration) {
		mu.Lock()
		batches = append(batches, ops)
		mu.Unlock()
	}})
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := store.Message{ID: fmt.Sprintf("id-%03d", i), From: fmt.Sprintf("s%d", i%8), To: fmt.Sprintf("r%d", i%3),
				Sealed: []byte("sealed"), KeyPeriod: 7, SubmittedAt: time.Unix(0, 1), ExpiresAt: time.Unix(3600, 0)}
			_, created, err := s.Submit(context.Background(), m, 0)
			if err == nil && !created {
				err = fmt.Errorf("%s: not created", m.ID)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c, err := s.CountPending(t.Context()); err != nil || c != n {
		t.Fatalf("CountPending = %d, %v; want %d", c, err, n)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, b := range batches {
		total += b
	}
	if total != n || len(batches) >= n {
		t.Errorf("%d submissions in %d batches %v; want them all, in fewer batches than submissions", n, len(batches), batches)
	}
	t.Logf("%d submissions in %d transactions: %v", n, len(batches), batches)
}

// TestSynchronousCommitForced: a database whose default is
// synchronous_commit=off (acknowledging commits before they reach disk)
// still gets durable commits from the store.
func TestSynchronousCommitForced(t *testing.T) {
	url := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), "ALTER DATABASE "+pgx.Identifier{conn.Config().Database}.Sanitize()+" SET synchronous_commit = off"); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	s := openURL(t, url, Options{})
	for range 3 { // several pool connections
		var setting string
		if err := s.pool.QueryRow(t.Context(), "SHOW synchronous_commit").Scan(&setting); err != nil {
			t.Fatal(err)
		}
		if setting != "on" {
			t.Fatalf("synchronous_commit = %q on a store connection, want on", setting)
		}
	}
}

// TestDeliveredTextIsDeleted: the delivered mark removes the sealed text
// row itself (the conformance suite sees only that it is no longer read),
// and leaves the texts of messages not marked.
func TestDeliveredTextIsDeleted(t *testing.T) {
	s := openURL(t, pgtest.NewDatabase(t), Options{})
	ctx := t.Context()
	var keys []store.Key
	for i := range 3 {
		m := store.Message{ID: fmt.Sprintf("id-%d", i), From: "alice", To: "bob", Sealed: []byte("sealed"), KeyPeriod: 7,
			SubmittedAt: time.Unix(0, 1), ExpiresAt: time.Unix(3600, 0)}
		if _, _, err := s.Submit(ctx, m, 0); err != nil {
			t.Fatalf("Submit: %v", err)
		}
		keys = append(keys, store.Key{From: m.From, ID: m.ID})
	}
	texts := func() int {
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM sealed_texts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	errs, err := s.MarkDeliveredAll(ctx, append(keys[:2:2], store.Key{From: "alice", ID: "never-sent"}), time.Unix(60, 0))
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], store.ErrNotFound) {
		t.Fatalf("MarkDeliveredAll errors = %v, want nil, nil, not found", errs)
	}
	if n := texts(); n != 1 {
		t.Errorf("%d sealed texts left after marking 2 of 3 delivered, want 1", n)
	}
}
