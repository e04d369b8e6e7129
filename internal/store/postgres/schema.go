package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations[i] brings the schema from version i to version i+1; applied
// versions are recorded in sealpost_schema. Append only: never edit a
// released step.
//
// Times are bigint Unix nanoseconds, 0 for the zero time, as in the SQLite
// backend: they compare and index as numbers and round-trip exactly.
var migrations = []string{
	// 1: the first schema.
	`
CREATE TABLE accounts (
	name          text PRIMARY KEY,
	password_hash text NOT NULL,
	sip_secrets   bytea,
	created_at    bigint NOT NULL
);

CREATE TABLE tokens (
	hash       bytea PRIMARY KEY,
	account    text NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
	created_at bigint NOT NULL,
	expires_at bigint NOT NULL
);
CREATE INDEX tokens_account ON tokens (account);

-- Seqs are drawn by the submitting transaction after it holds the
-- recipient's mailbox lock (submit.go), so for one recipient seq order is
-- commit order. key_period stays set after delivery or expiry (reads show
-- 0) so that the text can be found in its partition.
CREATE SEQUENCE message_seq;
CREATE TABLE messages (
	seq          bigint PRIMARY KEY,
	from_acct    text NOT NULL,
	id           text NOT NULL,
	to_acct      text NOT NULL,
	key_period   bigint NOT NULL,
	status       text NOT NULL,
	submitted_at bigint NOT NULL,
	expires_at   bigint NOT NULL,
	delivered_at bigint NOT NULL,
	attempts     integer NOT NULL,
	next_attempt bigint NOT NULL,
	last_error   text NOT NULL,
	-- the retry budget is used up: never listed again, waits for expiry
	parked       boolean NOT NULL DEFAULT false,
	-- the idempotency key of Submit
	UNIQUE (from_acct, id)
);
-- Partial indexes: only what the scheduler and the sweep look at.
CREATE INDEX messages_pending ON messages (to_acct, seq) WHERE status = 'enqueued';
CREATE INDEX messages_due ON messages (expires_at) WHERE status = 'enqueued';

-- Sealed text lives apart from the status rows, one partition per key
-- period (datakey.go): when a period ends, its partition is dropped in the
-- transaction that destroys its data key, so a whole period goes at once
-- and leaves no dead rows behind for VACUUM.
CREATE TABLE sealed_texts (
	key_period bigint NOT NULL,
	seq        bigint NOT NULL,
	sealed     bytea NOT NULL,
	PRIMARY KEY (key_period, seq)
) PARTITION BY LIST (key_period);
-- The periods that have a partition.
CREATE TABLE sealed_periods (
	period bigint PRIMARY KEY
);

CREATE TABLE reports (
	seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	to_acct    text NOT NULL,
	message_id text NOT NULL,
	recipient  text NOT NULL,
	status     text NOT NULL,
	at         bigint NOT NULL,
	expires_at bigint NOT NULL
);
CREATE INDEX reports_to ON reports (to_acct, seq);
CREATE INDEX reports_due ON reports (expires_at);

CREATE TABLE data_keys (
	period  bigint PRIMARY KEY,
	wrapped bytea NOT NULL
);
`,
	// 2: several nodes (cluster.go): which node holds each account's
	// device (bindings) and which node may deliver to it (leases).
	`
-- Epochs are drawn from one sequence, so a later registration, on any
-- node, always has a larger epoch than every earlier one.
CREATE SEQUENCE binding_epoch;
CREATE TABLE bindings (
	account    text PRIMARY KEY,
	node       text NOT NULL,
	epoch      bigint NOT NULL,
	expires_at bigint NOT NULL
);
CREATE INDEX bindings_node ON bindings (node);
CREATE TABLE leases (
	account text PRIMARY KEY,
	holder  text NOT NULL,
	epoch   bigint NOT NULL,
	until   bigint NOT NULL
);
CREATE INDEX leases_holder ON leases (holder);
`,
}

// SchemaVersion is the schema version this build writes.
var SchemaVersion = len(migrations)

// migrate brings the database to SchemaVersion, one transaction per step,
// holding a session advisory lock so that nodes starting at once take turns:
// the second finds the work done. A database written by a newer build is
// refused rather than misread.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres store: connecting for the schema migration: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockMigrate); err != nil {
		return fmt.Errorf("postgres store: waiting for the schema migration lock: %w", err)
	}
	defer func() {
		// A failed unlock leaves the lock with the session: close it.
		if _, err := conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", lockMigrate); err != nil {
			conn.Conn().Close(context.Background())
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS sealpost_schema (
		version    integer PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres store: creating the schema version table: %w", err)
	}
	var v int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM sealpost_schema").Scan(&v); err != nil {
		return fmt.Errorf("postgres store: reading the schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("postgres store: schema version %d is newer than this build supports (%d); run a newer sealpostd", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO sealpost_schema (version) VALUES ($1)", v+1)
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres store: migrating the schema from version %d to %d: %w", v, v+1, err)
		}
	}
	return nil
}
