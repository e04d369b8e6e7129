// Package sqlite is the embedded store.Store backend: one SQLite file in the
// server's data folder, written through a single group-commit writer.
//
// Life cycle: Open creates the file (0600), applies the schema migrations
// recorded in PRAGMA user_version, and starts three goroutines. The writer
// (writer.go) runs every write (Submit, MarkDeliveredAll, …) in batches, one
// transaction per batch (group commit), and commits without waiting for the
// disk; the syncer (durable.go) then fsyncs the WAL and only after that
// answers the batch's callers, while the writer already fills the next
// batch; the checkpointer (checkpoint.go) copies the WAL into the database
// file beside them. One operation's failure (ErrMailboxFull, ErrExists,
// ErrNotFound) undoes only that operation: a write of several statements
// runs inside its own SAVEPOINT; a write of one statement (Submit is one
// INSERT) needs none, since SQLite applies a statement whole or not at all.
// A database error that may have undone the transaction, or a failed
// commit, fails every operation of the batch and nothing of it is written;
// a failed fsync stops all writes until a restart. Reads run on a separate
// pool of read-only connections, concurrently with the writer (WAL mode).
// Close commits and answers every write already queued, then refuses new
// ones with ErrClosed.
//
// Shredding: secure_delete is on, so deleted sealed text and data keys are
// overwritten in the database pages; their old page images in the -wal file
// are removed by Checkpoint, which DeleteDataKeys runs after destroying keys.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"modernc.org/sqlite" // also registers the pure-Go "sqlite" driver

	"github.com/sealpost/sealpost/internal/store"
)

// ErrClosed is returned by writes made after Close.
var ErrClosed = errors.New("sqlite store: closed; the write was not made")

// Options tune the store. The zero value is the production setting.
type Options struct {
	// MaxBatch bounds how many write operations share one transaction and
	// so one fsync (group commit). A batch closes when nothing more is
	// waiting and the disk has finished the previous batch's fsync, or at
	// MaxBatch. 0 means 256.
	MaxBatch int
	// QueueLen is how many write operations may wait for the writer before
	// callers block; it lets a full next batch gather while the current one
	// commits. 0 means 4 × MaxBatch.
	QueueLen int
	// ReadConns is the number of read connections. 0 means
	// max(4, 2 × GOMAXPROCS).
	ReadConns int
	// BusyTimeout is how long a connection waits for a lock held by another
	// process or by a checkpoint before it fails. 0 means 5 s.
	BusyTimeout time.Duration
	// Logger receives operational problems (never message text); nil
	// discards them.
	Logger *slog.Logger

	// OnCommit, if set, is called by the writer goroutine after every
	// batch, with the number of writes it held and how long its
	// transaction was open (its statements, the wait for the previous
	// fsync while it gathered more writes, and the commit). OnSync is
	// called by the syncer after every fsync of the WAL with its duration.
	// Both must be quick. The server feeds its metrics with them.
	OnCommit func(ops int, took time.Duration)
	OnSync   func(took time.Duration)
	// OnWriteFailure is called for every write batch that failed on the
	// database (not on a caller's own error such as ErrExists), and
	// OnReadFailure for every read that met damage or an I/O error. The
	// log gets one line when each starts; these feed the counters.
	OnWriteFailure func()
	OnReadFailure  func()

	// StartCheck is for the process that serves from the store: it runs
	// the integrity check (integrity.go) before opening and refuses a
	// damaged store with an error wrapping ErrDamaged, then starts from a
	// truncated WAL, probes a write and makes the disk reserve. Commands
	// that run beside a serving server leave it off: the server checked
	// at its start, and a TRUNCATE checkpoint from a second process would
	// hold up the server's writer.
	StartCheck bool
	// ReserveBytes is the size of the disk reserve (reserve.go). 0 means
	// 8 MiB; negative means none.
	ReserveBytes int64
	// CheckpointTick is how often the checkpointer looks for an idle
	// writer or an old WAL (checkpoint.go). 0 means 1 s.
	CheckpointTick time.Duration
	// MarkLinger is how long a batch holding only delivered marks waits
	// for another write to share its commit and fsync, while submissions
	// arrive (one committed within 20 × MarkLinger; writer.go). 0 means
	// 5 ms; negative means no wait.
	MarkLinger time.Duration

	// fsync, set only by this package's tests, replaces syncData
	// for the -wal file.
	fsync func(*os.File) error
}

