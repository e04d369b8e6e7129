// Package queue accepts messages and schedules their delivery.
//
// Life cycle: Submit checks the message rules, seals the text and stores it
// durably; only then does it return (and the API answers "enqueued"). Every
// submission, and every registration of a device, kicks a delivery run for
// that account. There is at most one run per account; it puts each
// sender's messages on the device's connection in submission order, several
// before the first is answered (perSender), and the messages of different
// senders side by side (up to maxInFlight). Before each attempt
// the run records it in the store (mox's rule: a crash can never cause a hot
// retry loop). A 2xx from the device marks the message delivered (its
// sealed text is deleted in the same transaction, and a delivery report is
// queued for the sender). A failure while the device stays registered is
// retried after RetryInterval, up to Retries times; then the account is
// parked until its device registers again. The sweep, every SweepInterval,
// expires messages older than Expiry (queuing a failure report for the
// sender) and destroys the data keys of key periods that have fully expired.
//
// The queue opens no sockets: delivery goes through the Sender interface,
// which the SIP server implements.
package queue

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/metrics"
	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/seal"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// Errors returned by Submit besides *message.RuleError and store errors.
var (
	// ErrUnknownRecipient: the "to" account does not exist.
	ErrUnknownRecipient = errors.New("unknown recipient")
	// ErrMailboxFull: the recipient has MaxPending messages waiting.
	ErrMailboxFull = store.ErrMailboxFull
	// ErrIDConflict: the sender already used this id for a message to
	// another recipient. Answering "already enqueued" would tell the
	// sender a message was stored that never was.
	ErrIDConflict = errors.New("message id already used for another recipient")
)

// Delivery is one message handed to a Sender.
type Delivery struct {
	ID          string
	From, To    string
	Text        string
	SubmittedAt time.Time
}

// Sender delivers to a registered device over the connection it registered
// on.
type Sender interface {
	// StartMessage puts a MESSAGE on the device's connection and returns
	// without waiting for the answer: MESSAGEs started one after another
	// reach the device in that order. wait returns nil only for a 2xx
	// final response, and gives up when ctx ends. An error from
	// StartMessage itself means the MESSAGE was not sent.
	StartMessage(ctx context.Context, to registrar.Binding, d Delivery) (wait func() error, err error)
	// SendReport sends a delivery report and waits for the answer: nil
	// only for a 2xx. It gives up when ctx ends.
	SendReport(ctx context.Context, to registrar.Binding, r store.Report) error
}

// Submission is a message offered by a sender, over HTTPS or SIP.
type Submission struct {
	ID       string
	From, To string
	Text     string
	Via      string // "https" or "sip", for metrics
}

// Options configure a Queue. Zero durations take the defaults noted.
type Options struct {
	Store   store.Store
	Sealer  *seal.Sealer
	Sender  Sender
	Lookup  func(account string) (registrar.Binding, bool)
	Clock   clock.Clock
	Log     *slog.Logger
	Metrics *metrics.Metrics

	// Expiry is how long an undelivered message is kept (default 72 h).
	Expiry time.Duration
	// Retries is how many times a failed delivery is tried again while the
	// device stays registered (default 5); then the queue waits for the
	// device's next registration.
	Retries int
	// RetryInterval spaces those retries (default 30 s).
	RetryInterval time.Duration
	// AttemptTimeout bounds one delivery attempt (default 32 s, SIP Timer
	// F, RFC 3261 §17.1.2.2).
	AttemptTimeout time.Duration
	// MaxPending bounds the messages waiting for one recipient (default
	// 1000); past it submissions are refused with ErrMailboxFull.
	MaxPending int
	// SweepInterval is how often expiry runs (default 1 min).
	SweepInterval time.Duration
}

