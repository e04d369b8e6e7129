// Package queue accepts messages and schedules their delivery.
//
// Life cycle: Submit checks the message rules, seals the text and stores it
// durably; only then does it return (and the API answers "enqueued"). Every
// submission, and every registration of a device, kicks a delivery run for
// that account (with the SQLite store, for a device registered here with
// nothing else pending, as soon as the message is written, while its
// commit is fsynced: see Submit). There is at most one run per account; it puts each
// sender's messages on the device's connection in submission order, several
// before the first is answered (perSender), and the messages of different
// senders side by side (up to maxInFlight). A 2xx from the device marks the
// message delivered (its sealed text is deleted in the same transaction,
// and a delivery report is queued for the sender). The sweep, every
// SweepInterval, expires messages older than Expiry (queuing a failure
// report for the sender) and destroys the data keys of key periods that
// have fully expired.
//
// The store is the schedule (mox's queue). Each message's attempt count,
// next-attempt time and parked state are columns in the store, and a run
// lists only what is due (store.Pending): enqueued, not parked, next
// attempt reached. Before a message is tried its attempt is recorded, with
// a next attempt RetryInterval away (so a crash can never cause a hot retry
// loop); a try that is never made after all (the pass ended first) is put
// back as it was (release). When a try fails, the message that failed
// first on the wire is the one charged: the others in flight with it
// failed because of it (a device that drops its connection on one message
// fails everything behind it). But when several went unanswered and none
// was refused, the culprit is unknown (the first may even have reached the
// device, its 200 lost in the drop): none is charged, and the next passes
// put one MESSAGE at a time on the wire until a pass ends cleanly
// (run.careful), so each failure is then the message's own. What it is charged: a try the device
// refused always counts; one that got no answer (timeout, connection lost)
// counts once per registration, so a device out of reach but still
// registered does not use up the message's budget by itself (see
// recordFailure). A message that has used up its budget of 1+Retries
// attempts, across registrations and restarts, is parked: never
// listed again, it waits for the sweep to expire it and report the failure
// to its sender, and the messages behind it go out. A registration makes
// the account's unparked messages due at once (store.Reschedule): the
// device is reachable now, whatever was planned while it was not.
//
// What lives only in memory is tied to the device's registration, which
// itself lives only in memory (the registrar), and Online resets it: the
// wait after a failure (a cache of the NextAttempt just stored), and,
// after Retries+1 failed passes in a row, the account parked until the
// next registration, so a device that is registered but unreachable cannot
// use up every message's budget one after another. (A message parked after
// the device refused it does not count: the device is alive, and the next
// message goes out at once.)
//
// A connection that closes under a pass (Disconnected) ends it at once:
// what was on the wire failed, and is charged as above.
//
// Roaming: a registration on another connection abandons the pass under
// way on the old one at once. Its messages count as not delivered and not
// failed (release), no retry wait is charged, and the next pass sends them
// on the new connection; a 2xx that arrived before is still recorded.
//
// Stop is a clean stop: no new MESSAGE goes out, the ones on the wire get
// up to DrainTimeout to be answered, every 2xx that arrives is recorded,
// the marks are written, the tries not made are put back, and only then
// does the store context end. A device that answered is never sent the
// same message again.
//
// The queue opens no sockets: delivery goes through the Sender interface,
// which the SIP server implements.
package queue

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/metrics"
	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/seal"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// Causes that end a pass before its end (the cause of its context).