func (o Options) withDefaults() Options {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.QueueLen <= 0 {
		o.QueueLen = 4 * o.MaxBatch
	}
	if o.ReadConns <= 0 {
		o.ReadConns = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReserveBytes == 0 {
		o.ReserveBytes = defaultReserveBytes
	}
	if o.CheckpointTick <= 0 {
		o.CheckpointTick = time.Second
	}
	if o.MarkLinger == 0 {
		o.MarkLinger = defaultMarkLinger
	}
	return o
}

// Store is the SQLite backend. Its methods are safe for concurrent use.
type Store struct {
	path string
	opts Options
	log  *slog.Logger

	wdb *sql.DB // one connection, used only by the writer goroutine
	w   *writer
	rdb *sql.DB // read-only pool
	rs  readStmts

	ckpt    *checkpointer
	health  health
	reserve reserve
	// lastRescue is when the writer last ran rescue (diskfull.go); used
	// only by the writer goroutine.
	lastRescue time.Time

	ops    chan *op      // writes waiting for the writer goroutine
	syncer syncer        // answers committed batches after their fsync
	done   chan struct{} // closed when the writer and the syncer have exited

	// mu is held shared while an op is queued and exclusively by Close, so
	// that Close never closes ops while a sender is using it.
	mu     sync.RWMutex
	closed bool // guarded by mu
}

// Open opens (creating if needed) the database at path and starts its
// writer. The caller owns the folder; the database file and its -wal and
// -shm companions are made 0600 here whatever the folder or umask allow,
// because they hold wrapped data keys, password hashes and sealed text.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: resolving path %q: %w", path, err)
	}
	// Create the file ourselves so that it is never, even briefly, readable
	// by others; an existing file is tightened to 0600.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: creating database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite store: creating database file: %w", err)
	}
	if err := os.Chmod(abs, 0o600); err != nil {
		return nil, fmt.Errorf("sqlite store: making database file 0600: %w", err)
	}

	s := &Store{
		path:    abs,
		opts:    opts,
		log:     opts.Logger,
		ops:     make(chan *op, opts.QueueLen),
		done:    make(chan struct{}),
		reserve: reserve{path: abs + "-reserve", size: max(opts.ReserveBytes, 0)},
	}
	s.health = health{log: opts.Logger, onWriteFailure: opts.OnWriteFailure, onReadFailure: opts.OnReadFailure}
	if opts.StartCheck {
		if err := startCheck(abs); err != nil {
			return nil, err
		}
	}
	// A start on a full disk: give the reserve back first, so that SQLite
	// has room to open the WAL and the start checkpoint room to run.
	if opts.StartCheck && s.reserve.size > 0 && s.reserve.needRoom() {
		if released, err := s.reserve.release(); err != nil {
			s.log.Warn("the disk is nearly full and the reserve could not be released", "err", err)
		} else if released {
			s.log.Warn("the disk is nearly full: released the store's disk reserve to start", "file", s.reserve.path)
		}
	}
	s.syncer.walPath = abs + "-wal"
	s.syncer.wake = make(chan struct{}, 1)
	s.syncer.onSync = opts.OnSync
	s.syncer.fsync = opts.fsync
	if s.syncer.fsync == nil {
		s.syncer.fsync = syncData
	}
	if err := s.openWriter(); err != nil {
		return nil, err
	}
	if opts.StartCheck {
		s.startHousekeeping()
	}
	if err := s.openReaders(); err != nil {
		s.w.close()
		s.wdb.Close()
		return nil, err
	}
	// SQLite creates -wal and -shm with the mode of the database file, but
	// a file left by an older run may be looser: tighten whatever exists.
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Chmod(abs+suffix, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.w.close()
			s.wdb.Close()
			s.rs.close()
			s.rdb.Close()
			return nil, fmt.Errorf("sqlite store: making %s 0600: %w", abs+suffix, err)
		}
	}
	if err := s.startCheckpointer(); err != nil {
		s.w.close()
		s.wdb.Close()
		s.rs.close()
		s.rdb.Close()
		return nil, err
	}
	go s.run()
	return s, nil
}

// dsn builds the driver's data source name. The _pragma parameters are run by
// the driver on every new connection, so a connection the pool reopens gets
// the same settings.
func (s *Store) dsn(pragmas ...string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", s.opts.BusyTimeout.Milliseconds()))
	// Temporary files (sorts, statement journals) stay in memory so that no
	// sealed text is spilled into a file outside the database.
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Add("_pragma", "secure_delete(ON)")
	q.Add("_pragma", "foreign_keys(ON)")
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	u := url.URL{Scheme: "file", Path: s.path}
	return u.String() + "?" + q.Encode()
}

