package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sealpost/sealpost/internal/store"
)

// sqliteCode returns the extended SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

func isUniqueViolation(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || c == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

func isForeignKeyViolation(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// CreateAccount adds an account; ErrExists if the name is taken.
func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	return s.doAtomic(ctx, func(w *writer) error {
		_, err := w.conn.ExecContext(w.ctx,
			"INSERT INTO accounts (name, password_hash, sip_secrets, created_at) VALUES (?, ?, ?, ?)",
			a.Name, a.PasswordHash, a.SIPSecrets, encTime(a.CreatedAt))
		if isUniqueViolation(err) {
			return fmt.Errorf("sqlite store: account %q: %w", a.Name, store.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("sqlite store: creating account %q: %w", a.Name, err)
		}
		return nil
	})
}

// Account returns the named account or ErrNotFound.
func (s *Store) Account(ctx context.Context, name string) (store.Account, error) {
	a, err := scanAccount(s.rdb.QueryRowContext(ctx,
		"SELECT name, password_hash, sip_secrets, created_at FROM accounts WHERE name = ?", name))
	if err != nil {
		return store.Account{}, notFound(err, fmt.Sprintf("account %q", name))
	}
	return a, nil
}

// Accounts lists all accounts ordered by name.
func (s *Store) Accounts(ctx context.Context) ([]store.Account, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT name, password_hash, sip_secrets, created_at FROM accounts ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("sqlite store: listing accounts: %w", err)
	}
	defer rows.Close()
	var out []store.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: listing accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: listing accounts: %w", err)
	}
	return out, nil
}

// DeleteAccount removes the account, its tokens, every message from or to it
// (whatever its status, so no trace of its traffic stays behind) and every
// report to it or about a message it received.
func (s *Store) DeleteAccount(ctx context.Context, name string) error {
	return s.do(ctx, false, func(w *writer) error {
		c, bg := w.conn, w.ctx
		what := fmt.Sprintf("deleting account %q", name)
		if err := affected(what)(c.ExecContext(bg, "DELETE FROM accounts WHERE name = ?", name)); err != nil {
			return err
		}
		for _, q := range []string{
			"DELETE FROM tokens WHERE account = ?1", // also ON DELETE CASCADE; explicit so it never depends on the pragma
			// Trigger mailbox_deleted counts pending ones out of their
			// recipients' mailboxes; the account's own goes after.
			"DELETE FROM messages WHERE from_acct = ?1 OR to_acct = ?1",
			// Expired reports to other senders about messages to it
			// (FailMailbox) stay: they are the senders'.
			"DELETE FROM reports WHERE to_acct = ?1 OR (recipient = ?1 AND status <> 'expired')",
			"DELETE FROM mailboxes WHERE account = ?1",
		} {
			if _, err := c.ExecContext(bg, q, name); err != nil {
				return fmt.Errorf("sqlite store: %s: %w", what, err)
			}
		}
		return nil
	})
}

// SetPassword replaces the password hash and SIP secrets and revokes every
// token of the account.
func (s *Store) SetPassword(ctx context.Context, name, passwordHash string, sipSecrets []byte) error {
	return s.do(ctx, false, func(w *writer) error {
		what := fmt.Sprintf("setting password of %q", name)
		if err := affected(what)(w.conn.ExecContext(w.ctx,
			"UPDATE accounts SET password_hash = ?, sip_secrets = ? WHERE name = ?", passwordHash, sipSecrets, name)); err != nil {
			return err
		}
		if _, err := w.conn.ExecContext(w.ctx, "DELETE FROM tokens WHERE account = ?", name); err != nil {
			return fmt.Errorf("sqlite store: %s: revoking tokens: %w", what, err)
		}
		return nil
	})
}

// AddToken stores a token hash. ErrNotFound if the account does not exist,
// ErrExists if the hash is already stored.
func (s *Store) AddToken(ctx context.Context, t store.Token) error {
	return s.doAtomic(ctx, func(w *writer) error {
		_, err := w.conn.ExecContext(w.ctx,
			"INSERT INTO tokens (hash, account, created_at, expires_at) VALUES (?, ?, ?, ?)",
			t.Hash, t.Account, encTime(t.CreatedAt), encTime(t.ExpiresAt))
		switch {
		case isForeignKeyViolation(err):
			return fmt.Errorf("sqlite store: adding token for account %q: %w", t.Account, store.ErrNotFound)
		case isUniqueViolation(err):
			return fmt.Errorf("sqlite store: adding token for account %q: token hash %w", t.Account, store.ErrExists)
		case err != nil:
			return fmt.Errorf("sqlite store: adding token for account %q: %w", t.Account, err)
		}
		return nil
	})
}

// TokenByHash returns the token with that hash if it expires after now.
func (s *Store) TokenByHash(ctx context.Context, hash []byte, now time.Time) (store.Token, error) {
	var t store.Token
	var created, expires int64
	err := s.rs.tokenByHash.QueryRowContext(ctx, hash, encTime(now)).Scan(&t.Hash, &t.Account, &created, &expires)
	if err != nil {
		return store.Token{}, notFound(err, "looking up token")
	}
	t.CreatedAt, t.ExpiresAt = decTime(created), decTime(expires)
	return t, nil
}

// RevokeToken deletes a token; ErrNotFound if absent.
func (s *Store) RevokeToken(ctx context.Context, hash []byte) error {
	return s.doAtomic(ctx, func(w *writer) error {
		return affected("revoking token")(w.conn.ExecContext(w.ctx, "DELETE FROM tokens WHERE hash = ?", hash))
	})
}