func (o *Options) setDefaults() {
	if o.Expiry == 0 {
		o.Expiry = 72 * time.Hour
	}
	if o.Retries == 0 {
		o.Retries = 5
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = 30 * time.Second
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = 32 * time.Second
	}
	if o.MaxPending == 0 {
		o.MaxPending = 1000
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = time.Minute
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Queue is the delivery scheduler.
type Queue struct {
	o      Options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	runs    map[string]*run // by recipient account; guarded by mu
	sweeper clock.Timer     // guarded by mu
	stopped bool            // guarded by mu
	// known caches recipients that exist, until the time given: every
	// submission checks its recipient, and senders write to the same
	// people again and again. An account deleted by another process
	// (sealpostd user del) can still be written to for at most
	// knownTTL; such a message waits until it expires. Guarded by mu.
	known map[string]time.Time
	// fresh holds the messages whose first attempt Submit recorded (the
	// recipient was online), so that attempt is not recorded twice.
	// Guarded by mu.
	fresh map[string]struct{}
}

// knownTTL is how long a recipient found in the store is taken to exist.
const knownTTL = 5 * time.Second

// maxCached bounds known and fresh; past it they are cleared (known) or
// not added to (fresh), which only costs store reads and writes.
const maxCached = 1 << 16

// run is the delivery state of one account. All fields guarded by Queue.mu.
type run struct {
	running bool      // a goroutine is delivering for the account
	again   bool      // kicked while running: look once more before stopping
	parked  bool      // retries exhausted: wait for the next registration
	failed  int       // failed attempts since the last registration
	retryAt time.Time // no attempt before this (after a failure)
	timer   clock.Timer
	// direct is a message handed over by Submit when it started this run:
	// nothing older was pending for the account when it was stored, so
	// the run's first pass delivers it without listing the store.
	direct *store.Message
}

// New returns a Queue; call Start to begin sweeping.
func New(o Options) *Queue {
	o.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Queue{o: o, ctx: ctx, cancel: cancel, runs: map[string]*run{}, known: map[string]time.Time{}, fresh: map[string]struct{}{}}
}

// Options returns the effective options (defaults filled in).
func (q *Queue) Options() Options { return q.o }

// Start runs a first sweep and schedules the next ones.
func (q *Queue) Start() {
	q.sweep()
}

// Stop ends every delivery run and waits for them. Messages in flight stay
// enqueued (the attempt was recorded) and are tried again after a restart.
func (q *Queue) Stop() {
	q.mu.Lock()
	q.stopped = true
	if q.sweeper != nil {
		q.sweeper.Stop()
	}
	for _, r := range q.runs {
		if r.timer != nil {
			r.timer.Stop()
		}
	}
	q.mu.Unlock()
	q.cancel()
	q.wg.Wait()
}

// Submit checks, seals and durably stores a message, and returns it with
// created=true. It returns only after the store has committed the message:
// an answer of "enqueued" built on it is true even if the server crashes
// right after. A known (From, ID) returns the stored message with
// created=false and writes nothing (ErrIDConflict if that message was for
// another recipient). Errors: *message.RuleError, ErrUnknownRecipient,
// ErrMailboxFull, ErrIDConflict, or a store error (nothing accepted).
func (q *Queue) Submit(ctx context.Context, s Submission) (store.Message, bool, error) {
	if err := message.CheckID(s.ID); err != nil {
		return store.Message{}, false, err
	}
	s.ID = message.NormalizeID(s.ID)
	if err := message.CheckText(s.Text); err != nil {
		return store.Message{}, false, err
	}
	if err := q.checkRecipient(ctx, s.To); err != nil {
		return store.Message{}, false, err
	}
	now := q.o.Clock.Now()
	m := store.Message{
		ID: s.ID, From: s.From, To: s.To,
		Status:      message.Enqueued,
		SubmittedAt: now,
		ExpiresAt:   now.Add(q.o.Expiry),
	}
	// A recipient online now is tried at once: its first attempt is
	// recorded in the same write as the message, so the delivery needs
	// no write of its own before it (the attempt is on disk before it is
	// made, as every attempt is).
	_, online := q.o.Lookup(s.To)
	if online {
		m.Attempts, m.NextAttempt = 1, now.Add(q.o.RetryInterval)
		m.WantPendingBefore = true // for the shortcut of kick
	}
	var err error
	m.KeyPeriod, m.Sealed, err = q.o.Sealer.Seal(ctx, m.ID, m.From, m.To, s.Text, m.ExpiresAt)
	if err != nil {
		return store.Message{}, false, err
	}
	if online {
		// Before the write: a pass may list the message as soon as it
		// commits.
		q.mu.Lock()
		if len(q.fresh) >= maxCached {
			online = false
		} else {
			q.fresh[freshKey(m.From, m.ID)] = struct{}{}
		}
		q.mu.Unlock()
	}
	stored, created, err := q.o.Store.Submit(ctx, m, q.o.MaxPending)
	if online && !created {
		q.mu.Lock()
		delete(q.fresh, freshKey(m.From, m.ID))
		q.mu.Unlock()
	}
	if err != nil {
		return store.Message{}, false, err
	}
	if !created && stored.To != s.To {
		return store.Message{}, false, ErrIDConflict
	}
	handed := stored
	stored.Sealed = nil
	if created {
		if q.o.Metrics != nil {
			q.o.Metrics.Accepted.WithLabelValues(s.Via).Inc()
		}
		if online && handed.PendingBefore == 0 {
			q.kick(s.To, &handed)
		} else {
			q.Kick(s.To)
		}
	}
	return stored, created, nil
}

// checkRecipient returns ErrUnknownRecipient unless the account exists.
func (q *Queue) checkRecipient(ctx context.Context, to string) error {
	now := q.o.Clock.Now()
	q.mu.Lock()
	until, ok := q.known[to]
	q.mu.Unlock()
	if ok && now.Before(until) {
		return nil
	}
	if _, err := q.o.Store.Account(ctx, to); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrUnknownRecipient
		}
		return err
	}
	q.mu.Lock()
	if len(q.known) >= maxCached {
		clear(q.known)
	}
	q.known[to] = now.Add(knownTTL)
	q.mu.Unlock()
	return nil
}

