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
	// atomic ops need no savepoint: they make one writing statement, which
	// SQLite applies whole or not at all, and return a store sentinel error
	// only when that statement wrote nothing; or they make several and
	// never return a sentinel error (eachInOneOp). Any other error of
	// an atomic op fails the whole batch, since SQLite may have rolled back
	// the transaction under it, and the op's earlier statements with it.
	atomic bool
	// grows marks a submission: new data rather than bookkeeping of stored
	// data. While writes fail it is refused without being tried
	// (diskfull.go), so that the disk reserve's space goes to delivery
	// marks and tokens, not to more messages.
	grows bool
	// lingers marks a delivered mark: nobody waits on it but the
	// delivery run's bookkeeping, so a batch of nothing else waits a
	// little (MarkLinger) for a write to share its commit (see run).
	lingers bool
	done    chan error // buffered; receives exactly one answer
}

// defaultMarkLinger: at 500 relayed msg/s a submission arrives every 2 ms
// on average, so most marks share its commit instead of paying their own.
const defaultMarkLinger = 5 * time.Millisecond

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

// doMark is doAtomic for delivered marks (see op.lingers).
func (s *Store) doMark(ctx context.Context, fn func(w *writer) error) error {
	return s.queue(ctx, &op{ctx: ctx, fn: fn, atomic: true, lingers: true})
}

