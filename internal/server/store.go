package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/store/postgres"
)

// IsPostgresURL reports whether a --store value names a PostgreSQL store.
func IsPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// openPostgres opens the PostgreSQL store at url (migrating its schema) and
// feeds the store metrics from its commits. The data folder still holds the
// master key and the certificates: the database never sees either.
func (s *Server) openPostgres(url string) (*postgres.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, url, postgres.Options{
		Logger: s.log.With("part", "store"),
		OnCommit: func(ops int, took time.Duration) {
			s.metrics.StoreCommitOps.Observe(float64(ops))
			s.metrics.StoreCommitTime.Observe(took.Seconds())
		},
		// The COMMIT, in which PostgreSQL flushes its WAL to disk.
		OnSync: func(took time.Duration) { s.metrics.StoreSyncTime.Observe(took.Seconds()) },
	})
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	return st, nil
}
