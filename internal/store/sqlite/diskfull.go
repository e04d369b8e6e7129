package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
)

// What the writer does when writes fail, and how it notices that they work
// again. A full disk is the common case: SQLite answers SQLITE_FULL when
// the WAL cannot grow. Then, once when the failures start and at most every
// rescueEvery while they go on:
//
//   - the disk reserve is released (reserve.go), and
//   - the WAL is checkpointed and truncated, which frees the WAL's space
//     for the pages the checkpoint adds to the database file.
//
// While writes fail the checkpointer probes once a tick with a write of its
// own (probeWrite), so the store notices freed space without waiting for a
// submission; the first write that works clears the state, truncates the
// WAL again so it starts from zero bytes, and makes the reserve again. The
// log gets one line when failures start and one when they end (health.go).

const rescueEvery = time.Second

// writeFailure reports whether err, from a write, is the database failing
// (the disk, the file, a lock held too long) as opposed to a caller's own
// error such as a store sentinel or a cancelled context.
func writeFailure(err error) bool {
	if err == nil || isSentinel(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var e *sqlite.Error
	return errors.As(err, &e)
}

// ErrUnavailable is wrapped by the error of every write that failed
// because the database failed (a full disk, an I/O error), and of every
// submission refused without being tried while writes fail. The store logs
// the start and the end of such a period once; callers need not log each.
var ErrUnavailable = errors.New("sqlite store: writes are failing")

// unavailable wraps a database failure with ErrUnavailable.
func unavailable(err error) error {
	if writeFailure(err) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// refusingGrowth returns the error for submissions while writes fail, or
// nil. Run by the writer.
func (s *Store) refusingGrowth() error {
	s.health.mu.Lock()
	last := s.health.writeErr
	s.health.mu.Unlock()
	if last == nil {
		return nil
	}
	return fmt.Errorf("%w (not tried: no new message is taken until a write and the disk reserve work again): %w", ErrUnavailable, last)
}

// batchDone is run by the writer goroutine after each batch (and each
// probe) with the failure of the database it met, if any.
//
// Writes that work while the failure lasts are not yet a recovery: they
// may be running on the space the reserve freed. Recovery is a working
// write and room to make the reserve again with as much left over
// (reserve.roomToRecover); tried at most every rescueEvery.
func (s *Store) batchDone(failure error) {
	if failure == nil {
		if !s.health.writesFailing() || time.Since(s.lastRescue) < rescueEvery {
			return
		}
		s.lastRescue = time.Now()
		if !s.reserve.roomToRecover() {
			return
		}
		if err := s.reserve.ensure(); err != nil {
			s.log.Debug("writes work, but the disk reserve cannot be made again yet", "err", err)
			return
		}
		if s.health.writeOK() {
			if err := s.truncateWAL(s.w.conn); err != nil {
				s.log.Debug("WAL checkpoint after writes recovered", "err", err)
			}
		}
		return
	}
	if isCorrupt(failure) {
		s.health.readFailed(failure)
	}
	first := s.health.writeFailed(failure)
	if first || time.Since(s.lastRescue) >= rescueEvery {
		s.rescue()
	}
}

// isCorrupt reports whether err is SQLite finding the file damaged. (An
// I/O error met by a write is not counted as damage: a full disk can
// cause one.)
func isCorrupt(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	c := e.Code() & 0xff
	return c == sqliteCorrupt || c == sqliteNotADB
}

// rescue frees what the store can on a full disk. Run by the writer.
func (s *Store) rescue() {
	s.lastRescue = time.Now()
	released, err := s.reserve.release()
	if err != nil {
		s.log.Debug("releasing the disk reserve", "err", err)
	}
	if err := s.truncateWAL(s.w.conn); err != nil {
		s.log.Debug("WAL checkpoint while writes fail", "err", err, "reserve_released", released)
	}
}

// probeWrite makes one small write through the writer, as a batch would:
// it rewrites the schema version with its own value, which writes the
// database's first page to the WAL. Its outcome goes to batchDone like a
// batch's.
func (s *Store) probeWrite() {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.BusyTimeout)
	defer cancel()
	_ = s.do(ctx, true, func(w *writer) error {
		err := w.probe()
		if err == nil || writeFailure(err) {
			s.lastRescue = time.Time{} // a probe is due its recovery check
			s.batchDone(err)
		}
		return nil
	})
}

func (w *writer) probe() (err error) {
	if _, err := w.exec(w.begin); err != nil {
		return fmt.Errorf("sqlite store: write probe: %w", err)
	}
	defer func() {
		if err != nil {
			w.exec(w.rollback)
		}
	}()
	var v int
	if err := w.conn.QueryRowContext(w.ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("sqlite store: write probe: %w", err)
	}
	if _, err := w.conn.ExecContext(w.ctx, fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
		return fmt.Errorf("sqlite store: write probe: %w", err)
	}
	if _, err := w.exec(w.commit); err != nil {
		return fmt.Errorf("sqlite store: write probe: %w", err)
	}
	return nil
}
