package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/message"
)

// heartbeat keeps the event stream busy, so that a dead connection is
// noticed by both sides: the page reconnects when it hears nothing for
// three heartbeats (a laptop that slept, a connection dropped silently).
const heartbeat = 15 * time.Second

// liveEvent is one Server-Sent Event for the page.
type liveEvent struct {
	Kind   client.EventKind `json:"kind"`
	ID     string           `json:"id,omitempty"`
	Peer   string           `json:"peer,omitempty"`
	Status string           `json:"status,omitempty"`
	// At orders the bubble in its conversation (Unix ms, Message.At).
	At int64 `json:"at,omitempty"`
	// HTML is the bubble, rendered by the same template as the page, in
	// the status of this event: every status a message passes through is
	// shown, in order, even when they follow each other within a
	// millisecond.
	HTML string `json:"html,omitempty"`
	// Online and Detail describe the SIP registration (online/offline).
	Online bool   `json:"online"`
	Detail string `json:"detail,omitempty"`
}

// events streams the core's events (Core.Subscribe) to one page. The first
// event ("hello") tells the registration state; the page redraws itself
// after each (re)connection, so that nothing that happened while it was
// away is missed.
func (u *UI) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ctx := r.Context()
	ch, stop := u.core.Subscribe()
	defer stop()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry: how soon the browser reconnects after losing the stream.
	fmt.Fprintf(w, "retry: 1000\n\n")
	send := func(name string, e liveEvent) bool {
		b, _ := json.Marshal(e)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	if !send("hello", liveEvent{Online: u.core.Online()}) {
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// An event, not a comment, so that the page sees it and can
			// tell a silent dead connection from a quiet one.
			if !send("ping", liveEvent{Online: u.core.Online()}) {
				return
			}
		case e, ok := <-ch:
			if !ok {
				return
			}
			if !send("change", u.live(r, e)) {
				return
			}
		}
	}
}

// live turns a core event into what the page needs to show it.
func (u *UI) live(r *http.Request, e client.Event) liveEvent {
	le := liveEvent{Kind: e.Kind, ID: e.ID, Peer: e.Peer, Status: string(e.Status), Online: u.core.Online(), Detail: e.Detail}
	switch e.Kind {
	case client.EventOnline:
		le.Online = true
	case client.EventOffline:
		le.Online = false
	case client.EventStatus, client.EventReceived, client.EventAttemptFailed, client.EventSendError:
		m, err := u.core.Message(r.Context(), e.ID)
		if err != nil || m.Outgoing != (e.Kind != client.EventReceived) {
			// The page redraws the conversation from the store instead.
			le.ID = ""
			return le
		}
		if m.Outgoing && e.Status != "" {
			// The bubble as it was at this event, not as it is by now.
			m.Status = e.Status
			if e.Detail != "" && (e.Kind == client.EventAttemptFailed || statusClass(e.Status) == string(message.Error)) {
				m.LastError = e.Detail
			}
			if e.Kind == client.EventAttemptFailed {
				m.Attempts = e.Count
			}
			if e.Status != message.Delivered {
				m.DeliveredAt = time.Time{}
			}
		}
		var b bytes.Buffer
		if err := u.tmpl.ExecuteTemplate(&b, "bubble", m); err != nil {
			u.logf("web: render bubble: %v", err)
			le.ID = ""
			return le
		}
		le.HTML = b.String()
		le.At = m.At.UnixMilli()
		le.Status = statusClass(m.Status)
	}
	return le
}
