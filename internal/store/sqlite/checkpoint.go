package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
)

// Checkpoints run beside the writer, not in it. SQLite's automatic
// checkpoint would run inside the COMMIT of whichever batch crosses the
// threshold, so that batch, and every caller waiting behind it, would wait
// for megabytes of pages to be copied into the database file and fsynced.
// Here the writer connection has wal_autocheckpoint off and kicks this
// goroutine every checkpointEvery writes; it copies the WAL into the
// database (PASSIVE: it never blocks the writer or readers) on its own
// connection while the writer goes on appending. Pages written many times
// between two checkpoints are copied once.
const (
	// checkpointEvery writes (~8 pages each at most) keep the WAL near
	// the 64 MiB that journal_size_limit trims it back to.
	checkpointEvery = 2048
	// walFramesLimit is where the checkpointer stops being polite: a WAL
	// that PASSIVE checkpoints could not reset (the writer never paused)
	// is checkpointed with RESTART, which makes the writer wait once so
	// the WAL can start over instead of growing without bound.
	walFramesLimit = 65536
)

type checkpointer struct {
	db   *sql.DB
	log  *slog.Logger
	kick chan struct{}
	done chan struct{}
}

func (s *Store) startCheckpointer() error {
	db, err := sql.Open("sqlite", s.dsn())
	if err != nil {
		return fmt.Errorf("sqlite store: opening checkpoint connection on %s: %w", s.path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	s.ckpt = &checkpointer{db: db, log: s.log, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go s.ckpt.run()
	return nil
}

// request asks for a checkpoint without waiting; requests made while one
// runs are merged into the next.
func (c *checkpointer) request() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	for range c.kick {
		frames, err := c.checkpoint("PASSIVE")
		if err == nil && frames > walFramesLimit {
			_, err = c.checkpoint("RESTART")
		}
		if err != nil {
			// Not fatal: the WAL keeps every committed write, and the
			// next request tries again.
			c.log.Warn("WAL checkpoint failed", "err", err)
		}
	}
}

// checkpoint runs one checkpoint and returns the WAL's size in frames.
func (c *checkpointer) checkpoint(mode string) (frames int, err error) {
	var busy, done int
	if err := c.db.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &frames, &done); err != nil {
		return 0, fmt.Errorf("sqlite store: %s checkpoint: %w", mode, err)
	}
	return frames, nil
}

// close stops the goroutine after the checkpoint in progress, if any.
func (c *checkpointer) close() error {
	close(c.kick)
	<-c.done
	return c.db.Close()
}
