package tests

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/internal/store/postgres/pgtest"
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

// binaryStores maps a data folder of the binary tests to its PostgreSQL
// database when the tests run on PostgreSQL.
var binaryStores sync.Map // data folder → store URL

// binaryEnv is the environment of a sealpostd process run on the data
// folder dir: with SEALPOST_TEST_STORE=postgres, SEALPOST_STORE names a
// database of its own (made at the folder's first use, dropped when the
// test ends), so the real binary runs on PostgreSQL.
func binaryEnv(t *testing.T, dir string) []string {
	env := os.Environ()
	if !servertest.OnPostgres() {
		return env
	}
	url, ok := binaryStores.Load(dir)
	if !ok {
		url, _ = binaryStores.LoadOrStore(dir, pgtest.NewDatabase(t))
	}
	return append(env, "SEALPOST_STORE="+url.(string))
}

// dataDirArg returns the value of --data in a sealpostd command line.
func dataDirArg(args []string) string {
	for i, a := range args {
		if a == "--data" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// embeddedStoreOnly skips a test of the SQLite store's own files (damage,
// a full data folder) in the PostgreSQL pass (SEALPOST_TEST_STORE=postgres),
// where the store is not in the data folder; the SQLite pass runs it.
func embeddedStoreOnly(t *testing.T) {
	t.Helper()
	if servertest.OnPostgres() {
		t.Skip("a test of the embedded SQLite store's files; the store is on PostgreSQL in this pass")
	}
}
