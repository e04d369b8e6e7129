//go:build !unix

package sqlite

// freeBytes is not known here; the reserve is then released only when a
// write fails.
func freeBytes(string) (int64, bool) { return 0, false }
