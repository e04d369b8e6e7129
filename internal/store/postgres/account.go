package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sealpost/sealpost/internal/store"
)

const accountCols = "name, password_hash, sip_secrets, created_at"

func scanAccount(row pgx.Row) (store.Account, error) {
	var a store.Account
	var created int64
	if err := row.Scan(&a.Name, &a.PasswordHash, &a.SIPSecrets, &created); err != nil {
		return store.Account{}, err
	}
	a.CreatedAt = decTime(created)
	return a, nil
}

// CreateAccount adds an account; ErrExists if the name is taken.
func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	_, err := s.pool.Exec(ctx, "INSERT INTO accounts ("+accountCols+") VALUES ($1, $2, $3, $4)",
		a.Name, a.PasswordHash, a.SIPSecrets, encTime(a.CreatedAt))
	switch {
	case pgCode(err) == "23505": // unique_violation
		return fmt.Errorf("postgres store: account %q: %w", a.Name, store.ErrExists)
	case err != nil:
		return fmt.Errorf("postgres store: creating account %q: %w", a.Name, err)
	}
	return nil
}

// Account returns the named account or ErrNotFound.
func (s *Store) Account(ctx context.Context, name string) (store.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, "SELECT "+accountCols+" FROM accounts WHERE name = $1", name))
	if err != nil {
		return store.Account{}, notFound(err, fmt.Sprintf("account %q", name))
	}
	return a, nil
}

// Accounts lists all accounts ordered by name.
func (s *Store) Accounts(ctx context.Context) ([]store.Account, error) {
	rows, _ := s.pool.Query(ctx, "SELECT "+accountCols+" FROM accounts ORDER BY name")
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Account, error) { return scanAccount(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres store: listing accounts: %w", err)
	}
	return out, nil
}

// DeleteAccount removes the account, its tokens, every message from or to it
// (with its sealed text) and every report to it or about a message it
// received, in one transaction.
func (s *Store) DeleteAccount(ctx context.Context, name string) error {
	what := fmt.Sprintf("deleting account %q", name)
	return s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM accounts WHERE name = $1", name)
		if err := affected(what, tag, err); err != nil {
			return err
		}
		for _, q := range []string{
			"DELETE FROM tokens WHERE account = $1",
			`WITH gone AS (DELETE FROM messages WHERE from_acct = $1 OR to_acct = $1
				RETURNING key_period, seq, status)
			DELETE FROM sealed_texts t USING gone
				WHERE gone.status = 'enqueued' AND t.key_period = gone.key_period AND t.seq = gone.seq`,
			// Expired reports to other senders about messages to it
			// (FailMailbox) stay: they are the senders'.
			"DELETE FROM reports WHERE to_acct = $1 OR (recipient = $1 AND status <> 'expired')",
		} {
			if _, err := tx.Exec(ctx, q, name); err != nil {
				return fmt.Errorf("postgres store: %s: %w", what, err)
			}
		}
		return nil
	})
}

// SetPassword replaces the password hash and SIP secrets and revokes every
// token of the account, in one transaction.
func (s *Store) SetPassword(ctx context.Context, name, passwordHash string, sipSecrets []byte) error {
	what := fmt.Sprintf("setting password of %q", name)
	return s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE accounts SET password_hash = $1, sip_secrets = $2 WHERE name = $3", passwordHash, sipSecrets, name)
		if err := affected(what, tag, err); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM tokens WHERE account = $1", name); err != nil {
			return fmt.Errorf("postgres store: %s: revoking tokens: %w", what, err)
		}
		return nil
	})
}

// AddToken stores a token hash. ErrNotFound if the account does not exist,
// ErrExists if the hash is already stored.
func (s *Store) AddToken(ctx context.Context, t store.Token) error {
	_, err := s.pool.Exec(ctx, "INSERT INTO tokens (hash, account, created_at, expires_at) VALUES ($1, $2, $3, $4)",
		t.Hash, t.Account, encTime(t.CreatedAt), encTime(t.ExpiresAt))
	switch pgCode(err) {
	case "":
		if err != nil {
			return fmt.Errorf("postgres store: adding token for account %q: %w", t.Account, err)
		}
		return nil
	case "23503": // foreign_key_violation
		return fmt.Errorf("postgres store: adding token for account %q: %w", t.Account, store.ErrNotFound)
	case "23505":
		return fmt.Errorf("postgres store: adding token for account %q: token hash %w", t.Account, store.ErrExists)
	default:
		return fmt.Errorf("postgres store: adding token for account %q: %w", t.Account, err)
	}
}

// TokenByHash returns the token with that hash if it expires after now.
func (s *Store) TokenByHash(ctx context.Context, hash []byte, now time.Time) (store.Token, error) {
	var t store.Token
	var created, expires int64
	err := s.pool.QueryRow(ctx, "SELECT hash, account, created_at, expires_at FROM tokens WHERE hash = $1 AND expires_at > $2",
		hash, encTime(now)).Scan(&t.Hash, &t.Account, &created, &expires)
	if err != nil {
		return store.Token{}, notFound(err, "looking up token")
	}
	t.CreatedAt, t.ExpiresAt = decTime(created), decTime(expires)
	return t, nil
}

// RevokeToken deletes a token; ErrNotFound if absent.
func (s *Store) RevokeToken(ctx context.Context, hash []byte) error {
	tag, err := s.pool.Exec(ctx, "DELETE FROM tokens WHERE hash = $1", hash)
	return affected("revoking token", tag, err)
}
