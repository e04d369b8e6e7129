package sqlite

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"modernc.org/sqlite"
)

// health is what the store knows about its own state, for /readyz and for
// the operator's log: whether writes currently fail (a full disk, a
// read-only file system) and whether a read has ever failed on damage since
// the store was opened. Each change is logged once, not each failure: a
// full disk under load would otherwise write thousands of lines a second
// into the log on the same full disk.
type health struct {
	log            *slog.Logger
	onWriteFailure func() // each failed write batch; may be nil
	onReadFailure  func() // each failed read; may be nil

	mu sync.Mutex
	// writeErr is the latest write failure while writes fail; nil when the
	// last write (or write probe) succeeded.
	writeErr error
	// readErr is the first read that failed on damage or an I/O error. It
	// stays: a store with an unreadable part is not ready until an
	// operator has checked it (sealpostd store check) and restarted.
	readErr error
}

// writeFailed records a failed write batch. It reports whether this is the
// first failure after a working write, which is when the writer takes its
// emergency measures (checkpoint, reserve).
func (h *health) writeFailed(err error) (first bool) {
	if h.onWriteFailure != nil {
		h.onWriteFailure()
	}
	h.mu.Lock()
	first = h.writeErr == nil
	h.writeErr = err
	h.mu.Unlock()
	if first {
		h.log.Error("store writes are failing: submissions are refused with 503 and /readyz is not ready until writes work and the disk has room again (the server notices by itself, no restart needed); free disk space if the disk is full (this is logged once; sealpost_store_write_failures_total counts them)",
			"err", err)
	}
	return first
}

// countFailure counts a write refused while writes fail.
func (h *health) countFailure() {
	if h.onWriteFailure != nil {
		h.onWriteFailure()
	}
}

// writeOK records a write that worked; it reports whether writes had been
// failing until now.
func (h *health) writeOK() (recovered bool) {
	h.mu.Lock()
	recovered = h.writeErr != nil
	h.writeErr = nil
	h.mu.Unlock()
	if recovered {
		h.log.Info("store writes work again")
	}
	return recovered
}

func (h *health) writesFailing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.writeErr != nil
}

// readFailed records err if it says the file is damaged or cannot be read
// (as opposed to a cancelled context or a busy lock), and returns err.
func (h *health) readFailed(err error) error {
	if err == nil || !isDamage(err) {
		return err
	}
	if !errors.Is(err, ErrDamaged) {
		err = fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if h.onReadFailure != nil {
		h.onReadFailure()
	}
	h.mu.Lock()
	first := h.readErr == nil
	if first {
		h.readErr = err
	}
	h.mu.Unlock()
	if first {
		h.log.Error("store read failed: part of the store is damaged or unreadable; /readyz stays not ready. Stop the server, keep a copy of the data folder, and run `sealpostd store check` (this is logged once; sealpost_store_read_failures_total counts them)",
			"err", err)
	}
	return err
}

// err is nil when the store is ready: its reads have never failed and its
// latest write worked.
func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.readErr != nil:
		return fmt.Errorf("sqlite store: a read failed, part of the store is unreadable (run sealpostd store check): %w", h.readErr)
	case h.writeErr != nil:
		return fmt.Errorf("sqlite store: writes are failing: %w", h.writeErr)
	}
	return nil
}

// SQLite primary result codes that mean the file cannot be read as a
// database (https://sqlite.org/rescode.html).
const (
	sqliteIOErr   = 10
	sqliteCorrupt = 11
	sqliteFull    = 13
	sqliteNotADB  = 26
)

// isDamage reports whether err is SQLite saying the file is damaged or an
// I/O error reading it.
func isDamage(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() & 0xff {
	case sqliteCorrupt, sqliteNotADB, sqliteIOErr:
		return true
	}
	return false
}