// Forget drops what the queue remembers of an account (it was deleted).
func (q *Queue) Forget(account string) {
	q.mu.Lock()
	delete(q.known, account)
	q.mu.Unlock()
}

func freshKey(from, id string) string { return from + "\x00" + id }

// takeFresh reports whether m's current attempt was recorded by Submit,
// and forgets it: it is used once.
func (q *Queue) takeFresh(m store.Message) bool {
	if m.Attempts != 1 {
		return false
	}
	k := freshKey(m.From, m.ID)
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.fresh[k]
	delete(q.fresh, k)
	return ok
}

// Online tells the queue that the account's device has (re)registered: a
// parked account is unparked, its retry counter reset, and a run starts.
func (q *Queue) Online(account string) {
	q.mu.Lock()
	if r := q.runs[account]; r != nil {
		r.parked = false
		r.failed = 0
		r.retryAt = time.Time{}
		if r.timer != nil {
			r.timer.Stop()
			r.timer = nil
		}
	}
	q.mu.Unlock()
	q.Kick(account)
}

// Kick starts a delivery run for the account unless one is running (then
// that run looks again before it stops) or the account is parked. Kicks
// coalesce: any number of them cost at most one extra pass.
func (q *Queue) Kick(account string) { q.kick(account, nil) }

// kick is Kick; a run it starts delivers direct (if not nil) first, without
// listing the store. direct must be a message stored with nothing older
// pending for the account. A run already going lists the store again
// instead, which finds direct there.
func (q *Queue) kick(account string, direct *store.Message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return
	}
	r := q.runs[account]
	if r == nil {
		r = &run{}
		q.runs[account] = r
	}
	if r.parked {
		return
	}
	if r.running {
		r.again = true
		return
	}
	r.running = true
	r.direct = direct
	q.wg.Add(1)
	go q.deliver(account)
}

func (q *Queue) deliver(account string) {
	defer q.wg.Done()
	for {
		wait := q.pass(account)
		q.mu.Lock()
		r := q.runs[account]
		if r.again && wait == 0 && !r.parked {
			r.again = false
			q.mu.Unlock()
			continue
		}
		r.again = false
		r.running = false
		switch {
		case q.stopped || r.parked:
		case wait > 0:
			if r.timer != nil {
				r.timer.Stop()
			}
			r.timer = q.o.Clock.AfterFunc(wait, func() { q.Kick(account) })
		case r.failed == 0 && r.timer == nil:
			// Nothing left to remember about this account.
			delete(q.runs, account)
		}
		q.mu.Unlock()
		return
	}
}

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

