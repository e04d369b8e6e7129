package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/store/storetest"
	"github.com/sealpost/sealpost/message"
)

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func openAt(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func openTemp(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sealpost.db")
	return openAt(t, path, opts), path
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t, Options{})
		return s
	})
}

func TestConformanceShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		a, path := openTemp(t, Options{})
		return a, openAt(t, path, Options{})
	})
}

// markOne marks one message delivered: a MarkDeliveredAll of one.
func markOne(s *Store, ctx context.Context, from, id string, at time.Time) error {
	return one(s.MarkDeliveredAll(ctx, []store.Key{{From: from, ID: id}}, at))
}

func testMsg(from, to string, n int, sealed []byte) store.Message {
	return store.Message{
		ID:          fmt.Sprintf("%08x-0000-4000-8000-000000000000", n),
		From:        from,
		To:          to,
		Sealed:      sealed,
		KeyPeriod:   7,
		SubmittedAt: t0,
		ExpiresAt:   t0.Add(72 * time.Hour),
	}
}

// checkFor polls cond until it holds or the deadline passes.
func checkFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	return st.Mode().Perm()
}

func TestFileModes(t *testing.T) {
	s, path := openTemp(t, Options{})
	if err := s.CreateAccount(t.Context(), store.Account{Name: "alice", PasswordHash: "h", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if m := mode(t, p); m != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), m)
		}
	}

	t.Run("existing file is tightened", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "loose.db")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o644); err != nil { // whatever the umask did
			t.Fatal(err)
		}
		openAt(t, path, Options{})
		if m := mode(t, path); m != 0o600 {
			t.Errorf("a 0644 database file has mode %v after Open, want 0600", m)
		}
	})
}

func TestDataSurvivesReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sealpost.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, store.Account{Name: "alice", PasswordHash: "h", SIPSecrets: []byte("sip"), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	m, _, err := s.Submit(ctx, testMsg("alice", "bob", 1, []byte("sealed")), 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutDataKey(ctx, 9, []byte("wrapped")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := s.Submit(ctx, testMsg("alice", "bob", 2, []byte("x")), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close: %v, want ErrClosed", err)
	}

	s2 := openAt(t, path, Options{})
	a, err := s2.Account(ctx, "alice")
	if err != nil || string(a.SIPSecrets) != "sip" {
		t.Errorf("account after reopen = %+v, %v", a, err)
	}
	got, err := s2.Message(ctx, "alice", m.ID)
	if err != nil || got.Seq != m.Seq || string(got.Sealed) != "sealed" || !got.ExpiresAt.Equal(m.ExpiresAt) {
		t.Errorf("message after reopen = %+v, %v; want %+v", got, err, m)
	}
	if k, err := s2.DataKey(ctx, 9); err != nil || string(k) != "wrapped" {
		t.Errorf("data key after reopen = %q, %v", k, err)
	}
	// The mailbox count survives too.
	if _, _, err := s2.Submit(ctx, testMsg("carol", "bob", 3, []byte("x")), 1); !errors.Is(err, store.ErrMailboxFull) {
		t.Errorf("Submit into a mailbox full before the restart: %v, want ErrMailboxFull", err)
	}
	var v int
	if err := s2.rdb.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != SchemaVersion {
		t.Errorf("user_version = %d, %v; want %d", v, err, SchemaVersion)
	}
}

// enqueuedRow is an INSERT of message id-1 from alice to bob, enqueued,
// written straight into a table of any schema version so far.
func enqueuedRow(submittedAt, expiresAt int64) string {
	return fmt.Sprintf(`INSERT INTO messages (from_acct, id, to_acct, sealed, key_period, status, submitted_at, expires_at,
		delivered_at, attempts, next_attempt, last_error)
		VALUES ('alice', 'id-1', 'bob', x'01', 7, 'enqueued', %d, %d, 0, 0, 0, '')`, submittedAt, expiresAt)
}

// databaseAt makes a database file at schema version v, as a build of that
// version left it, runs the statements in it, and returns its path.
func databaseAt(t *testing.T, v int, statements ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sealpost.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	steps := append([]string{"PRAGMA journal_mode = WAL"}, migrations[:v]...)
	steps = append(steps, fmt.Sprintf("PRAGMA user_version = %d", v))
	for _, q := range append(steps, statements...) {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return path
}

// TestMigrationFromVersion1: a database written by the first schema opens,
// keeps its messages, and loses only the two indexes step 2 drops.
func TestMigrationFromVersion1(t *testing.T) {
	ctx := t.Context()
	path := databaseAt(t, 1, enqueuedRow(1, 2))
	s := openAt(t, path, Options{})
	if p, err := s.Pending(ctx, "bob", 0, time.Time{}, 10); err != nil || len(p) != 1 || p[0].ID != "id-1" {
		t.Fatalf("Pending after migration = %+v, %v; want the message of version 1", p, err)
	}
	if n, err := s.CountPending(ctx); err != nil || n != 1 {
		t.Errorf("CountPending after migration = %d, %v; want 1", n, err)
	}
	var names []string
	rows, err := s.rdb.Query("SELECT name FROM sqlite_schema WHERE type = 'index' AND name IN ('messages_to', 'reports_recipient')")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	rows.Close()
	if len(names) != 0 {
		t.Errorf("indexes left after step 2: %v", names)
	}
	if list, err := s.Messages(ctx, store.MessageFilter{Account: "bob"}); err != nil || len(list) != 1 {
		t.Errorf("operator listing by account = %d messages, %v; want 1", len(list), err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sealpost.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = Open(path, Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a database from a newer build")
	}
	if !bytes.Contains([]byte(err.Error()), []byte("newer")) {
		t.Errorf("error does not say the schema is newer: %v", err)
	}
}

func TestPragmas(t *testing.T) {
	s, _ := openTemp(t, Options{})
	// The writer connection is the one whose settings make deletions
	// secure; read them there. synchronous is NORMAL (1): the syncer, not
	// the commit, fsyncs the WAL (TestNoAnswerBeforeFsync).
	want := map[string]int{"synchronous": 1, "secure_delete": 1, "foreign_keys": 1, "temp_store": 2}
	for name, w := range want {
		var got int
		err := s.do(t.Context(), true, func(wr *writer) error {
			return wr.conn.QueryRowContext(wr.ctx, "PRAGMA "+name).Scan(&got)
		})
		if err != nil || got != w {
			t.Errorf("PRAGMA %s = %d, %v; want %d", name, got, err, w)
		}
	}
	var jm string
	if err := s.rdb.QueryRow("PRAGMA journal_mode").Scan(&jm); err != nil || jm != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", jm, err)
	}
}

// blockWriter parks the writer goroutine in a solo op until the returned
// release is called, so that the test can queue ops that then run as one
// batch.
func blockWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	parked, unpark := make(chan struct{}), make(chan struct{})
	go s.do(context.Background(), true, func(*writer) error {
		close(parked)
		<-unpark
		return nil
	})
	<-parked
	var once sync.Once
	release = func() { once.Do(func() { close(unpark) }) }
	t.Cleanup(release)
	return release
}

// inOneBatch runs ops in one batch, in the order given, behind a blocked
// writer, and returns each one's answer.
func inOneBatch(t *testing.T, s *Store, ops ...func() error) []error {
	t.Helper()
	release := blockWriter(t, s)
	errc := make([]chan error, len(ops))
	for i, op := range ops {
		errc[i] = make(chan error, 1)
		go func() { errc[i] <- op() }()
		checkFor(t, fmt.Sprintf("op %d queued", i), func() bool { return len(s.ops) == i+1 })
	}
	release()
	errs := make([]error, len(ops))
	for i := range errc {
		errs[i] = <-errc[i]
	}
	return errs
}

func TestBatchIsolatesFailures(t *testing.T) {
	ctx := t.Context()
	var mu sync.Mutex
	var sizes []int
	s, _ := openTemp(t, Options{OnCommit: func(n int, _ time.Duration) {
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
	}})
	release := blockWriter(t, s)

	type result struct {
		created bool
		err     error
	}
	results := make([]result, 6)
	var wg sync.WaitGroup
	queue := func(i int, f func() (bool, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := f()
			results[i] = result{c, err}
		}()
		// Queue in a known order: wait until this op is in the channel.
		checkFor(t, fmt.Sprintf("op %d queued", i), func() bool { return len(s.ops) == i+1 })
	}
	submit := func(m store.Message) func() (bool, error) {
		return func() (bool, error) {
			_, c, err := s.Submit(ctx, m, 2)
			return c, err
		}
	}
	queue(0, submit(testMsg("alice", "bob", 1, []byte("one"))))
	queue(1, submit(testMsg("carol", "bob", 2, []byte("two"))))
	queue(2, submit(testMsg("dave", "bob", 3, []byte("three")))) // third in a mailbox of 2, counted within the batch
	queue(3, func() (bool, error) { return false, markOne(s, ctx, "nobody", "none", t0) })
	queue(4, submit(testMsg("alice", "bob", 1, []byte("retry")))) // sees op 0's uncommitted write
	// An op that fails after writing: its savepoint must undo the write.
	boom := errors.New("boom after a write")
	queue(5, func() (bool, error) {
		return false, s.do(ctx, false, func(w *writer) error {
			if _, err := w.conn.ExecContext(w.ctx, "INSERT INTO accounts (name, password_hash, created_at) VALUES ('ghost', 'h', 0)"); err != nil {
				return err
			}
			return boom
		})
	})
	release()
	wg.Wait()

	if !results[0].created || results[0].err != nil || !results[1].created || results[1].err != nil {
		t.Errorf("the two first submits = %+v %+v, want created", results[0], results[1])
	}
	if !errors.Is(results[2].err, store.ErrMailboxFull) {
		t.Errorf("third submit into a mailbox of 2 in the same batch: %v, want ErrMailboxFull", results[2].err)
	}
	if !errors.Is(results[3].err, store.ErrNotFound) {
		t.Errorf("MarkDelivered(unknown) in the batch: %v, want ErrNotFound", results[3].err)
	}
	if results[4].err != nil || results[4].created {
		t.Errorf("retry in the same batch = %+v, want the existing message", results[4])
	}
	if !errors.Is(results[5].err, boom) {
		t.Errorf("failing op: %v, want its own error", results[5].err)
	}
	if _, err := s.Account(ctx, "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the write of a failed op was committed with its batch: %v", err)
	}
	// OnCommit runs on the writer after it hands the batch to the
	// syncer, which may answer the ops first.
	var got []int
	checkFor(t, "the batch counted", func() bool {
		mu.Lock()
		got = append([]int(nil), sizes...)
		mu.Unlock()
		return len(got) > 0
	})
	if len(got) != 1 || got[0] != 6 {
		t.Errorf("batches = %v, want one batch of 6", got)
	}
	p, err := s.Pending(ctx, "bob", 0, time.Time{}, 0)
	if err != nil || len(p) != 2 || string(p[0].Sealed) != "one" || string(p[1].Sealed) != "two" {
		t.Errorf("Pending(bob) = %d messages, %v; want one and two", len(p), err)
	}
	if _, err := s.Message(ctx, "dave", testMsg("", "", 3, nil).ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused message was written: %v", err)
	}
}

func TestAbandonedWriteIsNotMade(t *testing.T) {
	s, _ := openTemp(t, Options{})
	release := blockWriter(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	m := testMsg("alice", "bob", 1, []byte("x"))
	go func() {
		_, _, err := s.Submit(ctx, m, 0)
		errc <- err
	}()
	checkFor(t, "submit queued", func() bool { return len(s.ops) == 1 })
	cancel()
	release()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit cancelled before it ran: %v, want context.Canceled", err)
	}
	if _, err := s.Message(t.Context(), m.From, m.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a write abandoned before it ran was made: %v", err)
	}
}

// TestCloseDrains: every write answered nil before or during Close is
// durable; every write refused with ErrClosed was not made.
func TestCloseDrains(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sealpost.db")
	s, err := Open(path, Options{MaxBatch: 16})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	errs := make([]error, n)
	var done sync.WaitGroup
	var answered sync.WaitGroup
	answered.Add(20)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			_, _, errs[i] = s.Submit(ctx, testMsg(fmt.Sprintf("s%03d", i), "bob", i, []byte("x")), 0)
			if i < 20 {
				answered.Done()
			}
		}()
	}
	answered.Wait() // Close while the rest are queued or still arriving
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	done.Wait()

	s2 := openAt(t, path, Options{})
	var ok, refused int
	for i, e := range errs {
		_, err := s2.Message(ctx, fmt.Sprintf("s%03d", i), testMsg("", "", i, nil).ID)
		switch {
		case e == nil:
			ok++
			if err != nil {
				t.Errorf("submit %d was answered nil but is not stored after reopen: %v", i, err)
			}
		case errors.Is(e, ErrClosed):
			refused++
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("submit %d was refused with ErrClosed but is stored: %v", i, err)
			}
		default:
			t.Errorf("submit %d: unexpected error %v", i, e)
		}
	}
	t.Logf("%d submits committed, %d refused after Close", ok, refused)
	if ok < 20 {
		t.Errorf("only %d submits committed, want at least the 20 answered before Close", ok)
	}
}

