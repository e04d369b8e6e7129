package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
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
//
// Counting writes alone would leave the WAL unbounded across short lives:
// a process that ends without closing the store (kill -9, power loss)
// before its 2,048th write never checkpointed, and the next one starts
// appending after it. So the WAL is also checkpointed and truncated at
// Open, copied into the database file once it is walMaxAge old, and
// truncated to zero bytes whenever the writer has been idle for a tick.
const (
	// checkpointEvery writes (~4 WAL pages each) between checkpoints.
	checkpointEvery = 2048
	// walRestartFrames (4 KiB pages): 64 MiB, what journal_size_limit
	// trims the WAL file back to after a restart.
	walRestartFrames = 16384
	// walMaxAge: committed writes wait at most this long (under steady
	// load) before they are copied into the database file.
	walMaxAge = 30 * time.Second
)

type checkpointer struct {
	db       *sql.DB
	log      *slog.Logger
	restart  func() error // a RESTART checkpoint run by the writer
	truncate func() error // a TRUNCATE checkpoint run by the writer
	// failing reports whether writes currently fail; probe then tries one
	// (Store.probeWrite), so that a freed disk is noticed with no traffic.
	failing func() bool
	probe   func()
	tick    time.Duration
	kick    chan struct{}
	done    chan struct{}

	// Kept by the writer: writes committed since the last checkpoint, and
	// when the last batch committed (Unix nanoseconds).
	writes    atomic.Int64
	lastWrite atomic.Int64
}

// committed is called by the writer after each batch it committed.
func (c *checkpointer) committed(n int) {
	c.writes.Add(int64(n))
	c.lastWrite.Store(time.Now().UnixNano())
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
		tick: s.opts.CheckpointTick,
		restart: func() error {
			return s.do(context.Background(), true, func(w *writer) error {
				_, err := walCheckpoint(w.conn, "RESTART")
				return err
			})
		},
		truncate: func() error {
			return s.do(context.Background(), true, func(w *writer) error { return s.truncateWAL(w.conn) })
		},
		failing: s.health.writesFailing,
		probe:   s.probeWrite,
	}
	go s.ckpt.run()
	return nil
}

// truncateWAL copies the whole WAL into the database file and truncates it
// to zero bytes. It is run on the writer's connection (by the writer
// goroutine, or at Open before it starts), so no write is in progress.
func (s *Store) truncateWAL(conn *sql.Conn) error {
	r, err := walCheckpoint(conn, "TRUNCATE")
	if err != nil {
		return err
	}
	if r.busy {
		return fmt.Errorf("sqlite store: checkpoint incomplete: readers kept %d of %d WAL frames in use", r.frames-r.copied, r.frames)
	}
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
	t := time.NewTicker(c.tick)
	defer t.Stop()
	last := time.Now() // of the last checkpoint
	for {
		select {
		case _, ok := <-c.kick:
			if !ok {
				return
			}
			c.checkpoint(false)
			last = time.Now()
		case <-t.C:
			if c.failing() {
				c.probe()
				continue
			}
			if c.writes.Load() == 0 {
				continue
			}
			idle := time.Since(time.Unix(0, c.lastWrite.Load())) >= c.tick
			if idle || time.Since(last) >= walMaxAge {
				c.checkpoint(idle)
				last = time.Now()
			}
		}
	}
}

// checkpoint copies the WAL into the database file; then it lets the WAL
// start over when it has grown long, and truncates it when the writer is
// idle.
func (c *checkpointer) checkpoint(idle bool) {
	c.writes.Store(0)
	frames, err := c.passive()
	switch {
	case err != nil:
	case idle && frames > 0:
		err = c.truncate()
	case frames >= walRestartFrames:
		err = c.restart()
	}
	if err != nil {
		// Not fatal: the WAL keeps every committed write, and the next
		// request or tick tries again.
		c.log.Warn("WAL checkpoint failed", "err", err)
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