func (s *Store) openWriter() error {
	db, err := sql.Open("sqlite", s.dsn(
		"journal_mode(WAL)",
		// NORMAL: a commit does not wait for the disk; the syncer
		// fsyncs the WAL after it and only then answers the batch
		// (durable.go), so a 202 still survives a power cut.
		"synchronous(NORMAL)",
		// After a checkpoint resets the WAL, shrink it back so a burst
		// does not leave a huge file (holding old page images) behind.
		"journal_size_limit(67108864)",
		// Checkpoints run on their own connection (checkpoint.go).
		"wal_autocheckpoint(0)",
		// 16 MiB of page cache (the default is 2 MiB): the index
		// pages a batch touches stay in memory instead of being read
		// back from the file. Not more: when a B-tree page splits,
		// SQLite parks a page under a page number past the end of the
		// file (balance_nonroot → sqlite3PagerRekey), and the commit
		// then scans the cache's whole hash table to drop it, so every
		// commit costs time in proportion to the cache size. At 64 MiB
		// that was 3 % of the server's CPU in the relay scenario and
		// 4.6 % of BenchmarkSubmitParallel; at 16 MiB 1.7 %, with store
		// throughput 15,917 msg/s against 15,678 (sealbench store,
		// median of 3).
		"cache_size(-16384)",
	))
	if err != nil {
		return fmt.Errorf("sqlite store: opening %s: %w", s.path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return fmt.Errorf("sqlite store: opening %s: %w", s.path, err)
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		conn.Close()
		db.Close()
		return fmt.Errorf("sqlite store: reading journal mode of %s: %w", s.path, err)
	}
	if mode != "wal" {
		conn.Close()
		db.Close()
		return fmt.Errorf("sqlite store: %s is in journal mode %q, not WAL (is it on a file system without shared memory?)", s.path, mode)
	}
	if err := migrate(ctx, conn); err != nil {
		conn.Close()
		db.Close()
		return fmt.Errorf("sqlite store: %s: %w", s.path, err)
	}
	w, err := newWriter(ctx, conn)
	if err != nil {
		conn.Close()
		db.Close()
		return err
	}
	s.wdb, s.w = db, w
	return nil
}

func (s *Store) openReaders() error {
	db := sql.OpenDB(&watchedConnector{dsn: s.dsn("query_only(ON)"), h: &s.health, d: &sqlite.Driver{}})
	db.SetMaxOpenConns(s.opts.ReadConns)
	db.SetMaxIdleConns(s.opts.ReadConns)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if err := s.rs.prepare(context.Background(), db); err != nil {
		db.Close()
		return err
	}
	s.rdb = db
	return nil
}

// Ping reports whether the store is ready: a read works, no read has met
// damage since Open, the latest write worked, and the store is open.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.health.err(); err != nil {
		return err
	}
	if err := s.rdb.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite store: read pool unavailable: %w", err)
	}
	var one int
	if err := s.rdb.QueryRowContext(ctx, "SELECT 1 FROM sqlite_schema LIMIT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite store: reading schema: %w", err)
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return s.syncer.err()
}

// Close commits and answers every write already queued, stops the writer,
// and closes the database. Writes after Close fail with ErrClosed. Close is
// idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.ops)
	s.mu.Unlock()
	<-s.done
	return errors.Join(s.ckpt.close(), s.w.close(), s.wdb.Close(), s.rs.close(), s.rdb.Close())
}

// Checkpoint copies the whole WAL into the database file and truncates the
// WAL to zero bytes (wal_checkpoint(TRUNCATE)), so that old page images that
// held deleted sealed text or data keys are no longer on disk in the -wal
// file. It waits (up to BusyTimeout) for readers of old snapshots to finish.
func (s *Store) Checkpoint(ctx context.Context) error {
	return s.do(ctx, true, func(w *writer) error { return s.truncateWAL(w.conn) })
}

var _ store.Store = (*Store)(nil)

// startHousekeeping is what the serving process does once the store is
// open, before anything else writes (Options.StartCheck).
func (s *Store) startHousekeeping() {
	// Start from an empty WAL: a process that ended without closing the
	// store (kill -9, power loss) left its WAL behind, and short lives that
	// each stay under the checkpoint thresholds would otherwise pile up.
	if err := s.truncateWAL(s.w.conn); err != nil {
		s.log.Warn("WAL checkpoint at start failed; serving on, the checkpointer tries again", "err", err)
	}
	// Find out now whether writes work, so that a start on a full disk is
	// not ready and takes no submission before its first write fails.
	// A disk with less room than the reserve and as much again counts as
	// full, as it does for the recovery of a running server (diskfull.go).
	if err := s.w.probe(); writeFailure(err) {
		s.health.writeFailed(unavailable(err))
	} else if err != nil {
		s.log.Warn("write probe at start failed", "err", err)
	} else if s.reserve.size > 0 && !s.reserve.roomToRecover() {
		free, _ := freeBytes(s.path)
		s.health.writeFailed(fmt.Errorf("%w: the disk is full: %d bytes free, less than the %d the store keeps in reserve and as much again", ErrUnavailable, free, s.reserve.size))
	}
	if !s.health.writesFailing() {
		if err := s.reserve.ensure(); err != nil {
			s.log.Warn("no disk reserve: a full disk will be harder to recover from without a restart", "err", err)
		}
	}
}
