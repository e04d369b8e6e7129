package client

import (
	"context"
	"fmt"
	"sort"

	"github.com/sealpost/sealpost/message"
)

// Conversation returns the conversation with peer in the order History
// shows it, without marking anything read: a front end that redraws a
// conversation nobody may be looking at (a window in the background) marks
// it read with MarkRead once the user sees it.
func (c *Core) Conversation(ctx context.Context, peer string) ([]Message, error) {
	peer = NormalizeAccount(peer)
	if err := message.CheckAccount(peer); err != nil {
		return nil, err
	}
	if err := c.sweeper.sweep(ctx); err != nil {
		c.logf("validity sweep: %v", err)
	}
	rows, err := c.db.query(ctx, "WHERE peer = ? ORDER BY seq", peer)
	if err != nil {
		return nil, err
	}
	out := make([]Message, 0, len(rows))
	for _, r := range rows {
		out = append(out, c.toMessage(r))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, nil
}

// MarkRead marks every incoming message from peer read.
func (c *Core) MarkRead(ctx context.Context, peer string) error {
	peer = NormalizeAccount(peer)
	if err := message.CheckAccount(peer); err != nil {
		return err
	}
	if err := c.db.markRead(ctx, peer); err != nil {
		return fmt.Errorf("mark read: %w", err)
	}
	return nil
}

// LastMessages returns the newest message of each conversation (the one
// History would show last), by peer: the preview of a contact list. An
// erased text reads "Message sent" / "Message received".
func (c *Core) LastMessages(ctx context.Context) (map[string]Message, error) {
	if err := c.sweeper.sweep(ctx); err != nil {
		c.logf("validity sweep: %v", err)
	}
	// The same order as History: by At (the server's submission time for a
	// received message), then by local order; one pass over the table.
	rows, err := c.db.sql.QueryContext(ctx, `SELECT `+rowCols+` FROM (SELECT *, row_number() OVER (PARTITION BY peer
		ORDER BY (CASE WHEN outgoing = 0 AND submitted_at > 0 THEN submitted_at ELSE created_at END) DESC, seq DESC) AS pos
		FROM messages) WHERE pos = 1`)
	if err != nil {
		return nil, fmt.Errorf("read local store: %w", err)
	}
	defer rows.Close()
	out := make(map[string]Message)
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, fmt.Errorf("read local store: %w", err)
		}
		out[r.Peer] = c.toMessage(r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read local store: %w", err)
	}
	return out, nil
}
