package client

import (
	"context"
	"fmt"
	"strings"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/message"
)

// RunActive reports whether a `sealpost run` is up for this profile (in
// this process or another): then delivery reports keep the statuses true
// and nobody needs to ask the server.
func (c *Core) RunActive() bool { return runActive(c.home) }

// RefreshStatuses asks the server, in one request, where this device's
// Enqueued messages stand (only those to peer, if not empty; the newest
// api.MaxStatusIDs) and applies the answers: Delivered, or Error for one
// that expired undelivered. It serves a front end that is not online over
// SIP, where delivery reports cannot reach it. It returns how many
// statuses changed.
func (c *Core) RefreshStatuses(ctx context.Context, peer string) (int, error) {
	where := "WHERE outgoing = 1 AND status = ?"
	args := []any{message.Enqueued}
	if peer != "" {
		where += " AND peer = ?"
		args = append(args, NormalizeAccount(peer))
	}
	rows, err := c.db.query(ctx, where+fmt.Sprintf(" ORDER BY seq DESC LIMIT %d", api.MaxStatusIDs), args...)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	res, err := c.api.statuses(ctx, ids)
	if err != nil {
		return 0, err
	}
	changed := 0
	for _, st := range res.Messages {
		ok, err := c.applyServerStatus(ctx, st)
		if err != nil {
			return changed, err
		}
		if ok {
			changed++
		}
	}
	return changed, nil
}

// applyServerStatus applies what the server says of one of our messages;
// it reports whether the local status changed.
func (c *Core) applyServerStatus(ctx context.Context, st api.MessageStatus) (bool, error) {
	r, err := c.db.outgoing(ctx, message.NormalizeID(st.ID))
	if err != nil {
		return false, err
	}
	switch message.Status(st.Status) {
	case message.Delivered:
		at := c.clock.Now()
		if st.DeliveredAt != nil {
			at = *st.DeliveredAt
		}
		err = c.applyReport(ctx, r.ID, message.Delivered, at, "")
	case message.Expired:
		err = c.applyReport(ctx, r.ID, message.Error, c.clock.Now(), "the server could not deliver it before it expired")
	default:
		return false, nil
	}
	if err != nil {
		return false, err
	}
	after, err := c.db.outgoing(ctx, r.ID)
	return err == nil && after.Status != r.Status, err
}

// resolveID turns what the user typed into a message id: a full id, or a
// unique prefix of one (as `5f0c2a` for the id printed by send).
func (c *Core) resolveID(ctx context.Context, idOrPrefix string) (string, error) {
	p := strings.ToLower(strings.TrimSpace(strings.TrimSuffix(idOrPrefix, "…")))
	if p == "" || strings.Trim(p, "0123456789abcdef-") != "" {
		return "", fmt.Errorf("%q is not a message id nor the start of one (ids are like 5f0c2a1e-…)", idOrPrefix)
	}
	rows, err := c.db.sql.QueryContext(ctx, "SELECT DISTINCT id FROM messages WHERE substr(id, 1, ?) = ? LIMIT 3", len(p), p)
	if err != nil {
		return "", fmt.Errorf("read local store: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return "", fmt.Errorf("read local store: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("read local store: %w", err)
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("%s: %w", idOrPrefix, ErrNotFound)
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%s is the start of more than one message id (%s, %s…); give more of it", idOrPrefix, ids[0], ids[1])
}
