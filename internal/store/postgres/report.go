package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

const reportCols = "seq, to_acct, message_id, recipient, status, at, expires_at"

func scanReport(row pgx.Row) (store.Report, error) {
	var r store.Report
	var status string
	var at, expires int64
	if err := row.Scan(&r.Seq, &r.To, &r.MessageID, &r.Recipient, &status, &at, &expires); err != nil {
		return store.Report{}, err
	}
	r.Status = message.Status(status)
	r.At, r.ExpiresAt = decTime(at), decTime(expires)
	return r, nil
}

// PendingReports returns up to limit (<= 0: all) reports waiting for the
// account, in Seq order.
func (s *Store) PendingReports(ctx context.Context, to string, limit int) ([]store.Report, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+reportCols+" FROM reports WHERE to_acct = $1 ORDER BY seq LIMIT $2", to, limitArg(limit))
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Report, error) { return scanReport(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres store: listing reports for %q: %w", to, err)
	}
	return out, nil
}

// DeleteReport removes a forwarded report; ErrNotFound if absent.
func (s *Store) DeleteReport(ctx context.Context, seq int64) error {
	tag, err := s.pool.Exec(ctx, "DELETE FROM reports WHERE seq = $1", seq)
	return affected(fmt.Sprintf("deleting report %d", seq), tag, err)
}
