package queue

import (
	"errors"
	"time"

	"github.com/sealpost/sealpost/internal/store"
)

// budget is how many attempts a message gets in its life, across
// registrations and restarts: the first and Retries more.
func (q *Queue) budget() int { return 1 + q.o.Retries }

// blame picks, among a pass's failed MESSAGEs, the one to charge: the
// first put on the wire. The others in flight behind it most likely failed
// because of it (a device that drops its connection on one message fails
// everything after it), and charging them too would park messages the
// device never had a fair chance to take. A MESSAGE that could not be sent
// at all is charged only when none sent failed (it is then the reason the
// pass ended, though not a try of its own: see recordFailure).
func blame(failures []*result) *result {
	var c *result
	for _, f := range failures {
		switch {
		case c == nil:
			c = f
		case f.sent && (!c.sent || f.nth < c.nth):
			c = f
		}
	}
	return c
}

// unclearBlame reports whether a pass's failures leave the culprit
// unknown: more than one MESSAGE on the wire failed and none was refused
// (a refusal is a message's own). A device that drops its connection on
// one message fails everything then unanswered, including earlier ones
// whose 200 it sent but the server never read.
func unclearBlame(failures []*result) bool {
	sent := 0
	for _, f := range failures {
		if !f.sent {
			continue
		}
		if failureReason(f.err) == "rejected" {
			return false
		}
		sent++
	}
	return sent > 1
}

// charged is what recordFailure decided about a failed message.
type charged struct {
	parked   bool // the message used up its budget
	rejected bool // the device answered it with an error: it is alive
	next     time.Time
}

// recordFailure logs and counts the failure that ended a pass and stores
// the message's schedule: its next attempt RetryInterval after the pass
// began, its error, its attempt count, and, when that was the last attempt
// of its budget, parked.
//
// What a failure costs the budget: a try the device refused (it answered,
// with an error) always counts. A try that got no answer (a timeout, the
// connection dropped) counts once per registration of the device: a phone
// that drops its connection on one message registers again and is charged
// again, but a phone that went into a tunnel, still registered, is not
// charged for every retry until it is back. A message that never went on
// the wire keeps its count (it was not tried).
func (q *Queue) recordFailure(account string, f result, now time.Time) charged {
	m := f.it.m
	reason := failureReason(f.err)
	c := charged{next: now.Add(q.o.RetryInterval), rejected: reason == "rejected"}
	attempts := f.it.before.Attempts
	if f.sent && (c.rejected || q.firstUnansweredSinceRegistration(account, f.it.before.Key)) {
		attempts = f.it.attempt
		c.parked = attempts >= q.budget()
	}
	q.o.Log.Info("delivery attempt failed", "id", m.ID, "to", m.To, "attempt", attempts, "reason", reason, "err", f.err)
	if q.o.Metrics != nil {
		q.o.Metrics.DeliveryFailed.WithLabelValues(reason).Inc()
	}
	a := store.Attempt{Key: f.it.before.Key, Attempts: attempts, Next: c.next, LastError: f.err.Error(), Parked: c.parked}
	if err := q.o.Store.RecordAttempt(q.ctx, a); err != nil && !errors.Is(err, store.ErrNotFound) {
		q.o.Log.Error("recording failed attempt", "id", m.ID, "err", err)
	}
	if c.parked {
		q.o.Log.Warn("message parked: its delivery failed on every attempt of its budget; it waits for expiry and a failure report to its sender, and the messages behind it go out",
			"id", m.ID, "from", m.From, "to", m.To, "attempts", attempts, "reason", reason)
	}
	return c
}

// firstUnansweredSinceRegistration reports whether the message has not
// been charged for an unanswered try since the device last registered, and
// notes that it now is.
func (q *Queue) firstUnansweredSinceRegistration(account string, k store.Key) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.runs[account]
	if r.unanswered == nil {
		r.unanswered = map[store.Key]bool{}
	}
	if r.unanswered[k] {
		return false
	}
	r.unanswered[k] = true
	return true
}

// release puts back the bookkeeping of messages whose attempt was recorded
// but never made (the pass ended first, or they failed only because the
// one charged did): they are due again, with the count they had. A crash
// before this write leaves their counts one ahead, never behind.
func (q *Queue) release(items []toSend) {
	var as []store.Attempt
	for _, it := range items {
		if it.recorded == nil {
			as = append(as, it.before)
		}
	}
	if len(as) == 0 {
		return
	}
	if _, err := q.o.Store.RecordAttempts(q.ctx, as); err != nil {
		q.o.Log.Error("putting back attempts not made", "count", len(as), "first_id", as[0].ID, "err", err)
	}
}

// failed counts a failed pass for the account and returns how long to wait
// before the next one (its message's next attempt), or 0 when the next
// pass may come at once or the account is now parked until the device's
// next registration. A message parked after the device refused it does
// not hold the account: the device is alive and the messages behind it go
// out now.
func (q *Queue) failed(account string, c charged) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.runs[account]
	if c.parked && c.rejected {
		r.failed, r.retryAt = 0, time.Time{}
		r.again = true
		return 0
	}
	r.failed++
	if r.failed > q.o.Retries {
		r.parked = true
		q.o.Log.Info("delivery parked until the device registers again", "account", account, "failed_passes", r.failed)
		return 0
	}
	if c.next.IsZero() {
		c.next = q.o.Clock.Now().Add(q.o.RetryInterval)
	}
	r.retryAt = c.next
	return max(r.retryAt.Sub(q.o.Clock.Now()), time.Nanosecond)
}

func (q *Queue) waitBeforeAttempt(account string) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.runs[account]
	if r == nil || r.retryAt.IsZero() {
		return 0
	}
	return r.retryAt.Sub(q.o.Clock.Now())
}
