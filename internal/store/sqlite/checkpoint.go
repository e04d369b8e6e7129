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
// goroutine every checkpointEvery writes. It first copies the WAL into the
// database with a PASSIVE checkpoint, on its own connection, while the
// writer goes on appending (pages written many times between two
// checkpoints are copied once). Under steady load that alone never lets the
// WAL start over, since the writer never pauses; so once the WAL has grown
// past walRestartFrames it has the writer run a RESTART checkpoint between
// two batches, which copies only what was appended during the PASSIVE one
// and lets the next batch write the WAL from its start again. (Run by the
// writer itself, not beside it, because a writer that finds the lock taken
// waits in SQLite's busy handler, which sleeps in steps of up to 100 ms.)
// Each RESTART holds the writer for a few milliseconds, so it is not done
// every time.
const (
	// checkpointEvery writes (~4 WAL pages each) between checkpoints.
	checkpointEvery = 2048
	// walRestartFrames (4 KiB pages): 64 MiB, what journal_size_limit
	// trims the WAL file back to after a restart.
	walRestartFrames = 16384
)

type checkpointer struct {
	db      *sql.DB
	log     *slog.Logger
	restart func() error // a RESTART checkpoint run by the writer
	kick    chan struct{}
	done    chan struct{}
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
	s.ckpt = &checkpointer{db: db, log: s.log, kick: make(chan struct{}, 1), done: make(chan struct{}),
		restart: func() error {
			return s.do(context.Background(), true, func(w *writer) error {
				_, err := walCheckpoint(w.conn, "RESTART")
				return err
			})
		}}
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
		frames, err := c.passive()
		if err == nil && frames >= walRestartFrames {
			err = c.restart()
		}
		if err != nil {
			// Not fatal: the WAL keeps every committed write, and the
			// next request tries again.
			c.log.Warn("WAL checkpoint failed", "err", err)
		}
	}
}

// passive copies the WAL into the database without blocking anyone, and
// returns the WAL's length in frames.
func (c *checkpointer) passive() (frames int, err error) {
	r, err := walCheckpoint(c.db, "PASSIVE")
	return r.frames, err
}

// checkpointResult is what PRAGMA wal_checkpoint answers.
type checkpointResult struct {
	busy   bool // it could not finish: readers or a writer were in the way
	frames int  // frames in the WAL
	copied int  // of which copied into the database
}

// walCheckpoint runs PRAGMA wal_checkpoint(mode) on q (a connection or a
// pool of one).
func walCheckpoint(q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, mode string) (checkpointResult, error) {
	var r checkpointResult
	if err := q.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint("+mode+")").Scan(&r.busy, &r.frames, &r.copied); err != nil {
		return r, fmt.Errorf("sqlite store: %s checkpoint: %w", mode, err)
	}
	return r, nil
}

// close stops the goroutine after the checkpoint in progress, if any.
func (c *checkpointer) close() error {
	close(c.kick)
	<-c.done
	return c.db.Close()
}
