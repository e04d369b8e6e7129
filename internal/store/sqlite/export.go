package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/sealpost/sealpost/internal/store"
)

// Export reads the whole store in one read transaction (one snapshot of the
// WAL), for sealpostd store copy. It holds everything in memory: it is
// meant for a single node's store, with the server stopped.
func (s *Store) Export(ctx context.Context) (*store.Snapshot, error) {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite store: export: %w", err)
	}
	defer tx.Rollback()
	snap := &store.Snapshot{DataKeys: map[int64][]byte{}}
	each := func(what, q string, scan func(*sql.Rows) error) error {
		rows, err := tx.QueryContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlite store: export: reading %s: %w", what, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return fmt.Errorf("sqlite store: export: reading %s: %w", what, err)
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlite store: export: reading %s: %w", what, err)
		}
		return nil
	}
	err = each("accounts", "SELECT name, password_hash, sip_secrets, created_at FROM accounts ORDER BY name", func(r *sql.Rows) error {
		a, err := scanAccount(r)
		snap.Accounts = append(snap.Accounts, a)
		return err
	})
	if err == nil {
		err = each("tokens", "SELECT hash, account, created_at, expires_at FROM tokens", func(r *sql.Rows) error {
			var t store.Token
			var created, expires int64
			err := r.Scan(&t.Hash, &t.Account, &created, &expires)
			t.CreatedAt, t.ExpiresAt = decTime(created), decTime(expires)
			snap.Tokens = append(snap.Tokens, t)
			return err
		})
	}
	if err == nil {
		err = each("messages", "SELECT "+messageCols+" FROM messages ORDER BY seq", func(r *sql.Rows) error {
			m, err := scanMessage(r)
			snap.Messages = append(snap.Messages, m)
			return err
		})
	}
	if err == nil {
		err = each("reports", "SELECT "+reportCols+" FROM reports ORDER BY seq", func(r *sql.Rows) error {
			rp, err := scanReport(r)
			snap.Reports = append(snap.Reports, rp)
			return err
		})
	}
	if err == nil {
		err = each("data keys", "SELECT period, wrapped FROM data_keys", func(r *sql.Rows) error {
			var p int64
			var w []byte
			err := r.Scan(&p, &w)
			snap.DataKeys[p] = w
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	return snap, nil
}
