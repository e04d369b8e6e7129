package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// readStmts are the prepared statements of the hot read paths. database/sql
// prepares each lazily on every pool connection that runs it.
type readStmts struct {
	message        *sql.Stmt
	pending        *sql.Stmt
	tokenByHash    *sql.Stmt
	pendingReports *sql.Stmt
	dataKey        *sql.Stmt
	all            []*sql.Stmt
}

func (r *readStmts) prepare(ctx context.Context, db *sql.DB) error {
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{
		{&r.message, "SELECT " + messageCols + " FROM messages WHERE from_acct = ? AND id = ?"},
		{&r.pending, "SELECT " + messageCols + ` FROM messages
			WHERE to_acct = ?1 AND status = 'enqueued' AND seq > ?2 AND parked = 0 AND (?3 = 0 OR next_attempt <= ?3)
			ORDER BY seq LIMIT ?4`},
		{&r.tokenByHash, "SELECT hash, account, created_at, expires_at FROM tokens WHERE hash = ? AND expires_at > ?"},
		{&r.pendingReports, "SELECT " + reportCols + " FROM reports WHERE to_acct = ? ORDER BY seq LIMIT ?"},
		{&r.dataKey, "SELECT wrapped FROM data_keys WHERE period = ?"},
	} {
		st, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			r.close()
			return fmt.Errorf("sqlite store: preparing %q: %w", p.sql, err)
		}
		*p.st = st
		r.all = append(r.all, st)
	}
	return nil
}

func (r *readStmts) close() error {
	var errs []error
	for _, st := range r.all {
		errs = append(errs, st.Close())
	}
	r.all = nil
	return errors.Join(errs...)
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

// norm returns t as it reads back from the database, so a value returned
// from a write equals the value a later read returns.
func norm(t time.Time) time.Time { return decTime(encTime(t)) }

// limitArg turns "limit <= 0" into SQLite's "no limit".
func limitArg(limit int) int {
	if limit <= 0 {
		return -1
	}
	return limit
}

const messageCols = `seq, from_acct, id, to_acct, sealed, key_period, status,
	submitted_at, expires_at, delivered_at, attempts, next_attempt, last_error, parked`

// messageColsNoText is messageCols with the sealed text left out, for
// listings that must never carry it.
const messageColsNoText = `seq, from_acct, id, to_acct, NULL, key_period, status,
	submitted_at, expires_at, delivered_at, attempts, next_attempt, last_error, parked`

type scanner interface{ Scan(dest ...any) error }

func scanMessage(sc scanner) (store.Message, error) {
	var m store.Message
	var status string
	var submitted, expires, delivered, next int64
	err := sc.Scan(&m.Seq, &m.From, &m.ID, &m.To, &m.Sealed, &m.KeyPeriod, &status,
		&submitted, &expires, &delivered, &m.Attempts, &next, &m.LastError, &m.Parked)
	if err != nil {
		return store.Message{}, err
	}
	m.Status = message.Status(status)
	m.SubmittedAt, m.ExpiresAt, m.DeliveredAt, m.NextAttempt = decTime(submitted), decTime(expires), decTime(delivered), decTime(next)
	return m, nil
}

func scanMessages(rows *sql.Rows, err error) ([]store.Message, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

const reportCols = "seq, to_acct, message_id, recipient, status, at, expires_at"

func scanReport(sc scanner) (store.Report, error) {
	var r store.Report
	var status string
	var at, expires int64
	if err := sc.Scan(&r.Seq, &r.To, &r.MessageID, &r.Recipient, &status, &at, &expires); err != nil {
		return store.Report{}, err
	}
	r.Status = message.Status(status)
	r.At, r.ExpiresAt = decTime(at), decTime(expires)
	return r, nil
}

func scanAccount(sc scanner) (store.Account, error) {
	var a store.Account
	var created int64
	if err := sc.Scan(&a.Name, &a.PasswordHash, &a.SIPSecrets, &created); err != nil {
		return store.Account{}, err
	}
	a.CreatedAt = decTime(created)
	return a, nil
}

// notFound maps sql.ErrNoRows to store.ErrNotFound and wraps anything else
// with what was being done.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite store: %s: %w", what, store.ErrNotFound)
	}
	return fmt.Errorf("sqlite store: %s: %w", what, err)
}

// affected returns a check for an Exec result that maps "no row changed" to
// store.ErrNotFound; what says what was being done. Use it as
// affected(what)(conn.ExecContext(…)).
func affected(what string) func(sql.Result, error) error {
	return func(res sql.Result, err error) error {
		if err := rowChanged(res, err); err != nil {
			return fmt.Errorf("sqlite store: %s: %w", what, err)
		}
		return nil
	}
}

// keyedRow is affected for a write of one message by its key, run once
// per delivered message: its error text, made from format with the key's
// ID and From, is made only when there is an error.
func keyedRow(res sql.Result, err error, format string, k store.Key) error {
	if err := rowChanged(res, err); err != nil {
		return fmt.Errorf("sqlite store: "+format+": %w", k.ID, k.From, err)
	}
	return nil
}

// rowChanged is nil when an Exec changed a row, store.ErrNotFound when it
// changed none, or why it failed.
func rowChanged(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}