// pass delivers what it can to the account's device, in order, and returns
// how long to wait before the next pass (0: nothing to wait for — done, the
// device is offline, or the account is parked).
//
// The store is kept off the path of the sends: a lister goroutine lists the
// pending messages a window at a time and records their attempts one
// window ahead of the sends, and each delivery is marked in the background
// while the next messages go out. A failure ends the pass.
func (q *Queue) pass(account string) time.Duration {
	// A message handed over by Submit is used by this pass or not at all
	// (a pass that cannot deliver it leaves it to the listings).
	q.mu.Lock()
	direct := q.runs[account].direct
	q.runs[account].direct = nil
	q.mu.Unlock()
	b, online := q.o.Lookup(account)
	if !online {
		return 0
	}
	if wait := q.waitBeforeAttempt(account); wait > 0 {
		return wait
	}
	var windows <-chan listed
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
		ctx, cancel := context.WithCancel(q.ctx)
		ch := q.listAhead(ctx, account)
		defer func() {
			cancel()
			for range ch { // wait for the lister to stop
			}
		}()
		windows = ch
	}
	if wait, stop := q.send(b, windows); stop {
		return wait
	}
	if b.IMDN {
		return q.passReports(b)
	}
	return 0
}

// listed is a window of pending messages, in order, whose attempts have been
// recorded, or the error that ended the listing.
type listed struct {
	items []toSend
	err   error
}

// toSend is a pending message whose attempt has been recorded.
type toSend struct {
	m        store.Message
	recorded error // recording the attempt: nil, ErrNotFound (delivered or expired meanwhile) or a failure
	attempt  int   // the attempt number recorded
}

