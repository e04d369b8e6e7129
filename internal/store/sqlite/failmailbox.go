package sqlite

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// FailMailbox implements store.MailboxFailer: the messages waiting for an
// account the operator deletes fail at once, each with an Expired report
// for its sender, as if they had expired.
func (s *Store) FailMailbox(ctx context.Context, to string, at time.Time) ([]store.Key, error) {
	var failed []store.Key
	err := s.do(ctx, false, func(w *writer) error {
		failed = nil
		list, err := scanMessages(w.conn.QueryContext(w.ctx, `UPDATE messages
			SET status = 'expired', sealed = NULL, key_period = 0
			WHERE to_acct = ?1 AND from_acct <> ?1 AND status = 'enqueued'
			RETURNING `+messageColsNoText, to))
		if err != nil {
			return fmt.Errorf("sqlite store: failing the messages to %q: %w", to, err)
		}
		slices.SortFunc(list, func(a, b store.Message) int { return cmp.Compare(a.Seq, b.Seq) })
		for _, m := range list {
			if _, err := w.insertReport.ExecContext(w.ctx, m.From, m.ID, m.To, string(message.Expired),
				encTime(at), encTime(at.Add(m.ExpiresAt.Sub(m.SubmittedAt)))); err != nil {
				return fmt.Errorf("sqlite store: queueing the failure report of message %s for %q: %w", m.ID, m.From, err)
			}
			failed = append(failed, store.Key{From: m.From, ID: m.ID})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return failed, nil
}
