package sqlite

import (
	"context"
	"fmt"
)

// DataKey returns the wrapped data key of a period, or ErrNotFound.
func (s *Store) DataKey(ctx context.Context, period int64) ([]byte, error) {
	var wrapped []byte
	if err := s.rs.dataKey.QueryRowContext(ctx, period).Scan(&wrapped); err != nil {
		return nil, notFound(err, fmt.Sprintf("data key of period %d", period))
	}
	return wrapped, nil
}

// PutDataKey stores the wrapped key of a period unless one exists, and
// returns the stored one, so that concurrent creators all use the same key.
func (s *Store) PutDataKey(ctx context.Context, period int64, wrapped []byte) ([]byte, error) {
	var stored []byte
	err := s.doAtomic(ctx, func(w *writer) error {
		if _, err := w.conn.ExecContext(w.ctx,
			"INSERT INTO data_keys (period, wrapped) VALUES (?, ?) ON CONFLICT (period) DO NOTHING", period, wrapped); err != nil {
			return fmt.Errorf("sqlite store: storing data key of period %d: %w", period, err)
		}
		if err := w.conn.QueryRowContext(w.ctx, "SELECT wrapped FROM data_keys WHERE period = ?", period).Scan(&stored); err != nil {
			return fmt.Errorf("sqlite store: reading back data key of period %d: %w", period, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return stored, nil
}

// DeleteDataKeys destroys the wrapped keys of every period < before. The
// rows are overwritten in the database pages (secure_delete), and, when any
// key was destroyed, a TRUNCATE checkpoint removes the -wal file's old page
// images that still held them. The deletion is committed even if that
// checkpoint cannot complete at once (a long reader); the failure is logged
// and the next checkpoint removes the old images.
func (s *Store) DeleteDataKeys(ctx context.Context, before int64) (int, error) {
	var n int64
	err := s.doAtomic(ctx, func(w *writer) error {
		res, err := w.conn.ExecContext(w.ctx, "DELETE FROM data_keys WHERE period < ?", before)
		if err != nil {
			return fmt.Errorf("sqlite store: destroying data keys before period %d: %w", before, err)
		}
		n, err = res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite store: destroying data keys before period %d: %w", before, err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		if err := s.Checkpoint(ctx); err != nil {
			s.log.Warn("sqlite store: destroyed data keys may linger in the WAL until the next checkpoint",
				"periods_before", before, "destroyed", n, "err", err)
		}
	}
	return int(n), nil
}
