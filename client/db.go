package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sealpost/sealpost/message"

	_ "modernc.org/sqlite" // the embedded SQLite driver, registered as "sqlite"
)

// db is the device's SQLite store: every message, sent and received, and the
// outbox state of those still Sending. One table, because a conversation is
// one time line; the outbox columns mirror the server queue (attempts, next
// attempt, last error) and are written before each attempt.
type db struct {
	sql *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS messages (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT, -- local order
	id           TEXT    NOT NULL,
	peer         TEXT    NOT NULL,
	outgoing     INTEGER NOT NULL,           -- 1: sent by this account
	text         TEXT,                       -- NULL once erased
	erased       INTEGER NOT NULL DEFAULT 0,
	status       TEXT    NOT NULL,           -- outgoing: sending/enqueued/delivered/error; incoming: received
	created_at   INTEGER NOT NULL,           -- unix ns: when the user sent it / when it arrived
	submitted_at INTEGER NOT NULL DEFAULT 0, -- unix ns, the server's time; 0 unknown
	delivered_at INTEGER NOT NULL DEFAULT 0,
	expires_at   INTEGER NOT NULL DEFAULT 0, -- the server's expiry
	unread       INTEGER NOT NULL DEFAULT 0,
	attempts     INTEGER NOT NULL DEFAULT 0, -- outbox: attempts made
	round_left   INTEGER NOT NULL DEFAULT 0, -- outbox: attempts left in this round
	next_attempt INTEGER NOT NULL DEFAULT 0, -- outbox: unix ns
	last_error   TEXT    NOT NULL DEFAULT '',
	UNIQUE (outgoing, peer, id)
);
CREATE INDEX IF NOT EXISTS messages_status ON messages (status, outgoing);
CREATE INDEX IF NOT EXISTS messages_peer ON messages (peer, seq);
CREATE INDEX IF NOT EXISTS messages_id ON messages (id);
`

// openDB opens (creating, 0600) the store. secure_delete makes SQLite
// overwrite erased text with zeros instead of leaving it in free space;
// synchronous=FULL makes a commit durable before we answer 200 to the
// server for a received message.
func openDB(path string) (*db, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open local store: %w", err)
	}
	f.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, fmt.Errorf("protect local store: %w", err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(FULL)&_pragma=secure_delete(ON)&_txlock=immediate"
	s, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open local store: %w", err)
	}
	// One connection: the client's writes are few, and a single connection
	// means a checkpoint after erasing never waits on our own readers.
	s.SetMaxOpenConns(1)
	if _, err := s.Exec(schema); err != nil {
		s.Close()
		return nil, fmt.Errorf("prepare local store %s: %w", path, err)
	}
	return &db{sql: s}, nil
}

func (d *db) close() error { return d.sql.Close() }

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

// row is one stored message with its outbox state.
type row struct {
	Seq         int64
	ID          string
	Peer        string
	Outgoing    bool
	Text        string
	Erased      bool
	Status      message.Status
	CreatedAt   time.Time
	SubmittedAt time.Time
	DeliveredAt time.Time
	ExpiresAt   time.Time
	Unread      bool
	Attempts    int
	RoundLeft   int
	NextAttempt time.Time
	LastError   string
}

const rowCols = `seq, id, peer, outgoing, coalesce(text, ''), erased, status, created_at, submitted_at,
	delivered_at, expires_at, unread, attempts, round_left, next_attempt, last_error`

func scanRow(sc interface{ Scan(...any) error }) (row, error) {
	var r row
	var created, submitted, delivered, expires, next int64
	err := sc.Scan(&r.Seq, &r.ID, &r.Peer, &r.Outgoing, &r.Text, &r.Erased, &r.Status, &created,
		&submitted, &delivered, &expires, &r.Unread, &r.Attempts, &r.RoundLeft, &next, &r.LastError)
	r.CreatedAt, r.SubmittedAt, r.DeliveredAt = fromNS(created), fromNS(submitted), fromNS(delivered)
	r.ExpiresAt, r.NextAttempt = fromNS(expires), fromNS(next)
	return r, err
}

func (d *db) query(ctx context.Context, where string, args ...any) ([]row, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT "+rowCols+" FROM messages "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read local store: %w", err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, fmt.Errorf("read local store: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read local store: %w", err)
	}
	return out, nil
}

// addOutgoing stores a new message in the outbox (status Sending) with a
// full first round ahead of it.
func (d *db) addOutgoing(ctx context.Context, id, to, text string, now time.Time, round int) (row, error) {
	_, err := d.sql.ExecContext(ctx, `INSERT INTO messages (id, peer, outgoing, text, status, created_at, round_left, next_attempt)
		VALUES (?, ?, 1, ?, ?, ?, ?, ?)`, id, to, text, message.Sending, ns(now), round, ns(now))
	if err != nil {
		return row{}, fmt.Errorf("store the message: %w", err)
	}
	return d.outgoing(ctx, id)
}

// addIncoming stores a received message unless its id from that sender is
// already there; it reports whether it was new. It returns only after the
// commit (synchronous=FULL), so the 200 answered afterwards is honest.
func (d *db) addIncoming(ctx context.Context, id, from, text string, submitted, now time.Time) (bool, error) {
	res, err := d.sql.ExecContext(ctx, `INSERT INTO messages (id, peer, outgoing, text, status, created_at, submitted_at, unread)
		VALUES (?, ?, 0, ?, 'received', ?, ?, 1) ON CONFLICT (outgoing, peer, id) DO NOTHING`,
		id, from, text, ns(now), ns(submitted))
	if err != nil {
		return false, fmt.Errorf("store the received message: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (d *db) outgoing(ctx context.Context, id string) (row, error) {
	rs, err := d.query(ctx, "WHERE outgoing = 1 AND id = ?", id)
	if err != nil {
		return row{}, err
	}
	if len(rs) == 0 {
		return row{}, ErrNotFound
	}
	return rs[0], nil
}

// sending lists the outbox in local order.
func (d *db) sending(ctx context.Context) ([]row, error) {
	return d.query(ctx, "WHERE outgoing = 1 AND status = ? ORDER BY seq", message.Sending)
}

// recordAttempt writes the attempt before it is made (so a crash during
// the attempt can never turn into a hot retry loop): one more attempt, one
// less left in the round, and when the next may start. It reports false if
// the message is no longer Sending.
func (d *db) recordAttempt(ctx context.Context, id string, next time.Time) (bool, error) {
	res, err := d.sql.ExecContext(ctx, `UPDATE messages SET attempts = attempts + 1,
		round_left = max(round_left - 1, 0), next_attempt = ? WHERE outgoing = 1 AND id = ? AND status = ?`,
		ns(next), id, message.Sending)
	if err != nil {
		return false, fmt.Errorf("record the attempt: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (d *db) setLastError(ctx context.Context, id, msg string) error {
	_, err := d.sql.ExecContext(ctx, `UPDATE messages SET last_error = ? WHERE outgoing = 1 AND id = ?`, msg, id)
	return err
}

// newRound gives every Sending message whose round is over a new one,
// starting now. Messages in the middle of a round keep it: a trigger starts
// one round, it does not stretch one.
func (d *db) newRound(ctx context.Context, attempts int, now time.Time) (int64, error) {
	res, err := d.sql.ExecContext(ctx, `UPDATE messages SET round_left = ?, next_attempt = ?
		WHERE outgoing = 1 AND status = ? AND round_left = 0`, attempts, ns(now), message.Sending)
	if err != nil {
		return 0, fmt.Errorf("start a new round: %w", err)
	}
	return res.RowsAffected()
}

// setStatus moves an outgoing message to status if it is in one of from;
// it reports whether it did. Leaving Sending clears the round.
func (d *db) setStatus(ctx context.Context, id string, status message.Status, from []message.Status, set map[string]any) (bool, error) {
	q := "UPDATE messages SET status = ?, round_left = 0"
	args := []any{status}
	for _, col := range []string{"submitted_at", "delivered_at", "expires_at", "last_error"} {
		if v, ok := set[col]; ok {
			q += ", " + col + " = ?"
			args = append(args, v)
		}
	}
	q += " WHERE outgoing = 1 AND id = ? AND status IN (" + placeholders(len(from)) + ")"
	args = append(args, id)
	for _, s := range from {
		args = append(args, s)
	}
	res, err := d.sql.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("update the message status: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func placeholders(n int) string {
	s := ""
	for i := 0; i < n; i++ {
		if i > 0 {
			s += ","
		}
		s += "?"
	}
	return s
}

// eraseBefore erases the text of every message created before cutoff that
// has left the outbox: the column is set to NULL, and secure_delete zeroes
// the old bytes in the page. The caller then checkpoints, so that no older
// copy of the page stays in the WAL. It returns the number of messages
// erased.
func (d *db) eraseBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := d.sql.ExecContext(ctx, `UPDATE messages SET text = NULL, erased = 1
		WHERE erased = 0 AND created_at <= ? AND NOT (outgoing = 1 AND status = ?)`, ns(cutoff), message.Sending)
	if err != nil {
		return 0, fmt.Errorf("erase expired texts: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// checkpoint copies the WAL into the database file and truncates it. Another
// process reading at that moment (sealpost history) can make it partial;
// then it reports an error and the next sweep tries again.
func (d *db) checkpoint(ctx context.Context) error {
	var busy, logPages, done int
	if err := d.sql.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &done); err != nil {
		return fmt.Errorf("checkpoint the local store: %w", err)
	}
	if busy != 0 {
		return errors.New("checkpoint the local store: another process is reading it; will try again")
	}
	return nil
}

// oldestUnerased returns the creation time of the oldest message whose
// text is still kept and that has left the outbox, or zero.
func (d *db) oldestUnerased(ctx context.Context) (time.Time, error) {
	var v sql.NullInt64
	err := d.sql.QueryRowContext(ctx, `SELECT min(created_at) FROM messages
		WHERE erased = 0 AND NOT (outgoing = 1 AND status = ?)`, message.Sending).Scan(&v)
	if err != nil {
		return time.Time{}, fmt.Errorf("read local store: %w", err)
	}
	return fromNS(v.Int64), nil
}

func (d *db) markRead(ctx context.Context, peer string) error {
	_, err := d.sql.ExecContext(ctx, `UPDATE messages SET unread = 0 WHERE peer = ? AND outgoing = 0 AND unread = 1`, peer)
	return err
}
