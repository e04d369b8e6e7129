package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealpost/sealpost/internal/datadir"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/store/sqlite"
)

// lockDataDir creates the data folder if needed and takes its lock for a
// serving sealpostd (internal/datadir). Only serve takes it: the other
// commands are meant to run beside a serving server.
func lockDataDir(dir string) (*datadir.Lock, error) {
	if dir == "" {
		dir = "sealpost-data"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data folder: %w", err)
	}
	return datadir.TryLock(dir)
}

// storePath is the SQLite file the server opens with these options.
func storePath(o server.Options) (string, error) {
	dir := o.DataDir
	if dir == "" {
		dir = "sealpost-data"
	}
	switch {
	case o.StoreURL == "":
		return filepath.Join(dir, "sealpost.db"), nil
	case strings.HasPrefix(o.StoreURL, "sqlite:"):
		return strings.TrimPrefix(strings.TrimPrefix(o.StoreURL, "sqlite:"), "//"), nil
	}
	return "", fmt.Errorf("store check and store recover work on the embedded SQLite store; --store %q is not one", redactURL(o.StoreURL))
}

// storeCheck runs the start check without starting. Damage is exit 1.
func (a *app) storeCheck([]string) error {
	o := a.options()
	path, err := storePath(o)
	if err != nil {
		return err
	}
	r, err := sqlite.Check(path)
	if err != nil {
		return err
	}
	if len(r.Problems) == 0 {
		fmt.Fprintf(a.stdout, "%s: no damage found (write-ahead log scan and quick_check, %v)\n", path, r.Took.Round(1e6))
		return nil
	}
	fmt.Fprintf(a.stdout, "%s is damaged:\n", path)
	for _, p := range r.Problems {
		fmt.Fprintf(a.stdout, "  %s\n", p)
	}
	fmt.Fprintf(a.stdout, "Keep a copy of the data folder as it is, then salvage what can be read with:\n  sealpostd --data %s store recover NEW.db\n", o.DataDir)
	return errors.New("the store is damaged")
}

// storeRecover salvages the store into a new file.
func (a *app) storeRecover(args []string) error {
	path, err := storePath(a.options())
	if err != nil {
		return err
	}
	out := args[0]
	r, err := sqlite.Recover(path, out)
	if err != nil {
		return err
	}
	fmt.Fprint(a.stdout, r.String())
	fmt.Fprintf(a.stdout, "Next: stop the server if it runs, move %[1]s and its -wal and -shm files aside, move %[2]s into place as %[1]s, and start the server.\n", path, out)
	return nil
}
