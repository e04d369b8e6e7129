package client

import (
	"fmt"
	"time"

	"github.com/sealpost/sealpost/message"
)

// EventKind names what happened.
type EventKind string

// Event kinds.
const (
	// EventStatus: an outgoing message changed status.
	EventStatus EventKind = "status"
	// EventReceived: a new incoming message was stored.
	EventReceived EventKind = "received"
	// EventSendError: a message waited QueueLifetime in the outbox and was
	// given up (status Error); the "Send error" notification.
	EventSendError EventKind = "send_error"
	// EventAttemptFailed: one submission attempt failed (Detail says why).
	EventAttemptFailed EventKind = "attempt_failed"
	// EventOnline: registered with the SIP server.
	EventOnline EventKind = "online"
	// EventOffline: the SIP connection is down (Detail says why).
	EventOffline EventKind = "offline"
	// EventErased: texts passed their validity and were erased.
	EventErased EventKind = "erased"
)

// Event is one thing that happened, for front ends and scripts. A
// received event carries the message's text: the events are the user's
// own stream (the user's terminal, their scripts), never a log; no other
// event carries text.
type Event struct {
	Kind   EventKind      `json:"event"`
	Time   time.Time      `json:"time"`
	ID     string         `json:"id,omitempty"`
	Peer   string         `json:"peer,omitempty"`
	Status message.Status `json:"status,omitempty"`
	Text   string         `json:"text,omitempty"` // EventReceived only
	Detail string         `json:"detail,omitempty"`
	Count  int            `json:"count,omitempty"`
}

func (e Event) String() string {
	t := e.Time.Local().Format("15:04:05")
	switch e.Kind {
	case EventStatus:
		s := fmt.Sprintf("%s %s to %s: %s", t, e.ID, e.Peer, StatusMark(e.Status))
		if e.Detail != "" {
			s += " (" + e.Detail + ")"
		}
		return s
	case EventReceived:
		return fmt.Sprintf("%s %s: %s (%s)", t, e.Peer, e.Text, e.ID)
	case EventSendError:
		return fmt.Sprintf("%s Send error: message %s to %s: %s", t, e.ID, e.Peer, e.Detail)
	case EventAttemptFailed:
		return fmt.Sprintf("%s attempt %d for %s to %s failed: %s", t, e.Count, e.ID, e.Peer, e.Detail)
	case EventOnline:
		return fmt.Sprintf("%s online: %s", t, e.Detail)
	case EventOffline:
		return fmt.Sprintf("%s offline: %s", t, e.Detail)
	case EventErased:
		return fmt.Sprintf("%s erased the text of %d message(s) past their validity", t, e.Count)
	}
	return fmt.Sprintf("%s %s", t, e.Kind)
}

// Subscribe returns a channel of every event from now on and a function
// that ends the subscription. Events are queued without bound for each
// subscriber, so a slow reader never blocks the core nor loses a status
// change.
func (c *Core) Subscribe() (<-chan Event, func()) {
	in := make(chan Event, 64)
	out := make(chan Event)
	c.mu.Lock()
	id := c.nextID
	c.nextID++
	c.subs[id] = in
	c.mu.Unlock()
	stop := make(chan struct{})
	go func() {
		defer close(out)
		var queue []Event
		for {
			var send chan Event
			var head Event
			if len(queue) > 0 {
				send, head = out, queue[0]
			}
			select {
			case e := <-in:
				queue = append(queue, e)
			case send <- head:
				queue = queue[1:]
			case <-stop:
				return
			}
		}
	}()
	var once bool
	return out, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if once {
			return
		}
		once = true
		delete(c.subs, id)
		close(stop)
	}
}

func (c *Core) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = c.clock.Now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.subs {
		// The forwarding goroutine drains in quickly; holding mu keeps the
		// order of events the same for every subscriber.
		ch <- e
	}
}

func (c *Core) notify(title, body string) {
	if c.notifier == nil {
		return
	}
	if err := c.notifier.Notify(title, body); err != nil {
		c.logf("notification: %v", err)
	}
}
