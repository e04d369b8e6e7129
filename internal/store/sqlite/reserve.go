package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// The reserve is a file of zeros beside the database (NAME-reserve) that
// holds back a little disk space for the store's own rescue. When the disk
// fills, the writer removes it and checkpoints: copying the WAL into the
// database file may need new pages in the database file before the WAL can
// be truncated, and without the freed space that checkpoint would fail on
// the same full disk, leaving the WAL to grow into whatever space the
// operator frees. It is made again once writes work and there is room.
//
// The default is small next to any disk a server runs on and about the
// size of the database pages a checkpoint adds after a few thousand
// submissions, which is how much the WAL holds between two time or idle
// checkpoints (checkpoint.go).
const defaultReserveBytes = 8 << 20

type reserve struct {
	path string
	size int64
}

// present reports whether the reserve file exists at its full size.
func (r *reserve) present() bool {
	fi, err := os.Stat(r.path)
	return err == nil && fi.Size() >= r.size
}

// release removes the reserve, freeing its space. It reports whether there
// was one.
func (r *reserve) release() (bool, error) {
	err := os.Remove(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sqlite store: removing the disk reserve %s: %w", r.path, err)
	}
	return true, nil
}

// ensure writes the reserve if it is missing or short. A disk without room
// for it gets none (the partial file is removed) and an error.
func (r *reserve) ensure() error {
	if r.size <= 0 || r.present() {
		return nil
	}
	err := r.write()
	if err != nil {
		os.Remove(r.path)
		return fmt.Errorf("sqlite store: writing the disk reserve %s (%d bytes): %w", r.path, r.size, err)
	}
	return nil
}

func (r *reserve) write() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	// The blocks must really be taken, not a sparse file: fallocate where
	// the file system has it (ext4, xfs, tmpfs), else zeros.
	if err := allocate(f, r.size); err == nil {
		return f.Close()
	}
	buf := make([]byte, 1<<20)
	for left := r.size; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// minRoom is the free space that counts as room when there is no reserve.
const minRoom = 1 << 20

// roomToRecover reports whether the disk has room for the reserve (if it
// is missing) and as much again for writes; where free space cannot be
// known, it reports true and making the reserve is the test.
func (r *reserve) roomToRecover() bool {
	free, ok := freeBytes(r.path)
	if !ok {
		return true
	}
	need := max(r.size, minRoom)
	if !r.present() {
		need += r.size
	}
	return free >= need
}

// needRoom reports whether the disk holding the reserve has less free
// space than the reserve's size: a start on a full disk then releases it
// first, so that opening and checkpointing the store have room.
func (r *reserve) needRoom() bool {
	free, ok := freeBytes(r.path)
	return ok && free < r.size
}
