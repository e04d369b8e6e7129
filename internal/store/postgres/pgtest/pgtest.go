// Package pgtest gives each test a fresh PostgreSQL database of its own on
// the test server, so that tests run in parallel, and beside other people's
// tests on the same server, without seeing each other's data or advisory
// locks.
//
// The server is SEALPOST_TEST_POSTGRES (a postgres:// URL of a database the
// test may connect to and a role allowed to CREATE DATABASE), by default
// postgres://postgres@127.0.0.1:5432/test, as .ci/ensure-postgres.sh
// provides it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultServer is the server tests use unless SEALPOST_TEST_POSTGRES names
// another.
const DefaultServer = "postgres://postgres@127.0.0.1:5432/test"

// Server returns the URL of the test server's maintenance database.
func Server() string {
	if u := os.Getenv("SEALPOST_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultServer
}

// NewDatabase creates a database with a unique name, drops it (closing any
// connection left to it) when the test ends, and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := Server()
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: bad SEALPOST_TEST_POSTGRES %q: %v", admin, err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	name := "sealpost_test_" + hex.EncodeToString(b)
	exec(t, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	t.Cleanup(func() {
		exec(t, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	u.Path = "/" + name
	return u.String()
}

func exec(t testing.TB, url, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("pgtest: connecting to the test PostgreSQL %s (set SEALPOST_TEST_POSTGRES, or run .ci/ensure-postgres.sh): %v", url, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}
