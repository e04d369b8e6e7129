package queue

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/store"
)

// window is how many pending messages a pass takes from the store at once.
// Their attempts are recorded together before the first of them is tried,
// so a drain of thousands of stored messages costs one commit per window
// for the attempts instead of one per message.
const window = 128

// maxInFlight bounds the MESSAGEs outstanding on one device's connection,
// and perSender those of one sender among them.
const (
	maxInFlight = 64
	perSender   = 8
)

// pass delivers what is due to the account's device, in order, and returns
// how long to wait before the next pass (0: nothing to wait for — done, the
// device is offline, the account is parked, or the pass was abandoned).
//
// The store is kept off the path of the sends: a lister goroutine lists the
// due messages a window at a time and records their attempts one window
// ahead of the sends, and each delivery is marked in the background while
// the next messages go out. A failure ends the pass; so does a
// registration on another connection (abandon) and Stop.
func (q *Queue) pass(account string) time.Duration {
	// A message handed over by Submit is used by this pass or not at all
	// (a pass that cannot deliver it leaves it to the listings: its
	// attempt, recorded by Submit, is due at once).
	q.mu.Lock()
	r := q.runs[account]
	direct := r.direct
	r.direct = nil
	registered := r.registered
	r.registered = false
	careful := r.careful
	q.mu.Unlock()
	if q.isDraining() {
		return 0
	}
	b, online := q.o.Lookup(account)
	if !online {
		return 0
	}
	if q.o.MayDeliver != nil && !q.o.MayDeliver(account) {
		return 0 // another node delivers (or will, once it holds the lease)
	}
	if wait := q.waitBeforeAttempt(account); wait > 0 {
		return wait
	}
	ctx, abandon := context.WithCancelCause(q.sendCtx)
	defer abandon(nil)
	if !q.begin(account, b, abandon) {
		return 0 // the device moved meanwhile; the registration kicked again
	}
	defer q.end(account)
	now := q.o.Clock.Now()
	if registered {
		// The device is reachable now: whatever was scheduled while it
		// was not is due. (Submit's direct message cannot be among them:
		// nothing was pending when it was stored.)
		if _, err := q.o.Store.Reschedule(q.ctx, account, now); err != nil {
			q.o.Log.Error("making messages due at registration", "account", account, "err", err)
		}
	}
	var windows <-chan listed
	stopListing := func() {}
	if direct != nil {
		// direct is the oldest message waiting: anything stored after
		// it kicks another pass, which lists the store only after
		// direct's mark has committed. If a pass has already delivered
		// it, recording its attempt finds it no longer enqueued and it
		// is not sent again.
		ch := make(chan listed, 1)
		ch <- q.prepare([]store.Message{*direct})
		close(ch)
		windows = ch
	} else {
		var lctx context.Context
		lctx, stopListing = context.WithCancel(ctx)
		windows = q.listAhead(lctx, account)
	}
	end := q.send(ctx, b, windows, careful)
	stopListing()
	unsent := end.unsent
	for l := range windows { // the lister stops; a window it handed over but send never took
		unsent = append(unsent, l.items...)
	}
	// Abandoned: a registration elsewhere, or Stop's drain time is up. A
	// closed connection is a failure like any other.
	abandoned := ctx.Err() != nil && !errors.Is(context.Cause(ctx), errConnectionClosed)
	var culprit *result
	if !abandoned {
		culprit = blame(end.failures)
	}
	unclear := culprit != nil && !careful && unclearBlame(end.failures)
	for _, f := range end.failures {
		if f != culprit || unclear {
			unsent = append(unsent, f.it) // failed because of the culprit, or no one is to blame
		}
	}
	q.release(unsent)
	if !abandoned {
		q.mu.Lock()
		r.careful = unclear || (careful && culprit != nil)
		q.mu.Unlock()
	}
	switch {
	case abandoned:
		return 0
	case unclear:
		q.o.Log.Info("delivery failed with several MESSAGEs unanswered; none is charged, the next passes send one at a time",
			"to", account, "unanswered", len(end.failures), "reason", failureReason(culprit.err))
		if q.o.Metrics != nil {
			q.o.Metrics.DeliveryFailed.WithLabelValues(failureReason(culprit.err)).Inc()
		}
		return q.failed(account, charged{next: now.Add(q.o.RetryInterval)})
	case culprit != nil:
		return q.failed(account, q.recordFailure(account, *culprit, now))
	case end.storeFailed || end.markErr != nil:
		return q.o.RetryInterval
	case q.isDraining():
		return 0
	case b.IMDN:
		return q.passReports(ctx, b)
	}
	return 0
}

