package sqlite

import (
	"context"
	"fmt"

	"github.com/sealpost/sealpost/internal/store"
)

// PendingReports returns up to limit (<= 0: all) reports waiting for the
// account, in Seq order.
func (s *Store) PendingReports(ctx context.Context, to string, limit int) ([]store.Report, error) {
	rows, err := s.rs.pendingReports.QueryContext(ctx, to, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite store: listing reports for %q: %w", to, err)
	}
	defer rows.Close()
	var out []store.Report
	for rows.Next() {
		r, err := scanReport(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: listing reports for %q: %w", to, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: listing reports for %q: %w", to, err)
	}
	return out, nil
}

// DeleteReport removes a forwarded report; ErrNotFound if absent.
func (s *Store) DeleteReport(ctx context.Context, seq int64) error {
	return s.doAtomic(ctx, func(w *writer) error {
		return affected(fmt.Sprintf("deleting report %d", seq))(
			w.conn.ExecContext(w.ctx, "DELETE FROM reports WHERE seq = ?", seq))
	})
}
