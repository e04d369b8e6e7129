package sqlite

import (
	"os"
	"syscall"
)

// allocate gives f size bytes of real blocks (fallocate mode 0).
func allocate(f *os.File, size int64) error {
	return syscall.Fallocate(int(f.Fd()), 0, 0, size)
}
