package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// Backup writes a consistent copy of the embedded SQLite store to file,
// while the server may be running: SQLite's VACUUM INTO copies one read
// transaction's snapshot (every commit before it, nothing after), on a
// read-only connection of its own, so submissions go on meanwhile. The
// copy is a complete database (no -wal file beside it), 0600.
//
// It holds sealed texts and sealed digest secrets, not the master key
// that opens them: restoring needs the master key too, which is kept in
// a backup of its own (README: "Backup and restore"). A PostgreSQL store
// is backed up with PostgreSQL's tools.
func (s *Server) Backup(ctx context.Context, file string) error {
	if s.sqlitePath == "" {
		return errors.New("backup copies the embedded SQLite store; this server uses PostgreSQL: use pg_dump or your database's backups")
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	if same, _ := filepath.Abs(s.sqlitePath); same == abs {
		return errors.New("backup: the file is the store itself")
	}
	// VACUUM INTO wants a missing or empty file; creating it here gives it
	// mode 0600 and refuses to overwrite an earlier backup.
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup file: %w", err)
	}
	f.Close()
	done := false
	defer func() {
		if !done {
			os.Remove(abs)
		}
	}()
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+s.sqlitePath+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("backup: opening the store: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", abs); err != nil {
		return fmt.Errorf("backup: copying the store: %w", err)
	}
	// The copy is complete once it is on disk.
	f, err = os.OpenFile(abs, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup: syncing the copy: %w", err)
	}
	done = true
	return nil
}

// MasterKeyFile returns the file of the master key (--master-key, default
// DATA/master.key).
func (s *Server) MasterKeyFile() string {
	if s.o.MasterKeyFile != "" {
		return s.o.MasterKeyFile
	}
	return filepath.Join(s.o.DataDir, "master.key")
}
