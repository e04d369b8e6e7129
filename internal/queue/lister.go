package queue

import (
	"context"
	"slices"
	"time"

	"github.com/sealpost/sealpost/internal/store"
)

// listed is a window of due messages, in order, whose attempts have been
// recorded, or the error that ended the listing.
type listed struct {
	items []toSend
	err   error
}

// toSend is a due message whose attempt has been recorded.
type toSend struct {
	m        store.Message
	recorded error // recording the attempt: nil, ErrNotFound (delivered or expired meanwhile) or a failure
	attempt  int   // the attempt number recorded
	// before is the message's bookkeeping as it was listed, before the
	// attempt was recorded: release writes it back when the attempt is
	// never made.
	before store.Attempt
}

// listAhead lists the account's due messages a window at a time, each
// listing after the last message of the one before, and records their
// attempts; it stays one window ahead of what the sends have taken. The
// channel closes after a listing that held everything due (a submission
// meanwhile kicks another pass), after an error, or when ctx ends; a
// window it can no longer hand over then, it releases.
func (q *Queue) listAhead(ctx context.Context, account string) <-chan listed {
	ch := make(chan listed)
	go func() {
		defer close(ch)
		after := int64(0)
		for {
			msgs, err := q.o.Store.Pending(ctx, account, after, q.o.Clock.Now(), window)
			if err != nil {
				if ctx.Err() == nil {
					q.o.Log.Error("listing pending messages", "account", account, "err", err)
					select {
					case ch <- listed{err: err}:
					case <-ctx.Done():
					}
				}
				return
			}
			if len(msgs) == 0 || ctx.Err() != nil {
				return
			}
			after = msgs[len(msgs)-1].Seq
			l := q.prepare(msgs)
			if len(l.items) > 0 {
				select {
				case ch <- l:
				case <-ctx.Done():
					q.release(l.items)
					return
				}
			}
			if len(msgs) < window {
				return
			}
		}
	}()
	return ch
}

// prepare drops the expired messages of msgs (the sweep expires them and
// reports the failure) and records an attempt for every other one before
// any is tried (mox's rule: a crash never causes a hot retry loop), with a
// next attempt RetryInterval away. Issued together, the writes share a
// commit. A message the pass then does not try is put back (release); a
// crash before that leaves its count one ahead, never behind.
func (q *Queue) prepare(msgs []store.Message) listed {
	now := q.o.Clock.Now()
	due := msgs // usually all of them: copied only to leave some out
	if slices.ContainsFunc(msgs, func(m store.Message) bool { return !m.ExpiresAt.After(now) }) {
		due = nil
		for _, m := range msgs {
			if m.ExpiresAt.After(now) {
				due = append(due, m)
			}
		}
	}
	recorded, attempt := q.recordAttempts(due, now.Add(q.o.RetryInterval))
	items := make([]toSend, len(due))
	for i, m := range due {
		before := store.Attempt{Key: store.Key{From: m.From, ID: m.ID}, Attempts: attempt[i] - 1, Next: m.NextAttempt, LastError: m.LastError}
		items[i] = toSend{m, recorded[i], attempt[i], before}
	}
	return listed{items: items}
}

// recordAttempts records one more attempt for each message, all at once,
// unless Submit recorded it, and returns each one's result and attempt
// number, in order.
func (q *Queue) recordAttempts(msgs []store.Message, next time.Time) (errs []error, number []int) {
	errs, number = make([]error, len(msgs)), make([]int, len(msgs))
	as := make([]store.Attempt, 0, len(msgs))
	at := make([]int, 0, len(msgs)) // index in msgs of each of as
	for i, m := range msgs {
		if q.takeFresh(m) {
			number[i] = m.Attempts
			continue
		}
		number[i] = m.Attempts + 1
		as = append(as, store.Attempt{Key: store.Key{From: m.From, ID: m.ID}, Attempts: number[i], Next: next, LastError: m.LastError})
		at = append(at, i)
	}
	if len(as) == 0 {
		return errs, number
	}
	recorded, err := q.o.Store.RecordAttempts(q.ctx, as)
	for j, i := range at {
		if err != nil {
			errs[i] = err
		} else {
			errs[i] = recorded[j]
		}
	}
	return errs, number
}