// begin notes the pass under way for Online, and reports false if the
// account's binding has moved to another connection meanwhile.
func (q *Queue) begin(account string, b registrar.Binding, abandon context.CancelCauseFunc) bool {
	q.mu.Lock()
	r := q.runs[account]
	r.source, r.abandon = b.Source, abandon
	q.mu.Unlock()
	// Online after this line sees the pass and abandons it if it must;
	// one before it is seen here.
	now, online := q.o.Lookup(account)
	return online && now.Source == b.Source
}

func (q *Queue) end(account string) {
	q.mu.Lock()
	r := q.runs[account]
	r.source, r.abandon = "", nil
	q.mu.Unlock()
}

// result is the answer to one MESSAGE.
type result struct {
	it   toSend
	err  error
	sent bool // it went on the wire (false: StartMessage failed)
	nth  int  // the pass's how-manieth MESSAGE on the wire
}

// passEnd is how send ended.
type passEnd struct {
	failures    []*result // every MESSAGE that failed
	storeFailed bool      // recording an attempt or listing failed
	markErr     error     // the first delivered mark that could not be written
	unsent      []toSend  // taken from the windows, attempt recorded, never sent
}

// send delivers the messages of windows, in order, to b's device, marking
// each delivered one in the background, until the windows run dry, a
// MESSAGE fails, the store fails, ctx ends or Stop begins; then it waits
// for the answers of every MESSAGE on the wire (they end with ctx at the
// latest) and for the marks.
//
// Order is kept per sender, which is the order a person sees: a sender's
// messages are put on the device's one connection in submission order, so
// they reach the device in that order, at most perSender-1 places ahead of
// its oldest unanswered one (wire), and the messages of different senders
// go out side by side, up to maxInFlight in all. A drain is then bound by
// the device's answers arriving, not by one round trip per message, which
// on a mobile network is the difference between seconds and minutes. The first
// failure stops all further sending; messages already on the wire are
// still answered and, if accepted, marked delivered. So a refused message
// is retried after later ones of its sender that the device accepted: the
// Sealpost client shows a conversation in submission order whatever the
// arrival order (client/history.go), a plain SIP phone shows the retried
// one last.
func (q *Queue) send(ctx context.Context, b registrar.Binding, windows <-chan listed, careful bool) passEnd {
	var end passEnd
	limit := maxInFlight
	if careful {
		limit = 1 // see run.careful
	}
	marks := newMarker(q)
	burster, _ := q.o.Sender.(Burster)
	// Unbuffered: an answer waits for the loop below, which receives until
	// nothing is in flight. (A buffer of maxInFlight would be allocated by
	// every pass, and most passes deliver one message.)
	done := make(chan *result)
	onWire := make(map[string]*wire)
	inFlight, nth := 0, 0
	var waiting []toSend // in order, not yet sent
	more := true         // windows may bring more
	halt := func() bool {
		return len(end.failures) > 0 || end.storeFailed || ctx.Err() != nil || q.isDraining()
	}
	for {
		// Take the next window when the sends would otherwise run dry
		// (waiting for it only when nothing else is going on).
	take:
		for more && len(waiting) < window && !halt() {
			var l listed
			if inFlight == 0 && len(waiting) == 0 {
				select {
				case l, more = <-windows:
				default: // the marks go to the background while it comes
					marks.flush()
					l, more = <-windows
				}
			} else {
				select {
				case l, more = <-windows:
				default:
					break take // none ready yet
				}
			}
			switch {
			case !more:
			case l.err != nil:
				end.storeFailed = true
			default:
				waiting = append(waiting, l.items...)
			}
		}
		// Send, in order, what each sender may still put on the wire. A
		// sender at its limit has all its later messages skipped here
		// too, so none overtakes an older one. When several may go, their
		// writes go together (Burster).
		endBurst := func() {}
		if burster != nil && len(waiting) > 1 && limit-inFlight > 1 && !halt() {
			endBurst = burster.Burst(b)
		}
		for k := 0; k < len(waiting) && inFlight < limit && !halt(); {
			from := waiting[k].m.From
			w := onWire[from]
			if w == nil {
				w = &wire{}
				onWire[from] = w
			}
			if len(w.sent) >= perSender {
				k++
				continue
			}
			it := waiting[k]
			m := it.m
			waiting = slices.Delete(waiting, k, k+1)
			switch err := it.recorded; {
			case errors.Is(err, store.ErrNotFound):
				continue // delivered or expired meanwhile
			case err != nil:
				q.o.Log.Error("recording delivery attempt", "id", m.ID, "err", err)
				end.storeFailed = true
				continue
			}
			text, err := q.o.Sealer.Open(q.ctx, m.ID, m.From, m.To, m.KeyPeriod, m.Sealed)
			if err != nil {
				// Only a destroyed key (the message outlived its period) or a
				// corrupted record gets here; the sweep expires it.
				q.o.Log.Error("opening sealed message", "id", m.ID, "err", err)
				continue
			}
			// Started here, one after another, so that the writes keep
			// the order; only the waits for the answers run apart.
			actx, cancel := context.WithTimeout(ctx, q.o.AttemptTimeout)
			answer, err := q.o.Sender.StartMessage(actx, b, Delivery{ID: m.ID, From: m.From, To: m.To, Text: text, SubmittedAt: m.SubmittedAt})
			if err != nil {
				cancel()
				// Not sent: nothing goes out after it.
				end.failures = append(end.failures, &result{it: it, err: err})
				continue
			}
			w.sent = append(w.sent, sentSlot{seq: m.Seq})
			inFlight++
			nth++
			r := &result{it: it, sent: true, nth: nth}
			go func() {
				defer cancel()
				r.err = answer()
				done <- r
			}()
		}
		endBurst()
		if inFlight == 0 {
			if more && len(waiting) == 0 && !halt() {
				continue // the next window
			}
			break
		}
		// Take every answer that is in, so that the next round sends
		// for all of them at once.
		r := ready(done)
		if r == nil {
			marks.flush()
			r = <-done
		}
		for ; r != nil; r = ready(done) {
			inFlight--
			onWire[r.it.m.From].answered(r.it.m.Seq)
			if r.err == nil {
				marks.delivered(r.it.m)
			} else {
				end.failures = append(end.failures, r)
			}
		}
	}
	end.unsent = waiting
	// The pass waits for its marks before it ends, so the next pass
	// never lists a message this one delivered; and the marks reset the
	// failure count, so they must land before a failure counts.
	end.markErr = marks.wait()
	return end
}

// ready returns an answer that is already in, or nil.
func ready(done <-chan *result) *result {
	select {
	case r := <-done:
		return r
	default:
		return nil
	}
}

// wire is one sender's window on the device's connection: its MESSAGEs
// from the oldest unanswered one on, in the order they were sent. A new one
// may go out while fewer than perSender are in it, so no message goes out
// more than perSender-1 places ahead of an unanswered one.
type wire struct {
	sent []sentSlot
}

type sentSlot struct {
	seq      int64
	answered bool
}

func (w *wire) answered(seq int64) {
	for i := range w.sent {
		if w.sent[i].seq == seq {
			w.sent[i].answered = true
		}
	}
	for len(w.sent) > 0 && w.sent[0].answered {
		w.sent = w.sent[1:]
	}
}
