package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sealpost/sealpost/internal/store"
)

// FailMailbox implements store.MailboxFailer: the messages waiting for an
// account the operator deletes fail at once, each with an Expired report
// for its sender, as if they had expired.
func (s *Store) FailMailbox(ctx context.Context, to string, at time.Time) ([]store.Key, error) {
	var failed []store.Key
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		failed = nil
		atN := encTime(at)
		rows, _ := tx.Query(ctx, `WITH e AS (
				UPDATE messages SET status = 'expired'
				WHERE to_acct = $1 AND from_acct <> $1 AND status = 'enqueued'
				RETURNING seq, key_period, from_acct, id, to_acct, submitted_at, expires_at),
			gone AS (DELETE FROM sealed_texts t USING e WHERE t.key_period = e.key_period AND t.seq = e.seq),
			r AS (INSERT INTO reports (to_acct, message_id, recipient, status, at, expires_at)
				SELECT from_acct, id, to_acct, 'expired', $2, $2 + (expires_at - submitted_at) FROM e ORDER BY seq)
			SELECT from_acct, id FROM e ORDER BY seq`, to, atN)
		keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Key, error) {
			var k store.Key
			err := r.Scan(&k.From, &k.ID)
			return k, err
		})
		if err != nil {
			return err
		}
		failed = keys
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres store: failing the messages to %q: %w", to, err)
	}
	return failed, nil
}