// TestSecureDelete: once a message is delivered or expired, its data key
// destroyed, and the WAL checkpointed, none of their bytes is left in the
// database or WAL file.
func TestSecureDelete(t *testing.T) {
	ctx := t.Context()
	s, path := openTemp(t, Options{})
	canary := func(tag string) []byte {
		return bytes.Repeat([]byte("CANARY-"+tag+"-9f2c71e0-"), 8)
	}
	delivered, expired, key := canary("DELIVERED"), canary("EXPIRED"), canary("DATAKEY")
	kept := canary("KEPT")

	m1, _, err := s.Submit(ctx, testMsg("alice", "bob", 1, delivered), 0)
	if err != nil {
		t.Fatal(err)
	}
	short := testMsg("alice", "carol", 2, expired)
	short.ExpiresAt = t0.Add(time.Hour)
	if _, _, err := s.Submit(ctx, short, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Submit(ctx, testMsg("dave", "bob", 3, kept), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutDataKey(ctx, 1, key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutDataKey(ctx, 5, []byte("live key")); err != nil {
		t.Fatal(err)
	}

	files := func() []byte {
		var all []byte
		for _, suffix := range []string{"", "-wal", "-shm"} {
			b, err := os.ReadFile(path + suffix)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		return all
	}
	// The search must be able to fail: before the deletions every canary
	// is on disk.
	before := files()
	for _, c := range [][]byte{delivered, expired, key, kept} {
		if !bytes.Contains(before, c) {
			t.Fatalf("canary %.20q not found on disk before deletion; the test cannot see what it checks", c)
		}
	}

	if err := markOne(s, ctx, "alice", m1.ID, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ExpireDue(ctx, t0.Add(time.Hour)); err != nil || len(got) != 1 {
		t.Fatalf("ExpireDue = %d, %v; want 1", len(got), err)
	}
	if n, err := s.DeleteDataKeys(ctx, 2); err != nil || n != 1 {
		t.Fatalf("DeleteDataKeys = %d, %v; want 1", n, err)
	}
	// DeleteDataKeys checkpoints by itself; run one more so the expired
	// and delivered texts' old WAL frames are gone regardless.
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	after := files()
	for name, c := range map[string][]byte{"delivered text": delivered, "expired text": expired, "destroyed data key": key} {
		if bytes.Contains(after, c) {
			t.Errorf("the %s is still in the database files after deletion and checkpoint", name)
		}
	}
	if !bytes.Contains(after, kept) {
		t.Errorf("the text of a message still enqueued is missing from the database file")
	}
	if st, err := os.Stat(path + "-wal"); err == nil && st.Size() != 0 {
		t.Errorf("WAL is %d bytes after a TRUNCATE checkpoint, want 0", st.Size())
	}
}

func TestDeleteDataKeysCheckpoints(t *testing.T) {
	ctx := t.Context()
	s, path := openTemp(t, Options{})
	key := bytes.Repeat([]byte("KEY-5e1d-"), 8)
	if _, err := s.PutDataKey(ctx, 1, key); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteDataKeys(ctx, 2); err != nil || n != 1 {
		t.Fatalf("DeleteDataKeys = %d, %v", n, err)
	}
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(b, key) {
			t.Errorf("destroyed key still in %s right after DeleteDataKeys", filepath.Base(path+suffix))
		}
	}
}

// TestFailedBatchAnswersEveryone: when a write fails in a way that may have
// rolled back the transaction, no op of its batch is answered nil and none
// of their writes is stored.
func TestFailedBatchAnswersEveryone(t *testing.T) {
	ctx := t.Context()
	s, _ := openTemp(t, Options{})
	m := testMsg("alice", "bob", 1, []byte("x"))
	broken := errors.New("disk I/O error (simulated)")
	for _, err := range inOneBatch(t, s,
		func() error { _, _, err := s.Submit(ctx, m, 0); return err },
		func() error { return s.doAtomic(ctx, func(*writer) error { return broken }) }) {
		if err == nil {
			t.Errorf("an op of a failed batch was answered nil")
		}
	}
	if _, err := s.Message(ctx, m.From, m.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a write of a failed batch is stored: %v", err)
	}
	// The writer carries on with the next batch.
	if _, _, err := s.Submit(ctx, m, 0); err != nil {
		t.Errorf("Submit after a failed batch: %v", err)
	}
}

// TestOddPath: the path reaches SQLite as a file: URI, so characters that
// mean something in a URI must be escaped, not interpreted.
func TestOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data dir?mode=ro#x%41")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sealpost.db")
	s := openAt(t, path, Options{})
	if err := s.CreateAccount(t.Context(), store.Account{Name: "alice", PasswordHash: "h", CreatedAt: t0}); err != nil {
		t.Fatalf("writing to a database under %q: %v", dir, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the database is not at the path given: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Errorf("files were created outside the given folder: %v", entries)
	}
}

// heldFsyncs returns store options under which every fsync of the WAL
// signals entered, then waits until release is called (once or more); no
// timed or idle checkpoint ends a batch being gathered.
func heldFsyncs() (opts Options, entered chan struct{}, release func()) {
	entered = make(chan struct{}, 16)
	unblock := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(unblock) }) }
	opts = Options{
		CheckpointTick: time.Hour,
		fsync: func(f *os.File) error {
			entered <- struct{}{}
			<-unblock
			return f.Sync()
		},
	}
	return opts, entered, release
}

// TestNoAnswerBeforeFsync: a committed batch is answered only after the
// -wal file's fsync returns, and ops arriving during that fsync gather in the
// next transaction, committed as one batch once the disk is free.
func TestNoAnswerBeforeFsync(t *testing.T) {
	ctx := t.Context()
	var mu sync.Mutex
	var sizes []int
	opts, entered, release := heldFsyncs()
	opts.OnCommit = func(n int, _ time.Duration) { mu.Lock(); sizes = append(sizes, n); mu.Unlock() }
	s, path := openTemp(t, opts)
	t.Cleanup(release) // runs before Close, which would wait for the fsync
	commits := func() []int { mu.Lock(); defer mu.Unlock(); return slices.Clone(sizes) }

	answers := make(chan error, 4)
	submit := func(n int) {
		go func() {
			_, _, err := s.Submit(ctx, testMsg("alice", "bob", n, []byte("text")), 0)
			answers <- err
		}()
	}
	submit(0)
	<-entered // the first batch has committed and its fsync has begun
	ran := make(chan int, 3)
	for n := 1; n <= 3; n++ {
		go func() {
			answers <- s.do(ctx, false, func(w *writer) error {
				ran <- n // inside the writer's open transaction
				return nil
			})
		}()
	}
	for range 3 {
		<-ran
	}
	if got := commits(); !slices.Equal(got, []int{1}) {
		t.Fatalf("commits during the first fsync: %v; want only the first batch [1]", got)
	}
	select {
	case err := <-answers:
		t.Fatalf("Submit answered (%v) before the fsync covering it returned", err)
	default:
	}
	release()
	for range 4 {
		if err := <-answers; err != nil {
			t.Fatalf("Submit: %v", err)
		}
	}
	// The writer reports a commit after handing the batch to the syncer,
	// which may answer its callers before that report is made.
	checkFor(t, "the second commit to be reported", func() bool { return len(commits()) >= 2 })
	if got := commits(); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("batches committed: %v; want [1 3] (the three ops of the busy time together)", got)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("the fsynced file: %v", err)
	}
}

