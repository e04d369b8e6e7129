package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealpost/sealpost/internal/cli"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/store/storecopy"
)

func (a *app) storeCopyFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.copyFrom, "from", "", "the SQLite store to copy, `sqlite:PATH` (a data folder or its sealpost.db); default the data folder's")
	fs.StringVar(&a.copyTo, "to", "", "the empty PostgreSQL database to copy into, `postgres://USER@HOST:PORT/DB`")
}

// storeCopy moves the embedded SQLite store into an empty PostgreSQL
// database. It holds the source data folder's lock, so no server can
// accept a message that the copy would leave behind.
func (a *app) storeCopy([]string) error {
	if !server.IsPostgresURL(a.copyTo) {
		return cli.Usagef("--to must be a postgres:// URL, got %q", a.copyTo)
	}
	from := a.copyFrom
	if from == "" {
		from = "sqlite:" + a.options().DataDir
	}
	if !strings.HasPrefix(from, "sqlite:") {
		return cli.Usagef("--from must be sqlite:PATH (a data folder or its sealpost.db), got %q", from)
	}
	path := strings.TrimPrefix(strings.TrimPrefix(from, "sqlite:"), "//")
	if path == "" {
		path = "sealpost-data"
	}
	dir := path
	if st, err := os.Stat(path); err != nil {
		return fmt.Errorf("the source store: %w", err)
	} else if st.IsDir() {
		path = filepath.Join(path, "sealpost.db")
	} else {
		dir = filepath.Dir(path)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("the source store: %w", err)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return fmt.Errorf("%w (stop the server before copying its store)", err)
	}
	defer lock.Release()
	c, err := storecopy.Copy(context.Background(), path, a.copyTo)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "copied %s from %s\n", c, path)
	fmt.Fprintf(a.stdout, "Serve from it with the same data folder (it holds the master key):\n  sealpostd --data %s --store %s\n", dir, redactURL(a.copyTo))
	return nil
}

// redactURL hides the password of a store URL.
func redactURL(u string) string {
	if at := strings.LastIndex(u, "@"); at > 0 {
		if scheme := strings.Index(u, "://"); scheme > 0 {
			if colon := strings.Index(u[scheme+3:at], ":"); colon >= 0 {
				return u[:scheme+3+colon] + ":…" + u[at:]
			}
		}
	}
	return u
}
