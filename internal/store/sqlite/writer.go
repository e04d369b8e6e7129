package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/internal/store"
)

// op is one write waiting for the writer goroutine.
type op struct {
	ctx context.Context
	// fn makes the write on the writer's connection: inside the batch's
	// transaction, in its own savepoint unless atomic; for a solo op,
	// outside any transaction. A store sentinel error undoes only this op.
	fn func(w *writer) error
	// solo ops (checkpoints) cannot run inside a transaction: the writer
	// commits the batch before them and runs them alone.
	solo bool
	// atomic ops make at most one writing statement, which SQLite applies
	// whole or not at all, and return a store sentinel error only when
	// that statement wrote nothing; they need no savepoint. Any other error
	// of an atomic op fails the whole batch, since SQLite may have rolled
	// back the transaction under it.
	atomic bool
	done   chan error // buffered; receives exactly one answer
}

// do queues fn for the writer and waits for its answer: nil only after the
// transaction holding the write has committed durably. A caller whose ctx
// ends while waiting for a place in the queue gets ctx.Err() and nothing is
// written. Once queued, the caller waits for the truthful answer even if ctx
// ends, because the write may already be part of a committing batch; the
// writer skips an op whose ctx has ended before it starts.
func (s *Store) do(ctx context.Context, solo bool, fn func(w *writer) error) error {
	return s.queue(ctx, &op{ctx: ctx, fn: fn, solo: solo})
}

// doAtomic is do for an op that qualifies as atomic (see op.atomic).
func (s *Store) doAtomic(ctx context.Context, fn func(w *writer) error) error {
	return s.queue(ctx, &op{ctx: ctx, fn: fn, atomic: true})
}

func (s *Store) queue(ctx context.Context, o *op) error {
	o.done = make(chan error, 1)
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.ops <- o:
	case <-ctx.Done():
		s.mu.RUnlock()
		return fmt.Errorf("sqlite store: write not queued: %w", ctx.Err())
	}
	s.mu.RUnlock()
	return <-o.done
}

// run is the writer goroutine: it drains ops into batches until Close closes
// the channel and everything queued has been answered.
func (s *Store) run() {
	defer close(s.done)
	batch := make([]*op, 0, s.opts.MaxBatch)
	var carry *op // a solo op that ended the previous batch
	for {
		first := carry
		carry = nil
		if first == nil {
			o, ok := <-s.ops
			if !ok {
				return
			}
			first = o
		}
		if first.solo {
			first.done <- s.w.runSolo(first)
			continue
		}
		batch = append(batch[:0], first)
		open := true
	collect:
		for len(batch) < s.opts.MaxBatch {
			select {
			case o, ok := <-s.ops:
				if !ok {
					open = false
					break collect
				}
				if o.solo {
					carry = o
					break collect
				}
				batch = append(batch, o)
			default:
				// Nothing more is waiting: commit now rather than
				// wait for company. Batches form by themselves while
				// the previous commit's fsync is in progress.
				break collect
			}
		}
		start := time.Now()
		s.w.runBatch(batch)
		if s.opts.OnCommit != nil {
			s.opts.OnCommit(len(batch), time.Since(start))
		}
		clear(batch) // let answered ops be collected
		if !open {
			return
		}
	}
}

// writer owns the single write connection and its prepared statements.
type writer struct {
	conn *sql.Conn
	ctx  context.Context // background: a caller's ctx must not abort a shared batch
	errs []error         // per-op results of the current batch

	begin, commit, rollback, savepoint, release, rollbackTo *sql.Stmt

	// hot paths
	messageByID   *sql.Stmt
	mailboxCount  *sql.Stmt
	insertMessage *sql.Stmt
	markDelivered *sql.Stmt
	insertReport  *sql.Stmt
	recordAttempt *sql.Stmt

	all []*sql.Stmt
}

