package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// Submit durably stores m (status enqueued) and returns it with Seq set. A
// message with the same (From, ID) is returned as it is, created=false, even
// when the mailbox is now full: the retry of an accepted message must not be
// refused. The mailbox bound counts earlier messages of the same batch,
// because every op of a batch sees the writes of the ops before it. It
// returns only after the batch holding the write has committed durably.
func (s *Store) Submit(ctx context.Context, m store.Message, maxPending int) (store.Message, bool, error) {
	return s.SubmitEarly(ctx, m, maxPending, nil)
}

// SubmitEarly is Submit, calling written (if not nil) right after the
// INSERT, inside the writer's batch: before the batch commits and before
// its fsync. See store.EarlySubmitter.
func (s *Store) SubmitEarly(ctx context.Context, m store.Message, maxPending int, written func(store.Message)) (store.Message, bool, error) {
	var stored store.Message
	var created bool
	bound := int64(math.MaxInt64)
	if maxPending > 0 {
		bound = int64(maxPending)
	}
	err := s.doSubmit(ctx, func(w *writer) error {
		// The common case, a new message, is this one statement.
		seq, before, err := w.insert(m, bound)
		if err != nil {
			return fmt.Errorf("sqlite store: storing message %s from %q: %w", m.ID, m.From, err)
		}
		if seq > 0 {
			stored = m
			stored.Seq = seq
			stored.Status = message.Enqueued
			stored.SubmittedAt, stored.ExpiresAt = norm(m.SubmittedAt), norm(m.ExpiresAt)
			stored.DeliveredAt = time.Time{}
			stored.NextAttempt = norm(m.NextAttempt)
			stored.Parked = false
			stored.PendingBefore, stored.WantPendingBefore = before, false
			created = true
			if written != nil {
				written(stored)
			}
			return nil
		}
		// Nothing inserted: the (From, ID) exists, which wins over a full
		// mailbox (a retry of an accepted message), or the mailbox is full.
		existing, err := scanMessage(w.messageByID.QueryRowContext(w.ctx, m.From, m.ID))
		if err == nil {
			stored, created = existing, false
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite store: looking up message %s from %q: %w", m.ID, m.From, err)
		}
		var pending int64
		if err := w.mailboxCount.QueryRowContext(w.ctx, m.To).Scan(&pending); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite store: counting mailbox of %q: %w", m.To, err)
		}
		if pending < bound {
			return fmt.Errorf("sqlite store: message %s from %q was neither stored nor found (%d of %d pending for %q)", m.ID, m.From, pending, bound, m.To)
		}
		return fmt.Errorf("sqlite store: %q has %d pending messages (bound %d): %w", m.To, pending, maxPending, store.ErrMailboxFull)
	})
	if err != nil {
		return store.Message{}, false, err
	}
	return stored, created, nil
}

// insert runs the INSERT of Submit and returns the new message's seq, or 0
// when nothing was inserted, and (if m asks for it) how many messages were
// pending for m.To before it.
func (w *writer) insert(m store.Message, bound int64) (seq int64, before int, err error) {
	args := []any{m.From, m.ID, m.To, m.Sealed, m.KeyPeriod,
		encTime(m.SubmittedAt), encTime(m.ExpiresAt), m.Attempts, encTime(m.NextAttempt), m.LastError, bound}
	if m.WantPendingBefore {
		err := w.insertMessageCounting.QueryRowContext(w.ctx, args...).Scan(&seq, &before)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, nil
		}
		return seq, before, err
	}
	res, err := w.insertMessage.ExecContext(w.ctx, args...)
	if err != nil {
		return 0, 0, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return 0, 0, err
	}
	seq, err = res.LastInsertId()
	return seq, 0, err
}

