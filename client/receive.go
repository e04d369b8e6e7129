package client

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/message"
)

// handleSIP answers a request the server sent on the flow. A MESSAGE is
// answered 200 only once it is committed to the local store; a store
// failure answers 500 so that the server tries again later.
func (c *Core) handleSIP(req *sip.Request) (int, string) {
	switch req.Method {
	case sip.OPTIONS:
		return 200, "OK"
	case sip.MESSAGE:
	default:
		return 405, "Method Not Allowed"
	}
	ctx := context.Background()
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = strings.ToLower(strings.TrimSpace(h.Value()))
	}
	if strings.HasPrefix(ct, api.ContentTypeIMDN) {
		return c.receiveReport(ctx, req.Body())
	}
	if !strings.HasPrefix(ct, "text/plain") {
		return 415, "Unsupported Media Type"
	}
	from := req.From()
	if from == nil || from.Address.User == "" {
		return 400, "Missing From"
	}
	peer := from.Address.User
	if err := message.CheckAccount(peer); err != nil {
		return 400, "Bad From"
	}
	id := headerValue(req, api.HeaderMessageID)
	if err := message.CheckID(id); err != nil {
		return 400, "Bad " + api.HeaderMessageID
	}
	var submitted time.Time
	if v := headerValue(req, api.HeaderSubmittedAt); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return 400, "Bad " + api.HeaderSubmittedAt
		}
		submitted = t
	}
	isNew, err := c.db.addIncoming(ctx, id, peer, string(req.Body()), submitted, c.clock.Now())
	if err != nil {
		c.logf("receive %s from %s: %v", id, peer, err)
		return 500, "Local Store Unavailable"
	}
	if !isNew {
		c.logf("receive: %s from %s already stored; dropped the repeat", id, peer)
		return 200, "OK"
	}
	text := string(req.Body())
	c.emit(Event{Kind: EventReceived, ID: id, Peer: peer, Status: Received, Text: text})
	// Who and what, as a phone shows it ("alice: Hello Bob 👋"), unless
	// the user hides texts from notifications (notify_text false).
	body := text
	if !c.cfg().NotifyText {
		body = "New message"
	}
	c.notify(peer, body)
	c.sweeper.kick()
	return 200, "OK"
}

func (c *Core) receiveReport(ctx context.Context, body []byte) (int, string) {
	rep, err := api.ParseIMDN(body)
	if err != nil {
		c.logf("delivery report: %v", err)
		return 400, "Bad Delivery Report"
	}
	at := rep.DateTime
	if at.IsZero() {
		at = c.clock.Now()
	}
	switch rep.Status {
	case api.IMDNDelivered:
		err = c.applyReport(ctx, rep.MessageID, message.Delivered, at, "")
	default:
		err = c.applyReport(ctx, rep.MessageID, message.Error, at, "the server could not deliver it before it expired")
	}
	if err != nil {
		c.logf("delivery report for %s: %v", rep.MessageID, err)
		return 500, "Local Store Unavailable"
	}
	return 200, "OK"
}

// applyReport moves an outgoing message to Delivered or Error. A report can
// overtake the answer to the submission (the recipient was online and
// answered first); the server then surely had the message, so it passes
// through Enqueued on the way and every status is seen in order. A report
// for an unknown or already final message changes nothing.
func (c *Core) applyReport(ctx context.Context, id string, to message.Status, at time.Time, reason string) error {
	r, err := c.db.outgoing(ctx, id)
	if err == ErrNotFound {
		c.logf("delivery report for unknown message %s ignored", id)
		return nil
	}
	if err != nil {
		return err
	}
	if r.Status == message.Sending {
		ok, err := c.db.setStatus(ctx, id, message.Enqueued, []message.Status{message.Sending}, nil)
		if err != nil {
			return err
		}
		if ok {
			c.emit(Event{Kind: EventStatus, ID: id, Peer: r.Peer, Status: message.Enqueued})
		}
	}
	set := map[string]any{}
	if to == message.Delivered {
		set["delivered_at"] = ns(at)
	} else {
		set["last_error"] = reason
	}
	ok, err := c.db.setStatus(ctx, id, to, []message.Status{message.Sending, message.Enqueued}, set)
	if err != nil {
		return err
	}
	if ok {
		c.emit(Event{Kind: EventStatus, ID: id, Peer: r.Peer, Status: to, Detail: reason})
		if to == message.Error {
			c.notify("Send error", fmt.Sprintf("Your message to %s was not delivered: %s", r.Peer, reason))
		}
		c.sweeper.kick()
	}
	return nil
}

func headerValue(req *sip.Request, name string) string {
	if h := req.GetHeader(name); h != nil {
		return strings.TrimSpace(h.Value())
	}
	return ""
}