func newWriter(ctx context.Context, conn *sql.Conn) (*writer, error) {
	w := &writer{conn: conn, ctx: context.Background()}
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{
		// IMMEDIATE takes the write lock at once, so a second process
		// on the same file waits (busy_timeout) instead of deadlocking.
		{&w.begin, "BEGIN IMMEDIATE"},
		{&w.commit, "COMMIT"},
		{&w.rollback, "ROLLBACK"},
		{&w.savepoint, "SAVEPOINT op"},
		{&w.release, "RELEASE op"},
		{&w.rollbackTo, "ROLLBACK TO op"},
		{&w.messageByID, "SELECT " + messageCols + " FROM messages WHERE from_acct = ? AND id = ?"},
		{&w.mailboxCount, "SELECT pending FROM mailboxes WHERE account = ?"},
		// One statement checks the mailbox bound (?11), inserts, and
		// (trigger mailbox_in) counts the message in; it inserts nothing
		// when the mailbox is full or (From, ID) exists.
		{&w.insertMessage, `INSERT INTO messages (from_acct, id, to_acct, sealed, key_period, status,
			submitted_at, expires_at, delivered_at, attempts, next_attempt, last_error)
			SELECT ?1, ?2, ?3, ?4, ?5, 'enqueued', ?6, ?7, 0, ?8, ?9, ?10
			WHERE coalesce((SELECT pending FROM mailboxes WHERE account = ?3), 0) < ?11
			ON CONFLICT (from_acct, id) DO NOTHING`},
		{&w.markDelivered, `UPDATE messages SET status = 'delivered', delivered_at = ?, sealed = NULL, key_period = 0
			WHERE from_acct = ? AND id = ? AND status = 'enqueued'
			RETURNING to_acct, submitted_at, expires_at`},
		{&w.insertReport, `INSERT INTO reports (to_acct, message_id, recipient, status, at, expires_at, attempts, next_attempt)
			VALUES (?, ?, ?, ?, ?, ?, 0, 0)`},
		{&w.recordAttempt, `UPDATE messages SET attempts = ?, next_attempt = ?, last_error = ?
			WHERE from_acct = ? AND id = ? AND status = 'enqueued'`},
	} {
		st, err := conn.PrepareContext(ctx, p.sql)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("sqlite store: preparing %q: %w", p.sql, err)
		}
		*p.st = st
		w.all = append(w.all, st)
	}
	return w, nil
}

func (w *writer) close() error {
	var errs []error
	for _, st := range w.all {
		errs = append(errs, st.Close())
	}
	w.all = nil
	errs = append(errs, w.conn.Close())
	return errors.Join(errs...)
}

func (w *writer) exec(st *sql.Stmt, args ...any) (sql.Result, error) {
	return st.ExecContext(w.ctx, args...)
}

// runBatch runs every op of the batch in one transaction, one savepoint per
// op, commits once and answers every op. No op is answered before the
// commit (or the rollback) that decides its fate.
func (w *writer) runBatch(batch []*op) {
	if cap(w.errs) < len(batch) {
		w.errs = make([]error, len(batch))
	}
	errs := w.errs[:len(batch)]
	clear(errs)
	answer := func() {
		for i, o := range batch {
			o.done <- errs[i]
		}
	}
	// abort fails every op that had succeeded so far: the transaction is
	// rolled back, so none of their writes exists. Ops that failed on their
	// own keep their own error (nothing was written for them either).
	abort := func(err error) {
		w.exec(w.rollback) // may fail if SQLite already rolled back; the tx is gone either way
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		answer()
	}
	if _, err := w.exec(w.begin); err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("sqlite store: beginning transaction: %w", err)
		}
		answer()
		return
	}
	for i, o := range batch {
		if err := o.ctx.Err(); err != nil {
			errs[i] = fmt.Errorf("sqlite store: write abandoned before it started: %w", err)
			continue
		}
		if o.atomic {
			if err := o.fn(w); err != nil {
				errs[i] = err
				if !isSentinel(err) {
					abort(fmt.Errorf("sqlite store: batch rolled back after a failed write: %w", err))
					return
				}
			}
			continue
		}
		if _, err := w.exec(w.savepoint); err != nil {
			abort(fmt.Errorf("sqlite store: opening savepoint: %w", err))
			return
		}
		if err := o.fn(w); err != nil {
			errs[i] = err
			if _, err := w.exec(w.rollbackTo); err != nil {
				abort(fmt.Errorf("sqlite store: transaction rolled back after a failed write: %w", errors.Join(errs[i], err)))
				return
			}
		}
		if _, err := w.exec(w.release); err != nil {
			abort(fmt.Errorf("sqlite store: releasing savepoint: %w", err))
			return
		}
	}
	if _, err := w.exec(w.commit); err != nil {
		abort(fmt.Errorf("sqlite store: commit failed, nothing of the batch was written: %w", err))
		return
	}
	answer()
}

// isSentinel reports whether err is one of the store's answers (as opposed
// to a failure of the database).
func isSentinel(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrMailboxFull)
}

// runSolo runs an op outside any transaction.
func (w *writer) runSolo(o *op) error {
	if err := o.ctx.Err(); err != nil {
		return fmt.Errorf("sqlite store: operation abandoned before it started: %w", err)
	}
	return o.fn(w)
}
