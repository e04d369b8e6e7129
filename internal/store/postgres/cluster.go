package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sealpost/sealpost/internal/store"
)

// Bindings and leases of several nodes (store.Cluster). Each is one
// statement: the conditions that decide who wins are in its WHERE, so two
// nodes racing for one account are ordered by PostgreSQL's row lock.

// Bind implements store.Cluster.
func (s *Store) Bind(ctx context.Context, account, node string, expires time.Time) (store.Binding, error) {
	b := store.Binding{Account: account, Node: node, ExpiresAt: norm(expires)}
	err := s.pool.QueryRow(ctx, `
INSERT INTO bindings (account, node, epoch, expires_at)
VALUES ($1, $2, nextval('binding_epoch'), $3)
ON CONFLICT (account) DO UPDATE SET node = excluded.node, epoch = excluded.epoch, expires_at = excluded.expires_at
RETURNING epoch`, account, node, encTime(expires)).Scan(&b.Epoch)
	if err != nil {
		return store.Binding{}, fmt.Errorf("postgres store: binding %s to node %s: %w", account, node, err)
	}
	return b, nil
}

// RefreshBinding implements store.Cluster.
func (s *Store) RefreshBinding(ctx context.Context, b store.Binding) error {
	tag, err := s.pool.Exec(ctx, `UPDATE bindings SET expires_at = $4 WHERE account = $1 AND node = $2 AND epoch = $3`,
		b.Account, b.Node, b.Epoch, encTime(b.ExpiresAt))
	return affected("refreshing the binding of "+b.Account, tag, err)
}

// Binding implements store.Cluster.
func (s *Store) Binding(ctx context.Context, account string) (store.Binding, error) {
	b := store.Binding{Account: account}
	var exp int64
	err := s.pool.QueryRow(ctx, `SELECT node, epoch, expires_at FROM bindings WHERE account = $1`, account).Scan(&b.Node, &b.Epoch, &exp)
	if err != nil {
		return store.Binding{}, notFound(err, "reading the binding of "+account)
	}
	b.ExpiresAt = decTime(exp)
	return b, nil
}

// Unbind implements store.Cluster.
func (s *Store) Unbind(ctx context.Context, b store.Binding) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM bindings WHERE account = $1 AND node = $2 AND epoch = $3`, b.Account, b.Node, b.Epoch); err != nil {
			return fmt.Errorf("postgres store: removing the binding of %s: %w", b.Account, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM leases WHERE account = $1 AND holder = $2 AND epoch = $3`, b.Account, b.Node, b.Epoch); err != nil {
			return fmt.Errorf("postgres store: removing the lease of %s: %w", b.Account, err)
		}
		return nil
	})
}

// TakeLease implements store.Cluster.
func (s *Store) TakeLease(ctx context.Context, b store.Binding, now, until time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
INSERT INTO leases (account, holder, epoch, until)
SELECT $1, $2, $3, $5
WHERE EXISTS (SELECT 1 FROM bindings WHERE account = $1 AND node = $2 AND epoch = $3)
ON CONFLICT (account) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, until = excluded.until
WHERE (leases.holder = excluded.holder AND leases.epoch = excluded.epoch)
   OR leases.epoch < excluded.epoch
   OR leases.until <= $4`, b.Account, b.Node, b.Epoch, encTime(now), encTime(until))
	if err != nil {
		return false, fmt.Errorf("postgres store: taking the delivery lease of %s: %w", b.Account, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ClearNode implements store.Cluster.
func (s *Store) ClearNode(ctx context.Context, node string) (int, error) {
	var n int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM bindings WHERE node = $1`, node)
		if err != nil {
			return fmt.Errorf("postgres store: clearing the bindings of node %s: %w", node, err)
		}
		n = int(tag.RowsAffected())
		if _, err := tx.Exec(ctx, `DELETE FROM leases WHERE holder = $1`, node); err != nil {
			return fmt.Errorf("postgres store: clearing the leases of node %s: %w", node, err)
		}
		return nil
	})
	return n, err
}

var _ store.Cluster = (*Store)(nil)
