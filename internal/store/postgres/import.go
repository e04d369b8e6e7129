package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// Import writes snap into an empty store in one transaction (sealpostd
// store copy): accounts, tokens, data keys, every message with its Seq,
// status, schedule and sealed text, and every report with its Seq; then it
// moves the seq sequences past the copied ones. It refuses a store that
// already has accounts or messages, so a copy never mixes two
// deployments. Either all of snap is stored or nothing is.
func (s *Store) Import(ctx context.Context, snap *store.Snapshot) error {
	var periods []int64
	for _, m := range snap.Messages {
		if m.Status == message.Enqueued && len(m.Sealed) > 0 {
			periods = append(periods, m.KeyPeriod)
		}
	}
	if err := s.ensurePartitions(ctx, periods); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var used bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM messages)").Scan(&used); err != nil {
			return err
		}
		if used {
			return fmt.Errorf("the target database already holds accounts or messages; copy into an empty one")
		}
		copyRows := func(table string, cols []string, n int, row func(i int) []any) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromSlice(n, func(i int) ([]any, error) { return row(i), nil }))
			if err != nil {
				return fmt.Errorf("copying %s: %w", table, err)
			}
			return nil
		}
		if err := copyRows("accounts", []string{"name", "password_hash", "sip_secrets", "created_at"}, len(snap.Accounts), func(i int) []any {
			a := snap.Accounts[i]
			return []any{a.Name, a.PasswordHash, a.SIPSecrets, encTime(a.CreatedAt)}
		}); err != nil {
			return err
		}
		if err := copyRows("tokens", []string{"hash", "account", "created_at", "expires_at"}, len(snap.Tokens), func(i int) []any {
			t := snap.Tokens[i]
			return []any{t.Hash, t.Account, encTime(t.CreatedAt), encTime(t.ExpiresAt)}
		}); err != nil {
			return err
		}
		var periods []int64
		for p := range snap.DataKeys {
			periods = append(periods, p)
		}
		if err := copyRows("data_keys", []string{"period", "wrapped"}, len(periods), func(i int) []any {
			return []any{periods[i], snap.DataKeys[periods[i]]}
		}); err != nil {
			return err
		}
		ms := snap.Messages
		if err := copyRows("messages", []string{"seq", "from_acct", "id", "to_acct", "key_period", "status", "submitted_at",
			"expires_at", "delivered_at", "attempts", "next_attempt", "last_error", "parked"}, len(ms), func(i int) []any {
			m := ms[i]
			return []any{m.Seq, m.From, m.ID, m.To, m.KeyPeriod, string(m.Status), encTime(m.SubmittedAt),
				encTime(m.ExpiresAt), encTime(m.DeliveredAt), int64(m.Attempts), encTime(m.NextAttempt), m.LastError, m.Parked}
		}); err != nil {
			return err
		}
		var texts []store.Message
		for _, m := range ms {
			if m.Status == message.Enqueued && len(m.Sealed) > 0 {
				texts = append(texts, m)
			}
		}
		if err := copyRows("sealed_texts", []string{"key_period", "seq", "sealed"}, len(texts), func(i int) []any {
			return []any{texts[i].KeyPeriod, texts[i].Seq, texts[i].Sealed}
		}); err != nil {
			return err
		}
		rs := snap.Reports
		if err := copyRows("reports", []string{"seq", "to_acct", "message_id", "recipient", "status", "at", "expires_at"}, len(rs), func(i int) []any {
			r := rs[i]
			return []any{r.Seq, r.To, r.MessageID, r.Recipient, string(r.Status), encTime(r.At), encTime(r.ExpiresAt)}
		}); err != nil {
			return err
		}
		// New seqs continue after the copied ones (mailbox order).
		for _, q := range []string{
			"SELECT setval('message_seq', greatest((SELECT max(seq) FROM messages), 1), (SELECT count(*) > 0 FROM messages))",
			"SELECT setval(pg_get_serial_sequence('reports', 'seq'), greatest((SELECT max(seq) FROM reports), 1), (SELECT count(*) > 0 FROM reports))",
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("moving the sequences past the copied rows: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres store: import: %w", err)
	}
	return nil
}
