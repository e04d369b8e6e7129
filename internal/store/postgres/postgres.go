// Package postgres is the store.Store backend on PostgreSQL, for a node that
// shares its store with others or keeps it off its own disk.
//
// Life cycle: Open connects a pgx pool (synchronous_commit forced on for
// every connection, so a returned commit is on the server's disk), applies
// the embedded schema migrations under an advisory lock (migrations run once
// however many nodes start at once), and starts the committers. Submits are
// group-committed (submit.go): each committer takes every submission waiting
// (up to MaxBatch) into one transaction of a few batched statements and
// answers them only after its COMMIT; several committers run at once, so
// batches gather while others commit. Per-recipient order holds across
// committers and nodes because a submitting transaction takes the
// recipient's mailbox lock before it draws the messages' seqs. Delivered
// marks and attempts come in batches from the queue and are written a
// batch at a time (unnest arrays: an attempt batch is one statement, a
// mark batch one transaction of two). Reads go to the pool.
//
// Expiry: sealed text is kept in a partition per key period beside the
// status rows (datakey.go). ExpireDue turns due messages to expired and
// queues their reports (only one node's sweep runs at a time:
// pg_try_advisory_xact_lock); DeleteDataKeys drops ended periods'
// partitions and destroys their data keys in one transaction.
//
// Errors: a store sentinel (ErrNotFound, ErrExists, ErrMailboxFull) means
// nothing was written. Any other error may follow a COMMIT that reached the
// server (the connection broke before the answer, or the caller's context
// ended while it waited): the write may have happened, and a retry with
// the same (sender, id) is safe.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sealpost/sealpost/internal/store"
)

// ErrClosed is returned by writes made after Close.
var ErrClosed = errors.New("postgres store: closed; the write was not made")

// Advisory lock keys. Session and transaction locks with one bigint key
// share a key space; the two-int4 form used for mailboxes (lockMailbox) is
// a separate space.
const (
	lockMigrate    int64 = 0x5345414c504f0001 // schema migrations
	lockSweep      int64 = 0x5345414c504f0002 // the single expiry sweeper
	lockPartitions int64 = 0x5345414c504f0003 // creating and dropping period partitions
	lockMailbox    int32 = 0x5345414c         // first key of a mailbox lock; the second is a hash of the account
)

// Options tune the store. The zero value is the production setting.
type Options struct {
	// MaxConns bounds the pool. 0 means max(8, 4 × GOMAXPROCS).
	MaxConns int
	// Committers is how many submission transactions may be open at once.
	// 0 means 4.
	Committers int
	// MaxBatch bounds how many submissions share one transaction. 0 means
	// 256.
	MaxBatch int
	// CommitTimeout bounds one batch transaction, so that a server that
	// stopped answering fails the batch instead of holding its callers.
	// 0 means 30 s.
	CommitTimeout time.Duration
	// Logger receives operational problems (never message text); nil
	// discards them.
	Logger *slog.Logger
	// OnCommit, if set, is called after every submission batch with the
	// number of submissions it held and how long its transaction took.
	OnCommit func(ops int, took time.Duration)
	// OnSync, if set, is called after every submission batch's COMMIT
	// with how long it took: the round trip in which the server flushes
	// the WAL to disk (synchronous_commit).
	OnSync func(took time.Duration)
}

func (o Options) withDefaults() Options {
	if o.MaxConns <= 0 {
		o.MaxConns = max(8, 4*runtime.GOMAXPROCS(0))
	}
	if o.Committers <= 0 {
		o.Committers = 4
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Store is the PostgreSQL backend. Its methods are safe for concurrent use.
type Store struct {
	opts Options
	log  *slog.Logger
	pool *pgxpool.Pool

	submits chan *submitOp // waiting for a committer
	wg      sync.WaitGroup // the committers

	// mu is held shared while a submission is queued and exclusively by
	// Close, so that Close never closes submits under a sender.
	mu     sync.RWMutex
	closed bool // guarded by mu

	partMu sync.Mutex
	parts  map[int64]bool // periods known to have a partition; guarded by partMu
}

// Open connects to the database at url (postgres://USER@HOST:PORT/DB?…),
// brings its schema up to date and starts the committers.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres store: bad URL: %w", err)
	}
	cfg.MaxConns = int32(opts.MaxConns)
	// Durability is the store's promise, not the server's setting: a
	// commit that returned must be on disk.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "sealpostd"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: connecting to %s: %w", redact(cfg), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: connecting to %s: %w", redact(cfg), err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{
		opts:    opts,
		log:     opts.Logger,
		pool:    pool,
		submits: make(chan *submitOp, 4*opts.MaxBatch),
		parts:   map[int64]bool{},
	}
	for range opts.Committers {
		s.wg.Add(1)
		go s.commitLoop()
	}
	return s, nil
}

// redact names the server and database of cfg without its password.
func redact(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("postgres://%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// Ping reports whether the database answers a query and the store is open.
func (s *Store) Ping(ctx context.Context) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	var one int
	if err := s.pool.QueryRow(ctx, "SELECT 1 FROM sealpost_schema LIMIT 1").Scan(&one); err != nil {
		return fmt.Errorf("postgres store: database unavailable: %w", err)
	}
	return nil
}

// Close answers every submission already queued, stops the committers and
// closes the pool. Writes after Close fail with ErrClosed. Close is
// idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.submits)
	s.mu.Unlock()
	s.wg.Wait()
	s.pool.Close()
	return nil
}

// inTx runs fn in a transaction and commits it; it retries the whole
// transaction when PostgreSQL aborted it for a deadlock or a serialization
// failure (nothing of it was written then).
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	for try := 1; ; try++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || !retryable(err) || try == 5 {
			return err
		}
	}
}

// again runs a write of one statement (its own transaction) and runs it
// again when PostgreSQL aborted it for a deadlock, as inTx does: such a
// statement wrote nothing. Updates of the same messages by a delivery run
// and by the sweep or a registration can meet in opposite orders.
func again(fn func() error) error {
	for try := 1; ; try++ {
		err := fn()
		if err == nil || !retryable(err) || try == 5 {
			return err
		}
	}
}

// retryable reports whether err means PostgreSQL rolled the transaction
// back on its own (deadlock, serialization failure) so it may be run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Times are stored as Unix nanoseconds; 0 is the zero time (see schema.go).
func encTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func decTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// norm returns t as it reads back from the database.
func norm(t time.Time) time.Time { return decTime(encTime(t)) }

// limitArg turns "limit <= 0" into SQL's LIMIT NULL (no limit).
func limitArg(limit int) *int {
	if limit <= 0 {
		return nil
	}
	return &limit
}

// notFound maps pgx.ErrNoRows to store.ErrNotFound and wraps anything else
// with what was being done.
func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres store: %s: %w", what, store.ErrNotFound)
	}
	return fmt.Errorf("postgres store: %s: %w", what, err)
}

// affected maps "no row changed" to store.ErrNotFound.
func affected(what string, tag pgconn.CommandTag, err error) error {
	if err != nil {
		return fmt.Errorf("postgres store: %s: %w", what, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres store: %s: %w", what, store.ErrNotFound)
	}
	return nil
}

var _ store.Store = (*Store)(nil)
