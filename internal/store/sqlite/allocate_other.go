//go:build !linux

package sqlite

import (
	"errors"
	"os"
)

// allocate is not available here; the reserve is written with zeros.
func allocate(*os.File, int64) error { return errors.New("no fallocate") }
