package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations[i] brings the schema from version i to version i+1; the version
// is kept in PRAGMA user_version. Append only: never edit a released step.
//
// Times are INTEGER Unix nanoseconds, 0 for the zero time, so they compare
// and index as numbers and round-trip exactly.
var migrations = []string{
	// 1: the first schema.
	`
CREATE TABLE accounts (
	name          TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL,
	sip_secrets   BLOB,
	created_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE tokens (
	hash       BLOB PRIMARY KEY,
	account    TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX tokens_account ON tokens (account);

-- seq is the rowid. Senders and recipients are not foreign keys: the server
-- checks that the recipient exists, and DeleteAccount removes an account's
-- messages itself.
CREATE TABLE messages (
	seq          INTEGER PRIMARY KEY,
	from_acct    TEXT NOT NULL,
	id           TEXT NOT NULL,
	to_acct      TEXT NOT NULL,
	sealed       BLOB,
	key_period   INTEGER NOT NULL,
	status       TEXT NOT NULL,
	submitted_at INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	delivered_at INTEGER NOT NULL,
	attempts     INTEGER NOT NULL,
	next_attempt INTEGER NOT NULL,
	last_error   TEXT NOT NULL
);
-- (from, id) is the idempotency key of Submit.
CREATE UNIQUE INDEX messages_from_id ON messages (from_acct, id);
-- The partial indexes hold only what the delivery scheduler and the expiry
-- sweep look at, so they stay small however long the history grows.
CREATE INDEX messages_pending ON messages (to_acct, seq) WHERE status = 'enqueued';
CREATE INDEX messages_due ON messages (expires_at) WHERE status = 'enqueued';
CREATE INDEX messages_to ON messages (to_acct, seq);

-- mailboxes counts enqueued messages per recipient, so that the mailbox
-- bound of Submit and CountPending cost one row read, not an index scan.
-- The triggers below keep it in the same statement that changes a
-- message, so no code path can forget it.
CREATE TABLE mailboxes (
	account TEXT PRIMARY KEY,
	pending INTEGER NOT NULL CHECK (pending >= 0)
) WITHOUT ROWID;

CREATE TRIGGER mailbox_in AFTER INSERT ON messages WHEN NEW.status = 'enqueued'
BEGIN
	INSERT INTO mailboxes (account, pending) VALUES (NEW.to_acct, 1)
		ON CONFLICT (account) DO UPDATE SET pending = pending + 1;
END;
CREATE TRIGGER mailbox_out AFTER UPDATE OF status ON messages
	WHEN OLD.status = 'enqueued' AND NEW.status <> 'enqueued'
BEGIN
	UPDATE mailboxes SET pending = pending - 1 WHERE account = OLD.to_acct;
END;
CREATE TRIGGER mailbox_deleted AFTER DELETE ON messages WHEN OLD.status = 'enqueued'
BEGIN
	UPDATE mailboxes SET pending = pending - 1 WHERE account = OLD.to_acct;
END;

-- AUTOINCREMENT: a report's seq is handed to the forwarder and deleted by
-- it later, so a seq must never be reused for another report.
CREATE TABLE reports (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	to_acct      TEXT NOT NULL,
	message_id   TEXT NOT NULL,
	recipient    TEXT NOT NULL,
	status       TEXT NOT NULL,
	at           INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	attempts     INTEGER NOT NULL,
	next_attempt INTEGER NOT NULL
);
CREATE INDEX reports_to ON reports (to_acct, seq);
CREATE INDEX reports_due ON reports (expires_at);
CREATE INDEX reports_recipient ON reports (recipient);

CREATE TABLE data_keys (
	period  INTEGER PRIMARY KEY,
	wrapped BLOB NOT NULL
);
`,
	// 2: drop two indexes that only rare operator commands used (the
	// listing by account, account deletion). Each was a B-tree keyed by
	// account, so every stored message or report dirtied one more page at
	// a random place; the writer spent a sixth of its time on them.
	`
DROP INDEX messages_to;
DROP INDEX reports_recipient;
`,
	// 3: the delivered report is queued by a trigger, in the statement
	// that marks the message delivered, so that marking one is one
	// statement (no savepoint, one call into SQLite). The report waits as
	// long as the message was allowed to wait, counted from its delivery.
	`
CREATE TRIGGER report_delivered AFTER UPDATE OF status ON messages
	WHEN OLD.status = 'enqueued' AND NEW.status = 'delivered'
BEGIN
	INSERT INTO reports (to_acct, message_id, recipient, status, at, expires_at, attempts, next_attempt)
	VALUES (OLD.from_acct, OLD.id, OLD.to_acct, 'delivered', NEW.delivered_at,
		NEW.delivered_at + (OLD.expires_at - OLD.submitted_at), 0, 0);
END;
`,
	// 4: the store is the schedule. parked (0 or 1) marks a message that
	// has used up its retry budget: the pending listing skips it and it
	// waits for expiry. next_attempt, written since step 1, is now read
	// by the listing too. No index: the listing walks messages_pending
	// (one recipient's enqueued messages, bounded by the mailbox bound)
	// and tests both on the row it reads anyway.
	`
ALTER TABLE messages ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;
`,
}

// SchemaVersion is the schema version this build writes.
var SchemaVersion = len(migrations)

// migrate brings the database to SchemaVersion in one transaction per step.
// A database written by a newer build is refused rather than misread. The
// transactions are IMMEDIATE so that two processes opening a fresh file at
// once take turns instead of both migrating.
func migrate(ctx context.Context, conn *sql.Conn) error {
	for {
		done, err := migrateStep(ctx, conn)
		if err != nil || done {
			return err
		}
	}
}

func migrateStep(ctx context.Context, conn *sql.Conn) (done bool, err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return false, fmt.Errorf("starting schema migration: %w", err)
	}
	defer func() {
		if err != nil || done {
			conn.ExecContext(ctx, "ROLLBACK")
		}
	}()
	var v int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return false, fmt.Errorf("reading schema version: %w", err)
	}
	if v > len(migrations) {
		return false, fmt.Errorf("schema version %d is newer than this build supports (%d); run a newer sealpostd", v, len(migrations))
	}
	if v == len(migrations) {
		return true, nil
	}
	if _, err := conn.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("migrating schema from version %d to %d: %w", v, v+1, err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
		return false, fmt.Errorf("recording schema version %d: %w", v+1, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return false, fmt.Errorf("committing schema version %d: %w", v+1, err)
	}
	return false, nil
}