var (
	// errMoved: the device registered on another connection (roaming).
	// The pass is abandoned: nothing in it is charged.
	errMoved = errors.New("the device registered on another connection")
	// errConnectionClosed: the connection the pass sends on closed. What
	// was on the wire failed, and the first of it is charged.
	errConnectionClosed = errors.New("the device's connection closed")
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

// Burster is implemented by a Sender that can write several MESSAGEs to a
// device's connection together: between Burst and end, StartMessage may
// hold its writes back (keeping their order), and end writes them all.
// A run calls it around each round of MESSAGEs it starts at once, so a
// drain to one device costs a write per round, not per message.
type Burster interface {
	Burst(to registrar.Binding) (end func())
}

// Submission is a message offered by a sender, over HTTPS or SIP.
type Submission struct {
	ID       string
	From, To string
	Text     string
	Via      string // "https" or "sip", for metrics
}

// Store is what the queue needs of the store: submissions, the delivery
// schedule, the reports, and whether a recipient exists.
type Store interface {
	store.Submissions
	store.Schedule
	store.Reports
	Account(ctx context.Context, name string) (store.Account, error)
}

// Options configure a Queue. Zero durations take the defaults noted.
type Options struct {
	Store   Store
	Sealer  *seal.Sealer
	Sender  Sender
	Lookup  func(account string) (registrar.Binding, bool)
	Clock   clock.Clock
	Log     *slog.Logger
	Metrics *metrics.Metrics

	// Expiry is how long an undelivered message is kept (default 72 h).
	Expiry time.Duration
	// Retries is how many times a failed delivery is tried again (default
	// 5). It bounds two things: a message is tried at most 1+Retries
	// times in its life, across registrations and restarts, then parked
	// until it expires; and after Retries+1 failed passes in a row while
	// the device stays registered, the account waits for the device's
	// next registration.
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
	// Elsewhere, if set, is called when a kick finds the account's device
	// not registered here: with several nodes (package cluster) it rings
	// the doorbell of the node that may hold it. direct is nil, or a
	// message Submit just stored for a device OnlineElsewhere, with its
	// first attempt recorded: the node holding the device passes it to
	// Handed, which delivers it without listing if nothing older was
	// pending, and never records that attempt again.
	Elsewhere func(account string, direct *store.Message)
	// OnlineElsewhere, if set with Elsewhere, reports whether the
	// account's device is registered on another node. Submit then records
	// the message's first attempt in the same write as the message, as for
	// a device registered here, and hands it over through Elsewhere.
	OnlineElsewhere func(account string) bool
	// MayDeliver, if set, is asked before each pass whether this node may
	// deliver to the account now (package cluster: it holds the account's
	// delivery lease). No: the pass ends without sending anything.
	MayDeliver func(account string) bool
	// DrainTimeout bounds how long Stop waits for the answers to the
	// MESSAGEs on the wire (default 10 s). It is real time, not Clock: it
	// bounds how long this process takes to stop, not a rule of the
	// product. A 2xx arriving later is not recorded, and that message is
	// sent again after the restart (the client drops the repeat by id).
	DrainTimeout time.Duration
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
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 10 * time.Second
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
	o Options
	// ctx is for the store: it ends only after every run has ended, so
	// the marks and the attempts put back during a stop are written.
	ctx    context.Context
	cancel context.CancelFunc
	// sendCtx is for the MESSAGEs on the wire: Stop ends it when
	// DrainTimeout has passed with answers still missing.
	sendCtx     context.Context
	cancelSends context.CancelFunc
	// draining is closed by Stop: no new MESSAGE goes out.
	draining chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup // the runs

	mu      sync.Mutex
	runs    map[string]*run // by recipient account; guarded by mu
	sweeper clock.Timer     // guarded by mu
	stopped bool            // guarded by mu
	// known caches recipients that exist, until the time given: every
	// submission checks its recipient, and senders write to the same
	// people again and again. sealpostd user del makes the server (and
	// through NATS every node) Forget the account at once; only if that
	// word is lost can a deleted account still be written to, for at
	// most knownTTL, and such a message waits until it expires.
	// Guarded by mu.
	known map[string]time.Time
	// fresh holds the messages whose first attempt Submit recorded (the
	// recipient was online, here or on another node: Handed), so that
	// attempt is not recorded twice. Guarded by mu.
	fresh map[string]struct{}
}

// knownTTL is how long a recipient found in the store is taken to exist.
// At 5 s, re-reading 1,000 recipients' accounts was ~4 % of the server's
// CPU in an unpaced relay; deletions are told (Forget), not waited out.
const knownTTL = time.Minute

// maxCached bounds known and fresh; past it they are cleared, which only
// costs store reads and writes (a cleared fresh message has its first
// attempt recorded twice: one try fewer in its budget, never one more).
const maxCached = 1 << 16

// run is the delivery state of one account. All fields guarded by Queue.mu.
// The schedule of each message is in the store; what is here is either the
// run's own bookkeeping or lives as long as the device's registration
// (Online resets it).
type run struct {
	running bool // a goroutine is delivering for the account
	again   bool // kicked while running: look once more before stopping
	// parked: Retries+1 passes in a row failed since the device
	// registered; wait for its next registration.
	parked bool
	failed int // failed passes in a row since the device registered
	// unanswered holds the messages charged for a try that got no answer
	// (timeout, connection lost) since the device registered: such a try
	// counts against a message's budget once per registration.
	unanswered map[store.Key]bool
	// careful: a pass ended with several MESSAGEs unanswered (the
	// connection dropped or timed out under them), so which one caused it
	// is not known, and the first on the wire may even have reached the
	// device with its 200 lost. None is charged; the next passes put one
	// MESSAGE at a time on the wire, so a failure is that message's own,
	// until a pass ends without one. In memory: a restart forgets it, and
	// the worst that costs is one more uncharged drop.
	careful bool
	// retryAt caches the NextAttempt stored for the message whose
	// failure ended the last pass: no pass before it, so nothing
	// overtakes that message while it waits.
	retryAt time.Time
	// registered: Online since the last pass began; the next pass makes
	// the account's messages due (store.Reschedule) before listing.
	registered bool
	// source and abandon belong to the pass under way: the connection it
	// sends on, and the end of its context. A registration on another
	// connection calls abandon (roaming).
	source  string
	abandon context.CancelCauseFunc
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
	sendCtx, cancelSends := context.WithCancel(context.Background())
	return &Queue{
		o: o, ctx: ctx, cancel: cancel, sendCtx: sendCtx, cancelSends: cancelSends,
		draining: make(chan struct{}),
		runs:     map[string]*run{}, known: map[string]time.Time{}, fresh: map[string]struct{}{},
	}
}

// Options returns the effective options (defaults filled in).
func (q *Queue) Options() Options { return q.o }

// Start runs a first sweep and schedules the next ones.
func (q *Queue) Start() {
	q.sweep()
}

// Stop stops delivering, cleanly: no run starts and no new MESSAGE goes
// out; the MESSAGEs on the wire get up to DrainTimeout (real time) for
// their answers, and every 2xx among them is marked delivered; the attempts
// listed but never made are put back. It returns when every run has ended
// and its writes are done; the caller may then close the store. Calling it
// again waits for nothing.
func (q *Queue) Stop() {
	q.stopOnce.Do(func() {
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
		close(q.draining)
		ended := make(chan struct{})
		go func() {
			q.wg.Wait()
			close(ended)
		}()
		limit := time.NewTimer(q.o.DrainTimeout)
		select {
		case <-ended:
		case <-limit.C:
			q.o.Log.Warn("stopping: MESSAGEs still unanswered after the drain timeout; they stay enqueued and go out again after the restart", "drain_timeout", q.o.DrainTimeout)
			q.cancelSends()
			<-ended
		}
		limit.Stop()
		q.cancelSends()
		q.cancel()
	})
}

// isDraining reports whether Stop has begun.
func (q *Queue) isDraining() bool {
	select {
	case <-q.draining:
		return true
	default:
		return false
	}
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
	// made, as every attempt is). That attempt is due at once, unlike
	// those a pass records: a run already going when this one commits
	// must find the message in its next listing. Only a crash between
	// this write and the try could make the try early, and after a crash
	// nothing is tried before the device registers again, which makes
	// every message due anyway.
	_, here := q.o.Lookup(s.To)
	elsewhere := !here && q.o.OnlineElsewhere != nil && q.o.Elsewhere != nil && q.o.OnlineElsewhere(s.To)
	online := here || elsewhere
	if online {
		m.Attempts, m.NextAttempt = 1, now
		m.WantPendingBefore = true // for the shortcut of kick
	}
	var err error
	m.KeyPeriod, m.Sealed, err = q.o.Sealer.Seal(ctx, m.ID, m.From, m.To, s.Text, m.ExpiresAt)
	if err != nil {
		return store.Message{}, false, err
	}
	if here {
		// Before the write: a pass may list the message as soon as it
		// commits. (For a device on another node, that node notes it:
		// Handed.)
		q.addFresh(m)
	}
	// With a store that tells where the message stands as soon as it is
	// written (SQLite), a device registered here is sent it while the
	// commit and its fsync are still under way: writing and delivering
	// overlap, instead of the delivery waiting for the disk. Only if
	// nothing older is pending for the account (so no order is broken)
	// and no run is going for it (a run could list the store before the
	// commit and miss it); otherwise the kick below, after the commit,
	// starts delivery as it always has. The 202 still waits for the
	// commit. Should the commit fail, the device may have the message
	// while its sender is told it was not stored; the sender sends it
	// again and the device drops the repeated id.
	var startedEarly bool // written by the store's writer before Submit returns
	var stored store.Message
	var created bool
	if es, ok := q.o.Store.(store.EarlySubmitter); ok && here {
		stored, created, err = es.SubmitEarly(ctx, m, q.o.MaxPending, func(w store.Message) {
			if w.PendingBefore == 0 {
				startedEarly = q.kickIdle(s.To, &w)
			}
		})
	} else {
		stored, created, err = q.o.Store.Submit(ctx, m, q.o.MaxPending)
	}
	if here && !created {
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
		// Ids and accounts only: the text never reaches a log.
		q.o.Log.Info("message accepted", "id", stored.ID, "from", stored.From, "to", stored.To, "via", s.Via)
		if q.o.Metrics != nil {
			q.o.Metrics.Accepted.WithLabelValues(s.Via).Inc()
		}
		switch {
		case elsewhere:
			// The doorbell carries it, whatever is pending before it:
			// only the holder can tell that its attempt is recorded.
			q.o.Elsewhere(s.To, &handed)
		case startedEarly:
		case online && handed.PendingBefore == 0:
			q.kick(s.To, &handed)
		default:
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

// addFresh notes that m's first attempt is recorded, not yet made.
func (q *Queue) addFresh(m store.Message) {
	q.mu.Lock()
	if len(q.fresh) >= maxCached {
		clear(q.fresh)
	}
	q.fresh[freshKey(m.From, m.ID)] = struct{}{}
	q.mu.Unlock()
}

// Handed starts the delivery of m, which another node stored for the
// device registered here with its first attempt recorded (see
// Options.OnlineElsewhere): as with Submit's own, that attempt is not
// recorded again, and when nothing older was pending the pass delivers m
// without listing the store. A run already going lists the store again
// instead, which finds m there.
func (q *Queue) Handed(m store.Message) {
	if m.Attempts == 1 {
		q.addFresh(m)
	}
	if _, here := q.o.Lookup(m.To); here && m.PendingBefore == 0 {
		q.kick(m.To, &m)
		return
	}
	q.Kick(m.To)
}

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

// Online tells the queue that the account's device has (re)registered:
// what was tied to its last registration is reset (a parked account is
// unparked, the failed passes and the retry wait forgotten), the next pass
// makes the account's unparked messages due at once, and a run starts. A
// pass under way on another connection is abandoned (roaming): the device
// has moved, and waiting for the old connection's answers would hold the
// backlog for up to AttemptTimeout.
func (q *Queue) Online(account string) {
	b, online := q.o.Lookup(account)
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return
	}
	r := q.runs[account]
	if r == nil {
		r = &run{}
		q.runs[account] = r
	}
	r.parked, r.failed, r.retryAt, r.unanswered = false, 0, time.Time{}, nil
	r.registered = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if online && r.abandon != nil && r.source != b.Source {
		q.o.Log.Info("abandoning the delivery on the old connection: the device registered on another", "account", account, "old_source", r.source, "source", b.Source)
		r.abandon(errMoved)
	}
	q.mu.Unlock()
	q.Kick(account)
}

// Disconnected tells the queue that the connection from source, which the
// account's device was registered on, has closed: a pass sending on it
// ends now, its MESSAGEs on the wire failed (no answer can come), instead
// of each waiting for AttemptTimeout.
func (q *Queue) Disconnected(account, source string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.runs[account]; r != nil && r.abandon != nil && r.source == source {
		r.abandon(errConnectionClosed)
	}
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
	if q.o.Elsewhere != nil {
		if _, here := q.o.Lookup(account); !here {
			q.o.Elsewhere(account, nil)
		}
	}
	q.startRun(account, direct, false)
}

// kickIdle starts a run for the account that delivers direct first, as
// kick does, but only if no run is going and the account is not parked;
// it reports whether it started one. Submit calls it from the store's
// writer, before the message's commit (see there): a run already going
// would look again too early to find the message.
func (q *Queue) kickIdle(account string, direct *store.Message) bool {
	return q.startRun(account, direct, true)
}

// startRun starts a run for the account, delivering direct first, unless
// Stop has begun or the account is parked; a run already going looks
// again before it stops (again), unless onlyIdle. It reports whether it
// started one.
func (q *Queue) startRun(account string, direct *store.Message, onlyIdle bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return false
	}
	r := q.runs[account]
	if r == nil {
		r = &run{}
		q.runs[account] = r
	}
	if r.parked {
		return false
	}
	if r.running {
		if !onlyIdle {
			r.again = true
		}
		return false
	}
	r.running = true
	r.direct = direct
	q.wg.Add(1)
	go q.deliver(account)
	return true
}

func (q *Queue) deliver(account string) {
	defer q.wg.Done()
	for {
		wait := q.pass(account)
		q.mu.Lock()
		r := q.runs[account]
		if r.again && wait == 0 && !r.parked && !q.stopped {
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
		case r.failed == 0 && r.timer == nil && !r.registered && len(r.unanswered) == 0:
			// Nothing left to remember about this account.
			delete(q.runs, account)
		}
		q.mu.Unlock()
		return
	}
}

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
