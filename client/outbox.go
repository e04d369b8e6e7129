package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/message"
)

// outbox submits Sending messages with the manual's retry rule:
//
//   - an attempt may take AttemptTimeout (12 s), and the next attempt of a
//     round starts when that slot ends, so a round of RoundAttempts (5)
//     spans 60 s however fast the failures are;
//   - the attempt count, the attempts left in the round and the next
//     attempt time are written to the store before the attempt is made;
//   - after a failed round the message waits for a trigger (Core.Trigger);
//   - a 4xx refusal is final (Error at once, with the server's reason);
//   - QueueLifetime (12 h) after the user sent it, a message still Sending
//     becomes Error with a "Send error" notification;
//   - only the oldest Sending message to each contact is submitted, so the
//     server receives a contact's messages in the order they were written.
//
// A pass reads the store and starts what is due; a one-slot kick channel
// and a timer on the core's clock for the next due time start passes.
type outbox struct {
	c     *Core
	kickc chan struct{}

	passMu sync.Mutex // serialises passes, so a head is never started twice

	mu       sync.Mutex
	inflight map[string]bool // peer → an attempt is running; guarded by mu
	timer    clock.Timer     // wakes the next pass; guarded by mu
	changeCh chan struct{}   // closed and replaced after each pass and attempt; guarded by mu
	attempts sync.WaitGroup  // running attempts
}

func newOutbox(c *Core) *outbox {
	return &outbox{c: c, kickc: make(chan struct{}, 1), inflight: map[string]bool{}, changeCh: make(chan struct{})}
}

func (o *outbox) kick() {
	select {
	case o.kickc <- struct{}{}:
	default:
	}
}

func (o *outbox) changed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.changeCh
}

func (o *outbox) signal() {
	o.mu.Lock()
	close(o.changeCh)
	o.changeCh = make(chan struct{})
	o.mu.Unlock()
}

func (o *outbox) run(ctx context.Context) {
	defer func() {
		o.mu.Lock()
		if o.timer != nil {
			o.timer.Stop()
		}
		o.mu.Unlock()
		o.attempts.Wait()
	}()
	for {
		if _, err := o.pass(ctx); err != nil && ctx.Err() == nil {
			o.c.logf("outbox: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-o.kickc:
		}
	}
}

// pass expires what waited too long, starts every due head, and sets the
// timer for the next due time. It returns the number of attempts started.
func (o *outbox) pass(ctx context.Context) (int, error) {
	o.passMu.Lock()
	defer o.passMu.Unlock()
	defer o.signal()
	c := o.c
	s := c.cfg()
	now := c.clock.Now()
	rows, err := c.db.sending(ctx)
	if err != nil {
		return 0, err
	}
	var wake time.Time
	earlier := func(t time.Time) {
		if wake.IsZero() || t.Before(wake) {
			wake = t
		}
	}
	headSeen := map[string]bool{}
	started := 0
	for _, r := range rows {
		o.mu.Lock()
		busy := o.inflight[r.Peer]
		o.mu.Unlock()
		deadline := r.CreatedAt.Add(time.Duration(s.QueueLifetime))
		if !busy && !now.Before(deadline) {
			o.giveUp(ctx, r)
			continue
		}
		earlier(deadline)
		if headSeen[r.Peer] {
			continue // waits for the older messages to this contact
		}
		headSeen[r.Peer] = true
		if busy || r.RoundLeft <= 0 {
			continue // running, or waiting for a trigger
		}
		if now.Before(r.NextAttempt) {
			earlier(r.NextAttempt)
			continue
		}
		ok, err := c.db.recordAttempt(ctx, r.ID, now.Add(time.Duration(s.AttemptTimeout)))
		if err != nil {
			return started, err
		}
		if !ok {
			continue
		}
		r.Attempts++
		r.RoundLeft--
		o.mu.Lock()
		o.inflight[r.Peer] = true
		o.mu.Unlock()
		o.attempts.Add(1)
		started++
		go o.attempt(ctx, r)
	}
	o.mu.Lock()
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	if !wake.IsZero() {
		// The wait is measured from the clock as it is now, not from the
		// start of the pass: the pass reads and writes the database, and
		// a wake measured from its start would fire that much late (with
		// the tests' fake clock, never, had the clock moved meanwhile).
		// A wake already past fires at once.
		o.timer = c.clock.AfterFunc(wake.Sub(c.clock.Now()), o.kick)
	}
	o.mu.Unlock()
	return started, nil
}

// expireOverdue gives up every message that has waited QueueLifetime,
// without starting any attempt: Open calls it, so that a process that is
// not running the outbox (history, status) still shows the Send error
// that became due while no run was up.
func (o *outbox) expireOverdue(ctx context.Context) error {
	o.passMu.Lock()
	defer o.passMu.Unlock()
	rows, err := o.c.db.sending(ctx)
	if err != nil {
		return err
	}
	now := o.c.clock.Now()
	for _, r := range rows {
		o.mu.Lock()
		busy := o.inflight[r.Peer]
		o.mu.Unlock()
		if !busy && !now.Before(r.CreatedAt.Add(time.Duration(o.c.cfg().QueueLifetime))) {
			o.giveUp(ctx, r)
		}
	}
	return nil
}

// giveUp ends a message that waited QueueLifetime in the outbox: Error, a
// "Send error" notification, and it leaves the queue.
func (o *outbox) giveUp(ctx context.Context, r row) {
	c := o.c
	reason := fmt.Sprintf("not accepted by the server within %s after %d attempt(s)", time.Duration(c.cfg().QueueLifetime), r.Attempts)
	if r.LastError != "" {
		reason += "; last error: " + r.LastError
	}
	ok, err := c.db.setStatus(ctx, r.ID, message.Error, []message.Status{message.Sending},
		map[string]any{"last_error": reason})
	if err != nil {
		c.logf("outbox: give up %s: %v", r.ID, err)
		return
	}
	if !ok {
		return
	}
	c.logf("outbox: %s to %s given up: %s", r.ID, r.Peer, reason)
	c.emit(Event{Kind: EventStatus, ID: r.ID, Peer: r.Peer, Status: message.Error, Detail: reason})
	c.emit(Event{Kind: EventSendError, ID: r.ID, Peer: r.Peer, Status: message.Error, Detail: reason})
	c.notify("Send error", fmt.Sprintf("Your message to %s could not be sent.", r.Peer))
	c.sweeper.kick()
}

func (o *outbox) attempt(ctx context.Context, r row) {
	c := o.c
	defer func() {
		o.mu.Lock()
		delete(o.inflight, r.Peer)
		o.mu.Unlock()
		o.attempts.Done()
		o.signal()
		o.kick()
	}()
	actx, cancel := withClockTimeout(ctx, c.clock, time.Duration(c.cfg().AttemptTimeout))
	res, err := c.sub.submit(actx, api.SubmitRequest{ID: r.ID, To: r.Peer, Text: r.Text})
	if err != nil && actx.Err() != nil && ctx.Err() == nil {
		err = context.Cause(actx)
	}
	cancel()
	switch {
	case err == nil:
		o.accepted(ctx, r, res)
	case permanent(err):
		msg := err.Error()
		ok, dbErr := c.db.setStatus(ctx, r.ID, message.Error, []message.Status{message.Sending},
			map[string]any{"last_error": msg})
		if dbErr != nil {
			c.logf("outbox: %v", dbErr)
			return
		}
		if ok {
			c.logf("outbox: %s to %s refused: %s", r.ID, r.Peer, msg)
			c.emit(Event{Kind: EventStatus, ID: r.ID, Peer: r.Peer, Status: message.Error, Detail: msg})
			c.notify("Send error", fmt.Sprintf("Your message to %s was refused: %s", r.Peer, msg))
			c.sweeper.kick()
		}
	default:
		msg := err.Error()
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			msg = "stopped before the server answered"
		}
		if dbErr := c.db.setLastError(context.WithoutCancel(ctx), r.ID, msg); dbErr != nil {
			c.logf("outbox: %v", dbErr)
		}
		left := ""
		if r.RoundLeft == 0 {
			left = "; round over, waiting for a trigger"
		}
		c.logf("outbox: attempt %d for %s to %s failed: %s%s", r.Attempts, r.ID, r.Peer, msg, left)
		c.emit(Event{Kind: EventAttemptFailed, ID: r.ID, Peer: r.Peer, Status: message.Sending, Detail: msg + left, Count: r.Attempts})
	}
}

