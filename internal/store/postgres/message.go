package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// messageFrom reads a message with its sealed text while it is enqueued;
// a delivered or expired message reads with no text and key period 0.
//
// The text is a correlated subquery, not a join: it runs for the rows
// returned only, and PostgreSQL prunes it at run time to the one partition
// of the row's period (a join let the planner hash every partition).
const messageFrom = `SELECT m.seq, m.from_acct, m.id, m.to_acct,
		CASE WHEN m.status = 'enqueued' THEN
			(SELECT t.sealed FROM sealed_texts t WHERE t.key_period = m.key_period AND t.seq = m.seq) END,
		CASE WHEN m.status = 'enqueued' THEN m.key_period ELSE 0 END, m.status,
		m.submitted_at, m.expires_at, m.delivered_at, m.attempts, m.next_attempt, m.last_error, m.parked
	FROM messages m`

// messageNoText is the columns of a message without its text, for listings
// that must never carry it.
const messageNoText = `seq, from_acct, id, to_acct, NULL::bytea,
		CASE WHEN status = 'enqueued' THEN key_period ELSE 0 END, status,
		submitted_at, expires_at, delivered_at, attempts, next_attempt, last_error, parked`

func scanMessage(row pgx.Row) (store.Message, error) {
	var m store.Message
	var status string
	var submitted, expires, delivered, next int64
	err := row.Scan(&m.Seq, &m.From, &m.ID, &m.To, &m.Sealed, &m.KeyPeriod, &status,
		&submitted, &expires, &delivered, &m.Attempts, &next, &m.LastError, &m.Parked)
	if err != nil {
		return store.Message{}, err
	}
	m.Status = message.Status(status)
	m.SubmittedAt, m.ExpiresAt, m.DeliveredAt, m.NextAttempt = decTime(submitted), decTime(expires), decTime(delivered), decTime(next)
	return m, nil
}

func collectMessages(rows pgx.Rows) ([]store.Message, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Message, error) { return scanMessage(r) })
}

// Message returns the message (From, ID) with its sealed text, if any.
func (s *Store) Message(ctx context.Context, from, id string) (store.Message, error) {
	m, err := scanMessage(s.pool.QueryRow(ctx, messageFrom+" WHERE m.from_acct = $1 AND m.id = $2", from, id))
	if err != nil {
		return store.Message{}, notFound(err, fmt.Sprintf("message %s from %q", id, from))
	}
	return m, nil
}

// Pending returns up to limit (<= 0: all) messages for the recipient that
// are due by due (enqueued, not parked, next_attempt <= due; the zero time
// for any), with a Seq above after, in Seq order, with their sealed text.
func (s *Store) Pending(ctx context.Context, to string, after int64, due time.Time, limit int) ([]store.Message, error) {
	rows, _ := s.pool.Query(ctx, messageFrom+`
		WHERE m.to_acct = $1 AND m.status = 'enqueued' AND m.seq > $2 AND NOT m.parked
			AND ($3::bigint = 0 OR m.next_attempt <= $3)
		ORDER BY m.seq LIMIT $4`,
		to, after, encTime(due), limitArg(limit))
	out, err := collectMessages(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres store: listing pending messages for %q: %w", to, err)
	}
	return out, nil
}

// CountPending returns the number of enqueued messages for all recipients.
func (s *Store) CountPending(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM messages WHERE status = 'enqueued'").Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres store: counting pending messages: %w", err)
	}
	return n, nil
}

// RecordAttempt stores the delivery bookkeeping of an enqueued message: a
// RecordAttempts of one.
func (s *Store) RecordAttempt(ctx context.Context, a store.Attempt) error {
	return one(s.RecordAttempts(ctx, []store.Attempt{a}))
}