// doSubmit is doAtomic for a submission (see op.grows).
func (s *Store) doSubmit(ctx context.Context, fn func(w *writer) error) error {
	return s.queue(ctx, &op{ctx: ctx, fn: fn, atomic: true, grows: true})
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

// run is the writer goroutine: it runs ops in batches, one transaction each,
// until Close closes the channel and everything queued has been answered.
//
// When to commit: as soon as nothing more is waiting, unless the disk is
// still busy with the previous batch's fsync. Then the ops arriving
// meanwhile join the open transaction, since they could not be made durable
// before that fsync ends anyway; a bigger batch also writes fewer pages per
// op, because ops of one batch share the index pages they touch. A batch
// of delivered marks only, while submissions are arriving (one committed
// within 20 × MarkLinger), also waits up to MarkLinger for another op: at a
// low rate every submission and every mark would otherwise pay a commit
// and an fsync of its own, two per relayed message. The first op that is
// not a mark ends the wait, so a submission is never held back by it;
// every op is still answered only once its batch is on disk. A drain
// (marks and attempts, no submissions) does not wait.
func (s *Store) run() {
	syncq := make(chan committed, 64)
	syncDone := make(chan struct{})
	go s.syncer.run(syncq, syncDone)
	defer func() {
		close(syncq)
		<-syncDone
		close(s.done)
	}()
	var handed int64        // batches given to the syncer
	var lastGrow time.Time  // when the last batch with a submission began
	var sinceCheckpoint int // writes since the last checkpoint request
	var carry *op           // a solo op that ended the previous batch
	open := true
	for open || carry != nil {
		first := carry
		carry = nil
		if first == nil {
			o, ok := <-s.ops
			if !ok {
				return
			}
			first = o
		}
		if err := s.syncer.err(); err != nil {
			first.done <- fmt.Errorf("%w: %w", errSyncFailed, err)
			continue
		}
		if first.solo {
			first.done <- s.w.runSolo(first)
			continue
		}
		b := s.w.startBatch(s.opts.MaxBatch)
		b.refuseGrowth = s.refusingGrowth()
		b.add(first)
		var linger *time.Timer // while the batch holds only marks
		if first.lingers && s.opts.MarkLinger > 0 && time.Since(lastGrow) < 20*s.opts.MarkLinger {
			linger = time.NewTimer(s.opts.MarkLinger)
		}
	collect:
		for b.err == nil && len(b.ops) < s.opts.MaxBatch {
			diskBusy := s.syncer.synced.Load() < handed
			var o *op
			var ok bool
			switch {
			case diskBusy:
				select {
				case o, ok = <-s.ops:
				case <-s.syncer.wake:
					continue // the syncer finished a round: look again
				}
			case linger != nil:
				select {
				case o, ok = <-s.ops:
				case <-linger.C:
					linger = nil
					break collect
				}
			default:
				select {
				case o, ok = <-s.ops:
				default:
					break collect
				}
			}
			switch {
			case !ok:
				open = false
				break collect
			case o.solo:
				carry = o
				break collect
			}
			if linger != nil && !o.lingers {
				linger.Stop()
				linger = nil
			}
			b.add(o)
		}
		if linger != nil {
			linger.Stop()
		}
		if b.grows {
			lastGrow = b.start
		}
		if b.commit() {
			// Answered by the syncer once the batch is on disk.
			handed++
			syncq <- committed{seq: handed, ops: b.ops, errs: b.errs}
			s.ckpt.committed(len(b.ops))
			if sinceCheckpoint += len(b.ops); sinceCheckpoint >= checkpointEvery {
				s.ckpt.request()
				sinceCheckpoint = 0
			}
			s.batchDone(b.failure)
		} else {
			b.answer()
			if writeFailure(b.err) {
				s.batchDone(b.err)
			}
		}
		for range b.refused {
			s.health.countFailure()
		}
		if s.opts.OnCommit != nil {
			s.opts.OnCommit(len(b.ops), time.Since(b.start))
		}
	}
}

// writer owns the single write connection and its prepared statements.
type writer struct {
	conn *sql.Conn
	ctx  context.Context // background: a caller's ctx must not abort a shared batch

	begin, commit, rollback, savepoint, release, rollbackTo *sql.Stmt

	// hot paths
	messageByID           *sql.Stmt
	mailboxCount          *sql.Stmt
	insertMessage         *sql.Stmt
	insertMessageCounting *sql.Stmt
	markDelivered         *sql.Stmt
	insertReport          *sql.Stmt
	recordAttempt         *sql.Stmt

	all []*sql.Stmt
}

const insertMessageSQL = `INSERT INTO messages (from_acct, id, to_acct, sealed, key_period, status,
			submitted_at, expires_at, delivered_at, attempts, next_attempt, last_error)
			SELECT ?1, ?2, ?3, ?4, ?5, 'enqueued', ?6, ?7, 0, ?8, ?9, ?10
			WHERE coalesce((SELECT pending FROM mailboxes WHERE account = ?3), 0) < ?11
			ON CONFLICT (from_acct, id) DO NOTHING`

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
		{&w.insertMessage, insertMessageSQL},
		// The same, returning the seq and the number of messages pending
		// before this one (or no row). RETURNING is computed before the
		// AFTER trigger runs, so its subquery sees the count without this
		// message (storetest's SubmitTellsPendingBefore pins that; were
		// it ever computed after, the count would include the message
		// itself and the queue would only lose its shortcut, never
		// deliver out of order).
		{&w.insertMessageCounting, insertMessageSQL + `
			RETURNING seq, coalesce((SELECT pending FROM mailboxes WHERE account = ?3), 0)`},
		// Trigger report_delivered queues the sender's report.
		//
		// OR ROLLBACK (the mark and the attempt are atomic ops): a
		// constraint failure, in the statement or in its triggers (which
		// take the outer policy), rolls back the whole transaction, as
		// the batch does anyway for any error of an atomic op but "not
		// found". So SQLite opens no statement journal for them, which
		// copied every page they touched (a third of a mark's CPU). The
		// INSERT of Submit keeps its journal: the upsert of trigger
		// mailbox_in always aborts by statement, and a trigger without
		// one (INSERT … WHERE NOT EXISTS, then UPDATE) cost as much.
		{&w.markDelivered, `UPDATE OR ROLLBACK messages SET status = 'delivered', delivered_at = ?, sealed = NULL, key_period = 0
			WHERE from_acct = ? AND id = ? AND status = 'enqueued'`},
		{&w.insertReport, `INSERT INTO reports (to_acct, message_id, recipient, status, at, expires_at, attempts, next_attempt)
			VALUES (?, ?, ?, ?, ?, ?, 0, 0)`},
		{&w.recordAttempt, `UPDATE OR ROLLBACK messages SET attempts = ?, next_attempt = ?, last_error = ?, parked = ?
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

// batch is one transaction of the writer, filled op by op.
type batch struct {
	w     *writer
	start time.Time
	ops   []*op
	errs  []error // per op
	// err, once set, means the transaction is gone (rolled back or never
	// begun): every op without an error of its own fails with it, and
	// nothing of the batch exists.
	err error
	// failure is the first error of an op that was the database failing
	// (writeFailure) rather than the op's own answer, even if the batch
	// went on without that op.
	failure error
	// refuseGrowth: writes are failing; submissions get this error
	// without being tried.
	refuseGrowth error
	refused      int  // submissions refused so far
	grows        bool // it holds a submission
}

// startBatch begins a batch. Its slices start small and grow with it: at
// a low rate most batches hold one or two writes, and slices sized for
// MaxBatch (6 KiB at 256) were most of what a write allocated.
func (w *writer) startBatch(capacity int) *batch {
	capacity = min(capacity, 8)
	b := &batch{w: w, start: time.Now(), ops: make([]*op, 0, capacity), errs: make([]error, 0, capacity)}
	if _, err := w.exec(w.begin); err != nil {
		b.err = unavailable(fmt.Errorf("sqlite store: beginning transaction: %w", err))
	}
	return b
}

// add runs o inside the transaction: in its own savepoint unless it is
// atomic, so that its failure undoes only its own writes. A failure that may
// have cost the transaction aborts the batch.
func (b *batch) add(o *op) {
	b.ops = append(b.ops, o)
	b.errs = append(b.errs, nil)
	i := len(b.ops) - 1
	w := b.w
	b.grows = b.grows || o.grows
	if b.err != nil {
		return
	}
	if err := o.ctx.Err(); err != nil {
		b.errs[i] = fmt.Errorf("sqlite store: write abandoned before it started: %w", err)
		return
	}
	if o.grows && b.refuseGrowth != nil {
		b.errs[i] = b.refuseGrowth
		b.refused++
		return
	}
	if o.atomic {
		if err := o.fn(w); err != nil {
			b.errs[i] = unavailable(err)
			b.noteFailure(err)
			if !isSentinel(err) {
				b.abort(fmt.Errorf("sqlite store: batch rolled back after a failed write: %w", err))
			}
		}
		return
	}
	if _, err := w.exec(w.savepoint); err != nil {
		b.abort(fmt.Errorf("sqlite store: opening savepoint: %w", err))
		return
	}
	if err := o.fn(w); err != nil {
		b.errs[i] = unavailable(err)
		b.noteFailure(err)
		if _, err := w.exec(w.rollbackTo); err != nil {
			b.abort(fmt.Errorf("sqlite store: transaction rolled back after a failed write: %w", errors.Join(b.errs[i], err)))
			return
		}
	}
	if _, err := w.exec(w.release); err != nil {
		b.abort(fmt.Errorf("sqlite store: releasing savepoint: %w", err))
	}
}

func (b *batch) noteFailure(err error) {
	if b.failure == nil && writeFailure(err) {
		b.failure = err
	}
}

// abort rolls the transaction back: none of the batch's writes exists.
func (b *batch) abort(err error) {
	b.w.exec(b.w.rollback) // may fail if SQLite already rolled back; the tx is gone either way
	b.err = unavailable(err)
}

// commit commits the transaction and reports whether it did. When it did
// not, every op has its error and nothing of the batch exists.
func (b *batch) commit() bool {
	if b.err == nil {
		if _, err := b.w.exec(b.w.commit); err != nil {
			b.abort(fmt.Errorf("sqlite store: commit failed, nothing of the batch was written: %w", err))
		}
	}
	if b.err != nil {
		for i := range b.errs {
			if b.errs[i] == nil {
				b.errs[i] = b.err
			}
		}
		return false
	}
	return true
}

// answer sends every op its result.
func (b *batch) answer() {
	for i, o := range b.ops {
		o.done <- b.errs[i]
	}
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