// accepted applies a 2xx answer: 202 enqueued, or 200 for an id the server
// already had, whose status may have moved on.
func (o *outbox) accepted(ctx context.Context, r row, res api.SubmitResponse) {
	c := o.c
	set := map[string]any{"submitted_at": ns(res.SubmittedAt), "expires_at": ns(res.ExpiresAt), "last_error": ""}
	ok, err := c.db.setStatus(ctx, r.ID, message.Enqueued, []message.Status{message.Sending}, set)
	if err != nil {
		c.logf("outbox: %v", err)
		return
	}
	if ok {
		c.emit(Event{Kind: EventStatus, ID: r.ID, Peer: r.Peer, Status: message.Enqueued})
	}
	switch message.Status(res.Status) {
	case message.Delivered:
		c.applyReport(ctx, r.ID, message.Delivered, c.clock.Now(), "")
	case message.Expired:
		c.applyReport(ctx, r.ID, message.Error, c.clock.Now(), "the server could not deliver it before it expired")
	}
}

// idle reports whether no attempt is running.
func (o *outbox) idle() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.inflight) == 0
}

// busy reports whether some message is in the middle of a round: an attempt
// is running, or a contact's oldest Sending message has attempts left.
func (o *outbox) busy(ctx context.Context) (bool, error) {
	o.mu.Lock()
	n := len(o.inflight)
	o.mu.Unlock()
	if n > 0 {
		return true, nil
	}
	rows, err := o.c.db.sending(ctx)
	if err != nil {
		return false, err
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.Peer] {
			continue
		}
		seen[r.Peer] = true
		if r.RoundLeft > 0 {
			return true, nil
		}
	}
	return false, nil
}

// waitRoundsOver returns once no message is in the middle of a round.
func (o *outbox) waitRoundsOver(ctx context.Context) error {
	for {
		ch := o.changed()
		busy, err := o.busy(ctx)
		if err != nil {
			return err
		}
		if !busy {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// AttemptOnce starts what the outbox may start now (the attempts due, a
// message just sent among them) and waits for those attempts, without
// running the outbox on: `sealpost send` without a run uses it to hand a
// message to the server once, leaving the rest of the round to the next
// run or trigger.
func (c *Core) AttemptOnce(ctx context.Context) error {
	_, err := c.outbox.pass(ctx)
	c.outbox.attempts.Wait()
	c.outbox.mu.Lock()
	if c.outbox.timer != nil {
		c.outbox.timer.Stop()
		c.outbox.timer = nil
	}
	c.outbox.mu.Unlock()
	return err
}
