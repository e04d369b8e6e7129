package sqlite

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// Durability is pipelined: the writer connection runs with synchronous=NORMAL,
// so a COMMIT appends the batch's frames to the -wal file without waiting
// for the disk, and the writer goes straight on to the next batch. The syncer
// goroutine below then fsyncs the -wal file (one fsync covers every batch
// committed before it started) and only then answers the batch's callers.
// So no write is acknowledged before it is on disk, exactly as with
// synchronous=FULL, but the writer's statements for batch N+1 run while the
// disk flushes batch N instead of after it.
//
// What a crash can do: a process crash loses nothing committed (the frames
// are in the kernel's page cache). A power cut may lose batches that were
// committed but not yet fsynced, which nobody was told were stored; SQLite's
// WAL recovery (checksummed frames, commit markers) drops such a torn tail
// cleanly. Reads may see a committed batch a fraction of a millisecond
// before its fsync ends; the worst a power cut can then do is make a
// message that a status query saw as enqueued, but whose submitter never got
// a 202, vanish, and the submitter retries with the same id.

// committed is a batch whose transaction has committed, waiting for its fsync.
type committed struct {
	seq  int64 // the writer numbers its batches from 1
	ops  []*op
	errs []error
}

// syncer owns the file handle used to fsync the -wal file.
type syncer struct {
	walPath string
	fsync   func(*os.File) error
	onSync  func(time.Duration) // nil: not reported
	f       *os.File
	// synced is the seq of the last batch answered; the writer compares it
	// with the batches it handed over to see whether the disk is busy.
	synced atomic.Int64
	// wake gets a token after every round of fsync, for a writer waiting
	// for the disk to be free.
	wake chan struct{}
	// failed holds the first fsync error. After it nothing more is
	// acknowledged: the kernel may have dropped the dirty pages it could not
	// write, so what is on disk is unknown (PostgreSQL's "fsyncgate").
	failed atomic.Pointer[error]
}

// run answers committed batches after their fsync until in is closed.
func (y *syncer) run(in <-chan committed, done chan<- struct{}) {
	defer close(done)
	defer func() {
		if y.f != nil {
			y.f.Close()
		}
	}()
	var pending []committed
	for c := range in {
		pending = append(pending[:0], c)
		// Everything already committed is covered by the same fsync.
	more:
		for {
			select {
			case c, ok := <-in:
				if !ok {
					break more
				}
				pending = append(pending, c)
			default:
				break more
			}
		}
		start := time.Now()
		err := y.sync()
		if y.onSync != nil {
			y.onSync(time.Since(start))
		}
		for _, c := range pending {
			for i, o := range c.ops {
				if err != nil && c.errs[i] == nil {
					c.errs[i] = err
				}
				o.done <- c.errs[i]
			}
		}
		y.synced.Store(pending[len(pending)-1].seq)
		select {
		case y.wake <- struct{}{}:
		default:
		}
		clear(pending)
	}
}

// sync fsyncs the -wal file, reopening it if SQLite has replaced it.
func (y *syncer) sync() error {
	if errp := y.failed.Load(); errp != nil {
		return *errp
	}
	err := y.syncWAL()
	if err != nil {
		err = fmt.Errorf("sqlite store: the write may not be on disk, and the store accepts no more writes until restarted: %w", err)
		y.failed.CompareAndSwap(nil, &err)
	}
	return err
}

func (y *syncer) syncWAL() error {
	// SQLite keeps the -wal file while any connection is open (the writer
	// always is), truncating it in place; the check that the open handle
	// is still that file guards against a future change of that rule,
	// since an fsync of a replaced file would silently sync nothing.
	cur, err := os.Stat(y.walPath)
	if err != nil {
		return fmt.Errorf("fsync of %s: %w", y.walPath, err)
	}
	if y.f != nil {
		if fi, err := y.f.Stat(); err != nil || !os.SameFile(fi, cur) {
			y.f.Close()
			y.f = nil
		}
	}
	if y.f == nil {
		f, err := os.OpenFile(y.walPath, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("opening %s to fsync it: %w", y.walPath, err)
		}
		y.f = f
	}
	if err := y.fsync(y.f); err != nil {
		return fmt.Errorf("fsync of %s: %w", y.walPath, err)
	}
	return nil
}

// err returns the error that stopped the store, if any.
func (y *syncer) err() error {
	if errp := y.failed.Load(); errp != nil {
		return *errp
	}
	return nil
}

var errSyncFailed = errors.New("sqlite store: an earlier fsync failed; no write is accepted until the server restarts")