// Message returns the message (From, ID) with its sealed text, if any.
func (s *Store) Message(ctx context.Context, from, id string) (store.Message, error) {
	m, err := scanMessage(s.rs.message.QueryRowContext(ctx, from, id))
	if err != nil {
		return store.Message{}, notFound(err, fmt.Sprintf("message %s from %q", id, from))
	}
	return m, nil
}

// Pending returns up to limit (<= 0: all) messages for the recipient that
// are due by due (enqueued, not parked, next_attempt <= due; the zero time
// for any), with a Seq above after, in Seq order, with their sealed text.
func (s *Store) Pending(ctx context.Context, to string, after int64, due time.Time, limit int) ([]store.Message, error) {
	out, err := scanMessages(s.rs.pending.QueryContext(ctx, to, after, encTime(due), limitArg(limit)))
	if err != nil {
		return nil, fmt.Errorf("sqlite store: listing pending messages for %q: %w", to, err)
	}
	return out, nil
}

// CountPending returns the number of enqueued messages for all recipients.
func (s *Store) CountPending(ctx context.Context) (int, error) {
	var n int
	if err := s.rdb.QueryRowContext(ctx, "SELECT coalesce(sum(pending), 0) FROM mailboxes").Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite store: counting pending messages: %w", err)
	}
	return n, nil
}

// RecordAttempt stores the delivery bookkeeping of an enqueued message: a
// RecordAttempts of one.
func (s *Store) RecordAttempt(ctx context.Context, a store.Attempt) error {
	return one(s.RecordAttempts(ctx, []store.Attempt{a}))
}