// listAhead lists the account's pending messages a window at a time, each
// listing after the last message of the one before, and records their
// attempts; it stays one window ahead of what the sends have taken. The
// channel closes after a listing that held everything pending (a
// submission meanwhile kicks another pass), after an error, or when ctx
// ends.
func (q *Queue) listAhead(ctx context.Context, account string) <-chan listed {
	ch := make(chan listed)
	go func() {
		defer close(ch)
		after := int64(0)
		for {
			msgs, err := q.o.Store.Pending(ctx, account, after, time.Time{}, window)
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
			if len(msgs) == 0 {
				return
			}
			after = msgs[len(msgs)-1].Seq
			l := q.prepare(msgs)
			if len(l.items) > 0 {
				select {
				case ch <- l:
				case <-ctx.Done():
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
// any is tried (mox's rule: a crash never causes a hot retry loop). Issued
// together, the writes share a commit. A message after a failure is
// counted as attempted without being tried: the count may run one ahead,
// never behind.
func (q *Queue) prepare(msgs []store.Message) listed {
	now := q.o.Clock.Now()
	due := msgs[:0:0]
	for _, m := range msgs {
		if m.ExpiresAt.After(now) {
			due = append(due, m)
		}
	}
	recorded, attempt := q.recordAttempts(due, now.Add(q.o.RetryInterval))
	items := make([]toSend, len(due))
	for i, m := range due {
		items[i] = toSend{m, recorded[i], attempt[i]}
	}
	return listed{items: items}
}

// send delivers the messages of windows, in order, to b's device, marking
// each delivered one in the background. stop reports that the pass must
// end, with wait before the next one.
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
func (q *Queue) send(b registrar.Binding, windows <-chan listed) (wait time.Duration, stop bool) {
	type result struct {
		it  toSend
		err error
	}
	marks := newMarker(q)
	// Unbuffered: an answer waits for the loop below, which receives until
	// nothing is in flight. (A buffer of maxInFlight would be allocated by
	// every pass, and most passes deliver one message.)
	done := make(chan result)
	onWire := make(map[string]*wire)
	inFlight := 0
	var waiting []toSend // in order, not yet sent
	more := true         // windows may bring more
	var failure *result  // the first failed attempt; no more sends after it
	storeFailed := false // recording an attempt or listing failed
	now := q.o.Clock.Now()
	for {
		// Take the next window when the sends would otherwise run dry
		// (waiting for it only when nothing else is going on).
	take:
		for more && len(waiting) < window && failure == nil && !storeFailed {
			var l listed
			if inFlight == 0 && len(waiting) == 0 {
				l, more = <-windows
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
				storeFailed = true
			default:
				waiting = append(waiting, l.items...)
			}
		}
		// Send, in order, what each sender may still put on the wire. A
		// sender at its limit has all its later messages skipped here
		// too, so none overtakes an older one.
		for k := 0; k < len(waiting) && inFlight < maxInFlight && failure == nil && !storeFailed; {
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
				storeFailed = true
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
			ctx, cancel := context.WithTimeout(q.ctx, q.o.AttemptTimeout)
			answer, err := q.o.Sender.StartMessage(ctx, b, Delivery{ID: m.ID, From: m.From, To: m.To, Text: text, SubmittedAt: m.SubmittedAt})
			if err != nil {
				cancel()
				failure = &result{it, err} // not sent: nothing goes out after it
				continue
			}
			w.sent = append(w.sent, sentSlot{seq: m.Seq})
			inFlight++
			go func() {
				defer cancel()
				done <- result{it, answer()}
			}()
		}
		if inFlight == 0 {
			if more && len(waiting) == 0 && failure == nil && !storeFailed {
				continue // the next window
			}
			break
		}
		r := <-done
		inFlight--
		onWire[r.it.m.From].answered(r.it.m.Seq)
		if r.err == nil {
			marks.delivered(r.it.m)
			continue
		}
		if failure == nil {
			failure = &r
		} else if q.ctx.Err() == nil {
			// A second failure among messages already in flight: its
			// attempt is counted; keep its error for the operator.
			q.recordFailure(r.it.m, r.it.attempt, now, r.err)
		}
	}
	// The pass waits for its marks before it ends, so the next pass
	// never lists a message this one delivered; and the marks reset the
	// failure count, so they must land before a failure counts.
	markErr := marks.wait()
	switch {
	case storeFailed:
		return q.o.RetryInterval, true
	case failure == nil && markErr != nil:
		return q.o.RetryInterval, true
	case failure == nil:
		return 0, false
	case q.ctx.Err() != nil:
		return 0, true
	}
	q.recordFailure(failure.it.m, failure.it.attempt, now, failure.err)
	return q.failed(b.Account), true
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

// recordFailure logs and counts a failed attempt and stores its error.
func (q *Queue) recordFailure(m store.Message, attempt int, now time.Time, err error) {
	reason := failureReason(err)
	q.o.Log.Info("delivery attempt failed", "id", m.ID, "to", m.To, "attempt", attempt, "reason", reason, "err", err)
	if q.o.Metrics != nil {
		q.o.Metrics.DeliveryFailed.WithLabelValues(reason).Inc()
	}
	a := store.Attempt{Key: store.Key{From: m.From, ID: m.ID}, Attempts: attempt, Next: now.Add(q.o.RetryInterval), LastError: err.Error()}
	if err := q.o.Store.RecordAttempt(q.ctx, a); err != nil && !errors.Is(err, store.ErrNotFound) {
		q.o.Log.Error("recording failed attempt", "id", m.ID, "err", err)
	}
}

// recordAttempts records one more attempt for each message, all at once,
// unless Submit recorded it, and returns each one's result and attempt
// number, in order.
func (q *Queue) recordAttempts(msgs []store.Message, next time.Time) (errs []error, number []int) {
	errs, number = make([]error, len(msgs)), make([]int, len(msgs))
	var as []store.Attempt
	var at []int // index in msgs of each of as
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

// marker marks delivered messages in the store in the background, so the
// next message can go out while the write commits. One goroutine writes
// the marks: each write takes every message delivered since the last one
// began, in one call to the store (MarkDeliveredAll), so a drain makes a
// few writes per commit instead of an op and a goroutine per message. At
// most maxMarking messages wait for it: past that, delivered waits, which
// holds the sends back to the pace of the store. Only one goroutine calls
// delivered, and then wait. (Nothing here is sized by maxMarking but the
// semaphore of empty structs: most passes mark one message.)
type marker struct {
	q       *Queue
	slots   chan struct{} // one per message delivered and not yet written
	wake    chan struct{} // 1-buffered: there is something to look at
	started bool
	done    chan struct{}

	mu      sync.Mutex
	pending []store.Message // guarded by mu
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
	if !mk.started {
		mk.started = true
		go mk.run()
	}
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
		mk.pending = nil
		mk.mu.Unlock()
		if len(ms) > 0 {
			if err := mk.q.delivered(ms); err != nil && mk.first == nil {
				mk.first = err
			}
			for range ms {
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

// wait waits for every mark and returns the first failure; the marker is
// done with after it.
func (mk *marker) wait() error {
	mk.mu.Lock()
	mk.closed = true
	mk.mu.Unlock()
	if !mk.started {
		return nil
	}
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

// failed counts a failed attempt for the account and returns how long to
// wait before trying again, or 0 when the account is now parked.
func (q *Queue) failed(account string) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.runs[account]
	r.failed++
	if r.failed > q.o.Retries {
		r.parked = true
		q.o.Log.Info("delivery parked until the device registers again", "account", account, "attempts", r.failed)
		return 0
	}
	r.retryAt = q.o.Clock.Now().Add(q.o.RetryInterval)
	return q.o.RetryInterval
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

// passReports forwards the delivery reports waiting for a device that asked
// for them.
func (q *Queue) passReports(b registrar.Binding) time.Duration {
	for q.ctx.Err() == nil {
		reports, err := q.o.Store.PendingReports(q.ctx, b.Account, 64)
		if err != nil {
			q.o.Log.Error("listing pending reports", "account", b.Account, "err", err)
			return q.o.RetryInterval
		}
		if len(reports) == 0 {
			return 0
		}
		for _, r := range reports {
			ctx, cancel := context.WithTimeout(q.ctx, q.o.AttemptTimeout)
			err := q.o.Sender.SendReport(ctx, b, r)
			cancel()
			if err != nil {
				if q.ctx.Err() != nil {
					return 0
				}
				q.o.Log.Info("delivery report not accepted", "account", b.Account, "reason", failureReason(err), "err", err)
				return q.failed(b.Account)
			}
			if q.o.Metrics != nil {
				q.o.Metrics.ReportsSent.WithLabelValues(string(r.Status)).Inc()
			}
			if err := q.o.Store.DeleteReport(q.ctx, r.Seq); err != nil && !errors.Is(err, store.ErrNotFound) {
				q.o.Log.Error("deleting forwarded report", "seq", r.Seq, "err", err)
				return q.o.RetryInterval
			}
		}
	}
	return 0
}

// sweep expires what is due, destroys ended key periods and schedules the
// next sweep.
func (q *Queue) sweep() {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return
	}
	if q.sweeper != nil {
		q.sweeper.Stop() // Sweep was called by hand: keep one schedule
	}
	q.mu.Unlock()
	now := q.o.Clock.Now()
	expired, err := q.o.Store.ExpireDue(q.ctx, now)
	if err != nil {
		q.o.Log.Error("expiring messages", "err", err)
	}
	for _, m := range expired {
		q.mu.Lock()
		delete(q.fresh, freshKey(m.From, m.ID))
		q.mu.Unlock()
		q.o.Log.Info("message expired undelivered", "id", m.ID, "from", m.From, "to", m.To)
		if q.o.Metrics != nil {
			q.o.Metrics.Expired.Inc()
		}
		q.Kick(m.From) // the failure report
	}
	if err == nil {
		if n, err := q.o.Sealer.DestroyExpired(q.ctx, now); err != nil {
			q.o.Log.Error("destroying expired data keys", "err", err)
		} else if n > 0 {
			q.o.Log.Info("destroyed expired data keys", "count", n)
		}
	}
	q.mu.Lock()
	if !q.stopped {
		q.sweeper = q.o.Clock.AfterFunc(q.o.SweepInterval, q.sweep)
	}
	q.mu.Unlock()
}

// Sweep runs expiry now (for tests and the operator command).
func (q *Queue) Sweep() { q.sweep() }

// ReasonError lets a Sender name why an attempt failed (for metrics and
// logs): "timeout", "rejected", "connection", "offline".
type ReasonError interface {
	error
	Reason() string
}

func failureReason(err error) string {
	var re ReasonError
	if errors.As(err, &re) {
		return re.Reason()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "other"
}

// SetSender sets the Sender after construction: the SIP server that
// implements it needs the queue first.
func (q *Queue) SetSender(s Sender) { q.o.Sender = s }

// Busy reports whether a delivery run for the account is under way. Tests
// wait for it to turn false before checking that nothing was delivered.
func (q *Queue) Busy(account string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.runs[account]
	return r != nil && r.running
}
