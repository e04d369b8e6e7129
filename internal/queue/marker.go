package queue

import (
	"sync"

	"github.com/sealpost/sealpost/internal/store"
)

// marker marks delivered messages in the store in the background, so the
// next message can go out while the write commits. One goroutine writes
// the marks: each write takes every message delivered since the last one
// began, in one call to the store (MarkDeliveredAll), so a drain makes a
// few writes per commit instead of an op and a goroutine per message. At
// most maxMarking messages wait for it: past that, delivered waits, which
// holds the sends back to the pace of the store. Only one goroutine calls
// delivered, flush, and then wait. (Nothing here is sized by maxMarking
// but the semaphore of empty structs.)
//
// The goroutine starts only when the pass has something else to wait for
// (flush): most passes deliver one message and end, and write its mark
// themselves in wait, without a goroutine and the hand-offs to it and back.
type marker struct {
	q       *Queue
	slots   chan struct{} // one per message delivered and not yet written
	wake    chan struct{} // 1-buffered: there is something to look at
	started bool
	done    chan struct{}

	mu      sync.Mutex
	pending []store.Message // guarded by mu
	spare   []store.Message // the last batch written, emptied, for the next; guarded by mu
	closed  bool            // guarded by mu: wait was called
	first   error           // first failed write; read after done is closed
}

const maxMarking = 2 * window

func newMarker(q *Queue) *marker {
	return &marker{q: q, slots: make(chan struct{}, maxMarking), wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (mk *marker) delivered(m store.Message) {
	mk.slots <- struct{}{}
	mk.mu.Lock()
	mk.pending = append(mk.pending, m)
	mk.mu.Unlock()
	switch {
	case mk.started:
		mk.signal()
	case len(mk.slots) >= maxInFlight:
		mk.flush() // never fill the slots with no one to empty them
	}
}

// flush has the marks taken so far written in the background; the pass
// calls it before it waits for anything else.
func (mk *marker) flush() {
	if mk.started {
		return // delivered signals the goroutine itself
	}
	mk.mu.Lock()
	n := len(mk.pending)
	mk.mu.Unlock()
	if n == 0 {
		return
	}
	mk.started = true
	go mk.run()
	mk.signal()
}

func (mk *marker) signal() {
	select {
	case mk.wake <- struct{}{}:
	default:
	}
}

func (mk *marker) run() {
	defer close(mk.done)
	for range mk.wake {
		mk.mu.Lock()
		ms, closed := mk.pending, mk.closed
		mk.pending, mk.spare = mk.spare, nil
		mk.mu.Unlock()
		if len(ms) > 0 {
			if err := mk.q.delivered(ms); err != nil && mk.first == nil {
				mk.first = err
			}
			n := len(ms)
			clear(ms) // the slice is reused: let the sealed texts go
			mk.mu.Lock()
			mk.spare = ms[:0]
			mk.mu.Unlock()
			for range n {
				<-mk.slots
			}
		}
		if closed && len(ms) == 0 {
			return
		}
		if closed {
			mk.signal() // look once more: the last call may have raced the close
		}
	}
}

// wait waits for every mark, or writes them itself if none was flushed,
// and returns the first failure; the marker is done with after it.
func (mk *marker) wait() error {
	if !mk.started {
		mk.mu.Lock()
		ms := mk.pending
		mk.pending = nil
		mk.mu.Unlock()
		if len(ms) == 0 {
			return nil
		}
		return mk.q.delivered(ms)
	}
	mk.mu.Lock()
	mk.closed = true
	mk.mu.Unlock()
	mk.signal()
	<-mk.done
	return mk.first
}

// delivered records that the device accepted ms.
func (q *Queue) delivered(ms []store.Message) error {
	at := q.o.Clock.Now()
	keys := make([]store.Key, len(ms))
	for i, m := range ms {
		keys[i] = store.Key{From: m.From, ID: m.ID}
	}
	errs, err := q.o.Store.MarkDeliveredAll(q.ctx, keys, at)
	if err != nil {
		// The device has them; the store could not record that. The
		// next pass delivers them again and the device drops the
		// duplicate ids, so nothing is lost and nothing is shown twice.
		q.o.Log.Error("marking messages delivered", "count", len(ms), "first_id", ms[0].ID, "err", err)
		return err
	}
	for i, m := range ms {
		if errs[i] != nil { // ErrNotFound: delivered or expired meanwhile
			continue
		}
		q.o.Log.Info("message delivered", "id", m.ID, "from", m.From, "to", m.To)
		if q.o.Metrics != nil {
			q.o.Metrics.Delivered.Inc()
			q.o.Metrics.DeliveryLatency.Observe(at.Sub(m.SubmittedAt).Seconds())
		}
		// A delivery report waits for the sender. Only a device that
		// asked for reports gets one; an offline sender gets it when it
		// registers (Online kicks its run), so only then is a run worth
		// starting now.
		if sb, online := q.o.Lookup(m.From); online && sb.IMDN {
			q.Kick(m.From)
		} else if !online && q.o.Elsewhere != nil {
			q.o.Elsewhere(m.From, nil) // the sender's device may be on another node
		}
	}
	q.mu.Lock()
	for _, m := range ms {
		if r := q.runs[m.To]; r != nil {
			r.failed = 0
		}
		delete(q.fresh, freshKey(m.From, m.ID))
	}
	q.mu.Unlock()
	return nil
}
