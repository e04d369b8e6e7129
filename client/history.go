package client

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/sealpost/sealpost/message"
)

// Placeholders shown instead of a text erased at the end of its validity,
// the manual's words.
const (
	PlaceholderSent     = "Message sent"
	PlaceholderReceived = "Message received"
)

// Received is the status of every incoming message.
const Received message.Status = "received"

// Message is one message as the device knows it.
type Message struct {
	ID       string
	Peer     string // the other account
	Outgoing bool
	// Text is the message, or PlaceholderSent / PlaceholderReceived once
	// Erased.
	Text   string
	Erased bool
	Status message.Status // Sending, Enqueued, Delivered, Error; Received for incoming
	// At orders the conversation: when the user sent it, or when the
	// sender submitted it (the server's time) for a received message.
	At          time.Time
	CreatedAt   time.Time // sent by the user / stored on this device
	SubmittedAt time.Time // accepted by the server; zero until then
	DeliveredAt time.Time // zero unless Delivered
	Unread      bool
	// Outbox state, for outgoing messages.
	Attempts  int
	LastError string
}

func (c *Core) toMessage(r row) Message {
	m := Message{
		ID: r.ID, Peer: r.Peer, Outgoing: r.Outgoing, Text: r.Text, Erased: r.Erased,
		Status: r.Status, At: r.CreatedAt, CreatedAt: r.CreatedAt, SubmittedAt: r.SubmittedAt,
		DeliveredAt: r.DeliveredAt, Unread: r.Unread, Attempts: r.Attempts, LastError: r.LastError,
	}
	if !r.Outgoing && !r.SubmittedAt.IsZero() {
		m.At = r.SubmittedAt
	}
	if r.Erased {
		m.Text = PlaceholderReceived
		if r.Outgoing {
			m.Text = PlaceholderSent
		}
	}
	return m
}

// History returns the conversation with peer in time order and marks its
// incoming messages read. Texts past their validity are erased first, so
// an expired text is never shown.
func (c *Core) History(ctx context.Context, peer string) ([]Message, error) {
	peer = NormalizeAccount(peer)
	out, err := c.Conversation(ctx, peer)
	if err != nil {
		return nil, err
	}
	if err := c.db.markRead(ctx, peer); err != nil {
		return out, fmt.Errorf("mark read: %w", err)
	}
	return out, nil
}

// Message returns one outgoing message (by its id, or a unique prefix of
// it), or if none, an incoming one with that id.
func (c *Core) Message(ctx context.Context, id string) (Message, error) {
	if err := c.sweeper.sweep(ctx); err != nil {
		c.logf("validity sweep: %v", err)
	}
	id, err := c.resolveID(ctx, id)
	if err != nil {
		return Message{}, err
	}
	rows, err := c.db.query(ctx, "WHERE id = ? ORDER BY outgoing DESC, seq LIMIT 1", id)
	if err != nil {
		return Message{}, err
	}
	if len(rows) == 0 {
		return Message{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return c.toMessage(rows[0]), nil
}

// Contact is an account this device has exchanged messages with.
type Contact struct {
	Name   string
	Last   time.Time // the newest message either way
	Unread int
	Total  int
}

// Contacts lists the accounts talked with, newest conversation first.
func (c *Core) Contacts(ctx context.Context) ([]Contact, error) {
	rows, err := c.db.sql.QueryContext(ctx, `SELECT peer, max(CASE WHEN outgoing = 0 AND submitted_at > 0 THEN submitted_at ELSE created_at END),
		sum(unread), count(*) FROM messages GROUP BY peer`)
	if err != nil {
		return nil, fmt.Errorf("read local store: %w", err)
	}
	defer rows.Close()
	var out []Contact
	for rows.Next() {
		var ct Contact
		var last int64
		if err := rows.Scan(&ct.Name, &last, &ct.Unread, &ct.Total); err != nil {
			return nil, fmt.Errorf("read local store: %w", err)
		}
		ct.Last = fromNS(last)
		out = append(out, ct)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read local store: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Last.After(out[j].Last) })
	return out, nil
}

// StatusMark is the short mark shown beside an outgoing message.
func StatusMark(s message.Status) string {
	switch s {
	case message.Sending:
		return "Sending"
	case message.Enqueued:
		return "Enqueued"
	case message.Delivered:
		return "Delivered"
	case message.Error, message.Expired:
		return "Error"
	case Received:
		return "Received"
	}
	return string(s)
}

// Refresh asks the server where an Enqueued message stands (GET
// /v1/messages/{id}) and applies the answer. It serves a front end that is
// not online over SIP, where delivery reports cannot reach it.
func (c *Core) Refresh(ctx context.Context, id string) (Message, error) {
	r, err := c.db.outgoing(ctx, id)
	if err != nil {
		return Message{}, err
	}
	if r.Status != message.Enqueued {
		return c.toMessage(r), nil
	}
	st, err := c.api.status(ctx, id)
	if err != nil {
		return c.toMessage(r), err
	}
	if _, err := c.applyServerStatus(ctx, st); err != nil {
		return c.toMessage(r), err
	}
	if r, err = c.db.outgoing(ctx, id); err != nil {
		return Message{}, err
	}
	return c.toMessage(r), nil
}
