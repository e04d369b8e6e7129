package tests

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

// postgresFiles returns the folders where the PostgreSQL server of url keeps
// the database's tables and its write-ahead log. The test must be able to
// read them (it runs as root in CI, beside the server).
func postgresFiles(t *testing.T, url string) []string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	var dataDir string
	var oid uint32
	if err := conn.QueryRow(t.Context(), "SELECT current_setting('data_directory'), oid FROM pg_database WHERE datname = current_database()").Scan(&dataDir, &oid); err != nil {
		t.Fatalf("locating the database's files: %v", err)
	}
	// Make sure the table pages are written to the files, not only to the WAL.
	if _, err := conn.Exec(t.Context(), "CHECKPOINT"); err != nil {
		t.Fatalf("CHECKPOINT: %v", err)
	}
	return []string{filepath.Join(dataDir, "base", strconv.FormatUint(uint64(oid), 10)), filepath.Join(dataDir, "pg_wal")}
}

// scanFiles fails the test if a file under dir holds one of needles.
func scanFiles(t *testing.T, when, dir string, needles []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a WAL segment recycled meanwhile
		}
		if err != nil {
			return err
		}
		for _, needle := range needles {
			if bytes.Contains(data, []byte(needle)) {
				t.Errorf("%s: %s holds %q in clear", when, path, needle)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scanning %s: %v", dir, err)
	}
}
