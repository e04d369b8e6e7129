//go:build !linux

package sqlite

import "os"

// syncData flushes f to stable storage (fsync where fdatasync is not
// available).
func syncData(f *os.File) error { return f.Sync() }