// Reschedule makes the recipient's unparked enqueued messages scheduled
// after at due at at. A read looks first, so the common registration, with
// nothing scheduled, writes nothing.
func (s *Store) Reschedule(ctx context.Context, to string, at time.Time) (int, error) {
	atN := encTime(at)
	var later bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM messages
		WHERE to_acct = $1 AND status = 'enqueued' AND NOT parked AND next_attempt > $2)`, to, atN).Scan(&later); err != nil {
		return 0, fmt.Errorf("postgres store: looking for scheduled messages for %q: %w", to, err)
	}
	if !later {
		return 0, nil
	}
	var tag pgconn.CommandTag
	err := again(func() (err error) {
		tag, err = s.pool.Exec(ctx, `UPDATE messages SET next_attempt = $2
			WHERE to_acct = $1 AND status = 'enqueued' AND NOT parked AND next_attempt > $2`, to, atN)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres store: rescheduling messages for %q: %w", to, err)
	}
	return int(tag.RowsAffected()), nil
}

// RecordAttempts records the bookkeeping of each of as in one statement.
func (s *Store) RecordAttempts(ctx context.Context, as []store.Attempt) ([]error, error) {
	if len(as) == 0 {
		return []error{}, nil
	}
	from, id := make([]string, len(as)), make([]string, len(as))
	attempts, next, lastErr := make([]int64, len(as)), make([]int64, len(as)), make([]string, len(as))
	parked := make([]bool, len(as))
	for i, a := range as {
		from[i], id[i], attempts[i], next[i], lastErr[i], parked[i] = a.From, a.ID, int64(a.Attempts), encTime(a.Next), a.LastError, a.Parked
	}
	var errs []error
	err := again(func() (err error) {
		rows, _ := s.pool.Query(ctx, `UPDATE messages m
			SET attempts = a.attempts, next_attempt = a.next, last_error = a.last_error, parked = a.parked
			FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::boolean[])
				WITH ORDINALITY AS a(from_acct, id, attempts, next, last_error, parked, ord)
			WHERE m.from_acct = a.from_acct AND m.id = a.id AND m.status = 'enqueued'
			RETURNING a.ord`, from, id, attempts, next, lastErr, parked)
		errs, err = eachFound(rows, len(as), func(i int) string {
			return fmt.Sprintf("recording attempt of enqueued message %s from %q", as[i].ID, as[i].From)
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// eachFound turns the 1-based ordinals a statement returned for the rows it
// changed into per-row answers: nil, or ErrNotFound for a row it did not
// change.
func eachFound(rows pgx.Rows, n int, what func(i int) string) ([]error, error) {
	ords, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("postgres store: %s: %w", what(0), err)
	}
	return notFoundExcept(ords, n, what), nil
}

// notFoundExcept answers nil for each 1-based ordinal in ords and
// ErrNotFound for the other rows of n.
func notFoundExcept(ords []int64, n int, what func(i int) string) []error {
	done := make([]bool, n)
	for _, o := range ords {
		done[o-1] = true
	}
	errs := make([]error, n)
	for i := range errs {
		if !done[i] {
			errs[i] = fmt.Errorf("postgres store: %s: %w", what(i), store.ErrNotFound)
		}
	}
	return errs
}

// one turns the answer of a batch call of one write into that write's.
func one(errs []error, err error) error {
	if err != nil {
		return err
	}
	return errs[0]
}

// MarkDeliveredAll marks each of keys delivered in one transaction: status
// delivered, a Delivered report queued for the sender (in the order of
// keys) that waits as long as the message was allowed to, and its sealed
// text deleted. The text is deleted by a second statement that names the
// periods and seqs, so PostgreSQL goes straight to their partitions and
// index entries instead of joining every partition.
func (s *Store) MarkDeliveredAll(ctx context.Context, keys []store.Key, at time.Time) ([]error, error) {
	if len(keys) == 0 {
		return []error{}, nil
	}
	from, id := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		from[i], id[i] = k.From, k.ID
	}
	what := func(i int) string {
		return fmt.Sprintf("marking enqueued message %s from %q delivered", keys[i].ID, keys[i].From)
	}
	// One statement, so one round trip and no BEGIN/COMMIT of its own:
	// PostgreSQL runs a statement with all its WITH parts atomically.
	rows, _ := s.pool.Query(ctx, `WITH k AS (
			SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(from_acct, id, ord)),
		d AS (UPDATE messages m SET status = 'delivered', delivered_at = $3
			FROM k WHERE m.from_acct = k.from_acct AND m.id = k.id AND m.status = 'enqueued'
			RETURNING m.seq, m.key_period, m.from_acct, m.id, m.to_acct, m.submitted_at, m.expires_at, k.ord),
		r AS (INSERT INTO reports (to_acct, message_id, recipient, status, at, expires_at)
			SELECT from_acct, id, to_acct, 'delivered', $3, $3 + (expires_at - submitted_at) FROM d ORDER BY ord),
		t AS (DELETE FROM sealed_texts st USING d WHERE st.key_period = d.key_period AND st.seq = d.seq)
		SELECT ord FROM d`, from, id, encTime(at))
	var ords []int64
	var ord int64
	if _, err := pgx.ForEachRow(rows, []any{&ord}, func() error {
		ords = append(ords, ord)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres store: %s: %w", what(0), err)
	}
	return notFoundExcept(ords, len(keys), what), nil
}

// ExpireDue expires every enqueued message with ExpiresAt <= now: status
// expired, text no longer readable (its partition goes when its period
// ends, datakey.go), an Expired report queued for its sender that waits as
// long as the message could, counted from now. Reports with ExpiresAt <=
// now are deleted. Only one node sweeps at a time: when another node's
// sweep holds the sweep lock, ExpireDue returns nothing and writes nothing,
// since that sweep expires the same messages and sends each report once.
func (s *Store) ExpireDue(ctx context.Context, now time.Time) ([]store.Message, error) {
	var expired []store.Message
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		expired = nil
		var mine bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", lockSweep).Scan(&mine); err != nil {
			return err
		}
		if !mine {
			return nil
		}
		nowN := encTime(now)
		rows, _ := tx.Query(ctx, `WITH e AS (
				UPDATE messages SET status = 'expired' WHERE status = 'enqueued' AND expires_at <= $1
				RETURNING `+messageNoText+`),
			r AS (INSERT INTO reports (to_acct, message_id, recipient, status, at, expires_at)
				SELECT from_acct, id, to_acct, 'expired', expires_at, $1 + (expires_at - submitted_at) FROM e ORDER BY seq)
			SELECT * FROM e ORDER BY seq`, nowN)
		list, err := collectMessages(rows)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM reports WHERE expires_at <= $1", nowN); err != nil {
			return err
		}
		for i := range list {
			list[i].KeyPeriod = 0
		}
		expired = list
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres store: expiring messages due by %v: %w", now, err)
	}
	return expired, nil
}

// Messages lists messages for the operator, newest first, never with their
// sealed text.
func (s *Store) Messages(ctx context.Context, f store.MessageFilter) ([]store.Message, error) {
	var where []string
	var args []any
	if f.Account != "" {
		args = append(args, f.Account)
		where = append(where, fmt.Sprintf("(from_acct = $%d OR to_acct = $%d)", len(args), len(args)))
	}
	if f.Status != "" {
		args = append(args, string(f.Status))
		where = append(where, fmt.Sprintf("status = $%d", len(args)))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q := "SELECT " + messageNoText + " FROM messages"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(" ORDER BY seq DESC LIMIT $%d", len(args))
	rows, _ := s.pool.Query(ctx, q, args...)
	out, err := collectMessages(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres store: listing messages: %w", err)
	}
	return out, nil
}
