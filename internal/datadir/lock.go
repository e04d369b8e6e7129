// Package datadir guards a data folder: one serving sealpostd at a time.
//
// The lock is flock(2) on DIR/sealpostd.lock, so the kernel releases it
// whenever the process ends, by kill -9 included: a stale lock file never
// keeps a server from starting. The file holds the holder's pid, read only
// to tell the operator which process is in the way. The account and message
// commands do not take it: they are meant to run beside the server.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the lock file inside the data folder.
const LockFile = "sealpostd.lock"

// ErrLocked is wrapped by Lock's error when another process holds the folder.
var ErrLocked = errors.New("data folder in use")

// Lock is a held data-folder lock.
type Lock struct {
	f *os.File
}

// TryLock takes the exclusive lock on dir (which must exist) without
// waiting. When another process holds it, the error wraps ErrLocked and
// names that process's pid.
func TryLock(dir string) (*Lock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the data folder lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = fmt.Sprintf("process %d", pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is served by %s (lock %s); stop that server first, or give this one another --data folder",
				ErrLocked, dir, holder, path)
		}
		return nil, fmt.Errorf("locking the data folder %s: %w", path, err)
	}
	// Ours now: record who holds it. A failure here leaves the lock held
	// and only the pid unknown to a second server, so it is not fatal.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up. The file stays: removing it could let a
// second server lock a new file while a third still waits on the old one.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}
