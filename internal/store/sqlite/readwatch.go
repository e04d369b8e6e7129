package sqlite

import (
	"context"
	"database/sql/driver"

	"modernc.org/sqlite"
)

// The read pool's connections are wrapped so that every error a read
// meets, wherever in the package the query was made, passes through
// health.readFailed: a damaged page found by any listing or lookup makes
// the store unready and is logged once. The wrappers only pass calls
// through; they implement the context-aware interfaces the driver does, so
// that database/sql uses the same paths as without them.

// watchedConnector opens read connections with the SQLite driver.
type watchedConnector struct {
	dsn string
	h   *health
	d   *sqlite.Driver
}

func (c *watchedConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.d.Open(c.dsn)
	if err != nil {
		return nil, c.h.readFailed(err)
	}
	return &watchedConn{Conn: conn, h: c.h}, nil
}

func (c *watchedConnector) Driver() driver.Driver { return c.d }

// driverConn is what the SQLite driver's connection implements.
type driverConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type watchedConn struct {
	driver.Conn
	h *health
}

func (c *watchedConn) dc() driverConn { return c.Conn.(driverConn) }

func (c *watchedConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *watchedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.dc().PrepareContext(ctx, query)
	if err != nil {
		return nil, c.h.readFailed(err)
	}
	return &watchedStmt{Stmt: st, h: c.h}, nil
}

func (c *watchedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.dc().BeginTx(ctx, opts)
	return tx, c.h.readFailed(err)
}

func (c *watchedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	r, err := c.dc().ExecContext(ctx, query, args)
	return r, c.h.readFailed(err)
}

func (c *watchedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	r, err := c.dc().QueryContext(ctx, query, args)
	if err != nil {
		return nil, c.h.readFailed(err)
	}
	return &watchedRows{Rows: r, h: c.h}, nil
}

func (c *watchedConn) Ping(ctx context.Context) error { return c.h.readFailed(c.dc().Ping(ctx)) }

func (c *watchedConn) ResetSession(ctx context.Context) error { return c.dc().ResetSession(ctx) }

func (c *watchedConn) IsValid() bool { return c.dc().IsValid() }

// driverStmt is what the SQLite driver's statement implements.
type driverStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type watchedStmt struct {
	driver.Stmt
	h *health
}

func (s *watchedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	r, err := s.Stmt.(driverStmt).ExecContext(ctx, args)
	return r, s.h.readFailed(err)
}

func (s *watchedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	r, err := s.Stmt.(driverStmt).QueryContext(ctx, args)
	if err != nil {
		return nil, s.h.readFailed(err)
	}
	return &watchedRows{Rows: r, h: s.h}, nil
}

type watchedRows struct {
	driver.Rows
	h *health
}

func (r *watchedRows) Next(dest []driver.Value) error {
	return r.h.readFailed(r.Rows.Next(dest)) // io.EOF is not damage: passed on as is
}