// TestFsyncFailureStopsWrites: after a failed fsync nothing more is
// acknowledged (the kernel may have dropped the pages it could not write),
// and readiness says so.
func TestFsyncFailureStopsWrites(t *testing.T) {
	ctx := t.Context()
	broken := errors.New("injected EIO")
	var fail sync.Once
	s, _ := openTemp(t, Options{fsync: func(f *os.File) error {
		var err error
		fail.Do(func() { err = broken })
		if err != nil {
			return err
		}
		return f.Sync()
	}})
	_, _, err := s.Submit(ctx, testMsg("alice", "bob", 1, []byte("one")), 0)
	if !errors.Is(err, broken) {
		t.Fatalf("Submit with a failing fsync = %v; want the fsync error", err)
	}
	_, _, err = s.Submit(ctx, testMsg("alice", "bob", 2, []byte("two")), 0)
	if !errors.Is(err, errSyncFailed) {
		t.Fatalf("Submit after a failed fsync = %v; want it refused", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping after a failed fsync = nil; want the store reported unready")
	}
}

// TestCheckpointsBesideTheWriter: the writer's connection never checkpoints
// (wal_autocheckpoint 0); after checkpointEvery writes the checkpointer
// copies the WAL into the database file on its own.
func TestCheckpointsBesideTheWriter(t *testing.T) {
	ctx := t.Context()
	s, path := openTemp(t, Options{})
	var auto int
	if err := s.do(ctx, true, func(w *writer) error {
		return w.conn.QueryRowContext(w.ctx, "PRAGMA wal_autocheckpoint").Scan(&auto)
	}); err != nil || auto != 0 {
		t.Fatalf("writer's wal_autocheckpoint = %d, %v; want 0", auto, err)
	}
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := g; n < checkpointEvery+16; n += 16 {
				if _, _, err := s.Submit(ctx, testMsg("alice", "bob", n, []byte("sealed text")), 0); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	checkFor(t, "the database file grows by a checkpoint", func() bool { return size() > before })
}

// TestMigrationFromVersion2: a message enqueued under schema 2 and delivered
// after the upgrade gets its report from trigger report_delivered.
func TestMigrationFromVersion2(t *testing.T) {
	ctx := t.Context()
	path := databaseAt(t, 2, enqueuedRow(1000, 5000))
	s := openAt(t, path, Options{})
	at := time.Unix(0, 3000)
	if err := markOne(s, ctx, "alice", "id-1", at); err != nil {
		t.Fatalf("MarkDelivered after migration: %v", err)
	}
	reports, err := s.PendingReports(ctx, "alice", 10)
	if err != nil || len(reports) != 1 {
		t.Fatalf("reports for alice = %+v, %v; want one", reports, err)
	}
	if r := reports[0]; r.MessageID != "id-1" || r.Recipient != "bob" || !r.At.Equal(at) || !r.ExpiresAt.Equal(time.Unix(0, 7000)) {
		t.Errorf("report = %+v; want id-1 for bob at %v expiring at 7000 ns (delivery + the 4000 ns lifetime)", r, at)
	}
}

// TestMigrationFromVersion3: a message enqueued under schema 3, with an
// attempt recorded, reads back unparked with its schedule after step 4,
// is listed only when due, and can be parked.
func TestMigrationFromVersion3(t *testing.T) {
	ctx := t.Context()
	path := databaseAt(t, 3, enqueuedRow(1000, 5000_000_000_000),
		"UPDATE messages SET attempts = 2, next_attempt = 3000, last_error = 'timeout' WHERE id = 'id-1'")
	s := openAt(t, path, Options{})
	m, err := s.Message(ctx, "alice", "id-1")
	if err != nil {
		t.Fatalf("Message after migration: %v", err)
	}
	if m.Attempts != 2 || !m.NextAttempt.Equal(time.Unix(0, 3000)) || m.LastError != "timeout" || m.Parked {
		t.Errorf("message after migration = %+v; want attempts 2, next 3000 ns, error timeout, not parked", m)
	}
	for _, c := range []struct {
		due  int64
		want int
	}{{2999, 0}, {3000, 1}} {
		if p, err := s.Pending(ctx, "bob", 0, time.Unix(0, c.due), 0); err != nil || len(p) != c.want {
			t.Errorf("Pending(due %d ns) after migration = %d messages, %v; want %d", c.due, len(p), err, c.want)
		}
	}
	a := store.Attempt{Key: store.Key{From: "alice", ID: "id-1"}, Attempts: 3, Next: time.Unix(0, 4000), LastError: "connection", Parked: true}
	if err := s.RecordAttempt(ctx, a); err != nil {
		t.Fatalf("RecordAttempt(parked) after migration: %v", err)
	}
	if p, err := s.Pending(ctx, "bob", 0, time.Time{}, 0); err != nil || len(p) != 0 {
		t.Errorf("Pending after parking = %d messages, %v; want none", len(p), err)
	}
}

// TestMarkFailingInATriggerFailsItsBatch: the delivered mark runs OR
// ROLLBACK, without a statement journal. A constraint failing in one of its
// triggers must still leave nothing of it (the message enqueued with its
// text, no report) and fail its whole batch, as any error of an atomic op
// does; the writer then carries on.
func TestMarkFailingInATriggerFailsItsBatch(t *testing.T) {
	ctx := t.Context()
	s, _ := openTemp(t, Options{})
	m1 := testMsg("alice", "bob", 1, []byte("one"))
	if _, _, err := s.Submit(ctx, m1, 0); err != nil {
		t.Fatal(err)
	}
	// Trigger mailbox_out will take bob's count below 0: CHECK fails.
	if err := s.do(ctx, false, func(w *writer) error {
		_, err := w.conn.ExecContext(w.ctx, "UPDATE mailboxes SET pending = 0 WHERE account = 'bob'")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	m2 := testMsg("carol", "dave", 2, []byte("two"))
	for _, err := range inOneBatch(t, s,
		func() error { _, _, err := s.Submit(ctx, m2, 0); return err },
		func() error { return markOne(s, ctx, m1.From, m1.ID, t0.Add(time.Minute)) }) {
		if err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("an op of the batch with the failed mark = %v, want a store failure", err)
		}
	}
	got, err := s.Message(ctx, m1.From, m1.ID)
	if err != nil || got.Status != message.Enqueued || string(got.Sealed) != "one" {
		t.Errorf("message after its failed mark = %+v, %v; want enqueued with its text", got, err)
	}
	var reports int
	if err := s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM reports").Scan(&reports); err != nil || reports != 0 {
		t.Errorf("reports after a failed mark = %d, %v; want 0", reports, err)
	}
	if _, err := s.Message(ctx, m2.From, m2.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the submission batched with the failed mark is stored: %v", err)
	}
	// With the count put right, the same mark goes through.
	if err := s.do(ctx, false, func(w *writer) error {
		_, err := w.conn.ExecContext(w.ctx, "UPDATE mailboxes SET pending = 1 WHERE account = 'bob'")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := markOne(s, ctx, m1.From, m1.ID, t0.Add(time.Minute)); err != nil {
		t.Errorf("mark after the failed batch: %v", err)
	}
	if got, err := s.Message(ctx, m1.From, m1.ID); err != nil || got.Status != message.Delivered || got.Sealed != nil {
		t.Errorf("message after its mark = %+v, %v; want delivered without text", got, err)
	}
}

// TestMarkWaitsForCompany: a batch of delivered marks only waits (up to
// MarkLinger) for another write, which then shares its commit; the mark is
// answered only with that batch, once it is on disk. A submission ends the
// wait at once.
func TestMarkWaitsForCompany(t *testing.T) {
	ctx := t.Context()
	var mu sync.Mutex
	var sizes []int
	s, _ := openTemp(t, Options{MarkLinger: time.Hour, OnCommit: func(n int, _ time.Duration) {
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
	}})
	batches := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), sizes...)
	}
	m1 := testMsg("alice", "bob", 1, []byte("one"))
	if _, _, err := s.Submit(ctx, m1, 0); err != nil {
		t.Fatal(err)
	}
	checkFor(t, "the submission counted", func() bool { return len(batches()) == 1 })
	release := blockWriter(t, s)
	marked := make(chan error, 1)
	go func() { marked <- markOne(s, ctx, m1.From, m1.ID, t0.Add(time.Minute)) }()
	checkFor(t, "the mark queued", func() bool { return len(s.ops) == 1 })
	release()
	checkFor(t, "the writer took the mark", func() bool { return len(s.ops) == 0 })
	// Had the mark not waited, it would be a batch of its own: the
	// batch sizes below tell.
	m2 := testMsg("carol", "bob", 2, []byte("two"))
	if _, _, err := s.Submit(ctx, m2, 0); err != nil {
		t.Fatalf("Submit while a mark waits: %v", err)
	}
	if err := <-marked; err != nil {
		t.Fatalf("mark: %v", err)
	}
	// Batches (a solo op, which parked the writer, is none): the
	// submission, then the mark with the second submission.
	checkFor(t, "the second batch counted", func() bool { return len(batches()) == 2 })
	if got := batches(); got[1] != 2 {
		t.Errorf("batches = %v, want the mark and the submission in one batch of 2", got)
	}
	if got, err := s.Message(ctx, m1.From, m1.ID); err != nil || got.Status != message.Delivered || got.Sealed != nil {
		t.Errorf("marked message = %+v, %v; want delivered without text", got, err)
	}
}

// TestMarkAloneIsWritten: a mark that no other write joins is written
// after MarkLinger, and one still waiting when the store closes is written
// by Close.
func TestMarkAloneIsWritten(t *testing.T) {
	ctx := t.Context()
	s, _ := openTemp(t, Options{MarkLinger: 10 * time.Millisecond})
	m := testMsg("alice", "bob", 1, []byte("one"))
	if _, _, err := s.Submit(ctx, m, 0); err != nil {
		t.Fatal(err)
	}
	if err := markOne(s, ctx, m.From, m.ID, t0.Add(time.Minute)); err != nil {
		t.Fatalf("mark alone: %v", err)
	}
	if got, err := s.Message(ctx, m.From, m.ID); err != nil || got.Status != message.Delivered {
		t.Errorf("message after a mark alone = %+v, %v; want delivered", got, err)
	}

	path := filepath.Join(t.TempDir(), "sealpost.db")
	s2, err := Open(path, Options{MarkLinger: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s2.Submit(ctx, m, 0); err != nil {
		t.Fatal(err)
	}
	release := blockWriter(t, s2)
	marked := make(chan error, 1)
	go func() { marked <- markOne(s2, ctx, m.From, m.ID, t0.Add(time.Minute)) }()
	checkFor(t, "the mark queued", func() bool { return len(s2.ops) == 1 })
	release()
	checkFor(t, "the writer took the mark", func() bool { return len(s2.ops) == 0 })
	if err := s2.Close(); err != nil {
		t.Fatalf("Close with a mark waiting: %v", err)
	}
	if err := <-marked; err != nil {
		t.Fatalf("mark waiting at Close: %v", err)
	}
	s3 := openAt(t, path, Options{})
	if got, err := s3.Message(ctx, m.From, m.ID); err != nil || got.Status != message.Delivered {
		t.Errorf("message marked during Close, after reopen = %+v, %v; want delivered", got, err)
	}
}

// SubmitEarly tells the caller where a new message stands once it is
// written, while its fsync is still under way, and Submit answers only
// after the fsync; a message that was not stored (a repeat, a full mailbox)
// is never told.
func TestSubmitEarlyTellsBeforeTheFsync(t *testing.T) {
	ctx := t.Context()
	opts, entered, release := heldFsyncs()
	s, _ := openTemp(t, opts)
	t.Cleanup(release) // runs before Close, which would wait for the fsync

	m := testMsg("alice", "bob", 1, []byte("sealed"))
	m.WantPendingBefore = true
	written := make(chan store.Message, 1)
	type answer struct {
		m       store.Message
		created bool
		err     error
	}
	answers := make(chan answer, 1)
	go func() {
		st, created, err := s.SubmitEarly(ctx, m, 2, func(w store.Message) { written <- w })
		answers <- answer{st, created, err}
	}()
	w := <-written
	<-entered
	select {
	case a := <-answers:
		t.Fatalf("Submit answered (%v) before its fsync returned", a.err)
	default:
	}
	if w.Seq == 0 || w.PendingBefore != 0 || string(w.Sealed) != "sealed" || w.ID != m.ID {
		t.Fatalf("told %+v; want the stored message with its seq and sealed text, nothing pending before it", w)
	}
	release()
	a := <-answers
	if a.err != nil || !a.created || a.m.Seq != w.Seq {
		t.Fatalf("Submit: seq %d created %v err %v; want seq %d created", a.m.Seq, a.created, a.err, w.Seq)
	}

	tell := func(m store.Message) (bool, error) {
		told := false
		_, _, err := s.SubmitEarly(ctx, m, 2, func(store.Message) { told = true })
		return told, err
	}
	if told, err := tell(m); told || err != nil {
		t.Fatalf("a repeat of the message: told %v, err %v; want not told, no error", told, err)
	}
	second := testMsg("carol", "bob", 2, []byte("sealed"))
	second.WantPendingBefore = true
	var before int
	if _, _, err := s.SubmitEarly(ctx, second, 2, func(w store.Message) { before = w.PendingBefore }); err != nil || before != 1 {
		t.Fatalf("a second message: pending before %d, err %v; want 1", before, err)
	}
	if told, err := tell(testMsg("dave", "bob", 3, []byte("sealed"))); told || !errors.Is(err, store.ErrMailboxFull) {
		t.Fatalf("past the mailbox bound: told %v, err %v; want not told, ErrMailboxFull", told, err)
	}
}