// Reschedule makes the recipient's unparked enqueued messages scheduled
// after at due at at. A read from the pool looks first, so the common
// registration, with nothing scheduled, costs no write and no fsync. (A
// message scheduled between the look and a registration's next look is
// the scheduler's own retry, which it keeps anyway.)
func (s *Store) Reschedule(ctx context.Context, to string, at time.Time) (int, error) {
	atN := encTime(at)
	var later bool
	if err := s.rdb.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM messages
		WHERE to_acct = ?1 AND status = 'enqueued' AND parked = 0 AND next_attempt > ?2)`, to, atN).Scan(&later); err != nil {
		return 0, fmt.Errorf("sqlite store: looking for scheduled messages for %q: %w", to, err)
	}
	if !later {
		return 0, nil
	}
	var n int64
	err := s.doAtomic(ctx, func(w *writer) error {
		res, err := w.conn.ExecContext(w.ctx, `UPDATE messages SET next_attempt = ?2
			WHERE to_acct = ?1 AND status = 'enqueued' AND parked = 0 AND next_attempt > ?2`, to, atN)
		if err != nil {
			return fmt.Errorf("sqlite store: rescheduling messages for %q: %w", to, err)
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// MarkDeliveredAll marks each of keys delivered (see MarkDelivered), in one
// op of the writer (eachInOneOp) that may wait a little for company
// (op.lingers). Like every write it returns once its batch is on disk.
func (s *Store) MarkDeliveredAll(ctx context.Context, keys []store.Key, at time.Time) ([]error, error) {
	return s.eachInOneOpMark(ctx, len(keys), func(w *writer, i int) error {
		k := keys[i]
		res, err := w.markDelivered.ExecContext(w.ctx, encTime(at), k.From, k.ID)
		return keyedRow(res, err, "marking enqueued message %s from %q delivered", k)
	})
}

// RecordAttempts records the bookkeeping of each of as, in one op of the
// writer (eachInOneOp).
func (s *Store) RecordAttempts(ctx context.Context, as []store.Attempt) ([]error, error) {
	return s.eachInOneOp(ctx, len(as), func(w *writer, i int) error {
		a := as[i]
		res, err := w.recordAttempt.ExecContext(w.ctx, a.Attempts, encTime(a.Next), a.LastError, a.Parked, a.From, a.ID)
		return keyedRow(res, err, "recording attempt of enqueued message %s from %q", a.Key)
	})
}

// one turns the answer of an eachInOneOp of one write into that write's.
func one(errs []error, err error) error {
	if err != nil {
		return err
	}
	return errs[0]
}

// eachInOneOp runs write(w, i) for i in [0, n) as one op of the writer: the
// statements share a commit, and a delivery run hands over a window of
// writes in one call instead of a goroutine and an op per message. errs[i]
// is nil or ErrNotFound; any other error fails the whole batch (atomic
// op), so the op needs no savepoint, and comes back alone.
func (s *Store) eachInOneOp(ctx context.Context, n int, write func(w *writer, i int) error) ([]error, error) {
	return s.eachIn(ctx, s.doAtomic, n, write)
}

// eachInOneOpMark is eachInOneOp for delivered marks (doMark).
func (s *Store) eachInOneOpMark(ctx context.Context, n int, write func(w *writer, i int) error) ([]error, error) {
	return s.eachIn(ctx, s.doMark, n, write)
}

func (s *Store) eachIn(ctx context.Context, do func(context.Context, func(*writer) error) error, n int, write func(w *writer, i int) error) ([]error, error) {
	errs := make([]error, n)
	err := do(ctx, func(w *writer) error {
		for i := range n {
			err := write(w, i)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			errs[i] = err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// ExpireDue expires every enqueued message with ExpiresAt <= now: status
// expired, sealed text deleted, an Expired report queued for its sender
// (At is when the message expired; the report then waits as long as the
// message could, counted from now, so a sweep that runs late still tells the
// sender). Reports with ExpiresAt <= now are deleted. The expired messages
// are returned in Seq order, without text.
func (s *Store) ExpireDue(ctx context.Context, now time.Time) ([]store.Message, error) {
	var expired []store.Message
	err := s.do(ctx, false, func(w *writer) error {
		expired = nil
		nowN := encTime(now)
		list, err := scanMessages(w.conn.QueryContext(w.ctx, `UPDATE messages
			SET status = 'expired', sealed = NULL, key_period = 0
			WHERE status = 'enqueued' AND expires_at <= ?
			RETURNING `+messageColsNoText, nowN))
		if err != nil {
			return fmt.Errorf("sqlite store: expiring messages due by %v: %w", now, err)
		}
		slices.SortFunc(list, func(a, b store.Message) int { return cmp.Compare(a.Seq, b.Seq) })
		for _, m := range list {
			lifetime := m.ExpiresAt.Sub(m.SubmittedAt)
			if _, err := w.insertReport.ExecContext(w.ctx, m.From, m.ID, m.To, string(message.Expired),
				encTime(m.ExpiresAt), encTime(now.Add(lifetime))); err != nil {
				return fmt.Errorf("sqlite store: queueing expiry report of message %s for %q: %w", m.ID, m.From, err)
			}
		}
		if _, err := w.conn.ExecContext(w.ctx, "DELETE FROM reports WHERE expires_at <= ?", nowN); err != nil {
			return fmt.Errorf("sqlite store: deleting reports expired by %v: %w", now, err)
		}
		expired = list
		return nil
	})
	if err != nil {
		return nil, err
	}
	return expired, nil
}

// Messages lists messages for the operator, newest first, never with their
// sealed text. Filtered by account it walks the table from the newest
// message back until it has Limit matches: there is no index by account,
// which every submission would have paid for (schema step 2).
func (s *Store) Messages(ctx context.Context, f store.MessageFilter) ([]store.Message, error) {
	var where []string
	var args []any
	if f.Account != "" {
		where = append(where, "(from_acct = ? OR to_acct = ?)")
		args = append(args, f.Account, f.Account)
	}
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, string(f.Status))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q := "SELECT " + messageColsNoText + " FROM messages"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq DESC LIMIT ?"
	args = append(args, limit)
	out, err := scanMessages(s.rdb.QueryContext(ctx, q, args...))
	if err != nil {
		return nil, fmt.Errorf("sqlite store: listing messages: %w", err)
	}
	return out, nil
}
