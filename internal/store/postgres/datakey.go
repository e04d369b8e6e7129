package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Crypto-shredding on PostgreSQL. Each key period's sealed text has its own
// partition of sealed_texts. Submit creates the partition of a new period
// (ensurePartitions) before it writes the first text there; DeleteDataKeys
// drops the partitions of ended periods and deletes their wrapped data keys
// in the same transaction. An expired message's text therefore stays, no
// longer readable through the store, in its period's partition until the
// period ends (at most one key period after the message expired), and then
// goes with the whole period in one DROP, which writes no dead rows for
// VACUUM and frees the period's files at once. A delivered message's text
// is deleted at delivery.
//
// What this does not do: PostgreSQL does not overwrite freed space, and WAL
// segments, WAL archives and base backups keep what was written. They hold
// sealed text and wrapped keys; both are useless without the master key,
// which lives in the data folder, never in the database.

// partitionName names the partition of a period's sealed text.
func partitionName(period int64) string {
	return "sealed_texts_p" + strings.Replace(strconv.FormatInt(period, 10), "-", "m", 1)
}

// ensurePartitions makes sure every one of periods has its sealed_texts
// partition. It creates missing ones in a transaction of its own, under the
// partition lock, so that nodes creating the same period take turns and a
// drop never runs beside a create.
func (s *Store) ensurePartitions(ctx context.Context, periods []int64) error {
	s.partMu.Lock()
	var missing []int64
	for _, p := range periods {
		if !s.parts[p] && !slices.Contains(missing, p) {
			missing = append(missing, p)
		}
	}
	s.partMu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockPartitions); err != nil {
			return err
		}
		for _, p := range missing {
			name := pgx.Identifier{partitionName(p)}.Sanitize()
			if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF sealed_texts FOR VALUES IN (%d)", name, p)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO sealed_periods (period) VALUES ($1) ON CONFLICT DO NOTHING", p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres store: creating the sealed-text partitions of periods %v: %w", missing, err)
	}
	s.partMu.Lock()
	for _, p := range missing {
		s.parts[p] = true
	}
	s.partMu.Unlock()
	return nil
}

// forgetPartitions clears the cache of known partitions, after another node
// may have dropped one.
func (s *Store) forgetPartitions() {
	s.partMu.Lock()
	clear(s.parts)
	s.partMu.Unlock()
}

// DataKey returns the wrapped data key of a period, or ErrNotFound.
func (s *Store) DataKey(ctx context.Context, period int64) ([]byte, error) {
	var wrapped []byte
	if err := s.pool.QueryRow(ctx, "SELECT wrapped FROM data_keys WHERE period = $1", period).Scan(&wrapped); err != nil {
		return nil, notFound(err, fmt.Sprintf("data key of period %d", period))
	}
	return wrapped, nil
}

// PutDataKey stores the wrapped key of a period unless one exists, and
// returns the stored one, so that concurrent creators (on any node) all use
// the same key.
func (s *Store) PutDataKey(ctx context.Context, period int64, wrapped []byte) ([]byte, error) {
	var stored []byte
	err := s.pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO data_keys (period, wrapped) VALUES ($1, $2) ON CONFLICT (period) DO NOTHING RETURNING wrapped)
		SELECT wrapped FROM ins UNION ALL SELECT wrapped FROM data_keys WHERE period = $1 LIMIT 1`,
		period, wrapped).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		// The row another creator inserted was not yet visible to this
		// statement's snapshot when it started; now it is.
		err = s.pool.QueryRow(ctx, "SELECT wrapped FROM data_keys WHERE period = $1", period).Scan(&stored)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres store: storing data key of period %d: %w", period, err)
	}
	return stored, nil
}

// DeleteDataKeys destroys the wrapped keys of every period < before and
// drops those periods' sealed-text partitions, in one transaction, and
// returns how many keys it destroyed.
func (s *Store) DeleteDataKeys(ctx context.Context, before int64) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockPartitions); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, "DELETE FROM sealed_periods WHERE period < $1 RETURNING period", before)
		periods, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		for _, p := range periods {
			if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{partitionName(p)}.Sanitize()); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, "DELETE FROM data_keys WHERE period < $1", before)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres store: destroying data keys and texts of periods before %d: %w", before, err)
	}
	s.partMu.Lock()
	for p := range s.parts {
		if p < before {
			delete(s.parts, p)
		}
	}
	s.partMu.Unlock()
	return int(n), nil
}
