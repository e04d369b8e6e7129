package queue

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/seal"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/store/sqlite"
	"github.com/sealpost/sealpost/message"
)

// fakeSender records deliveries and fails chosen ones: fail[text] is how
// many attempts of that text fail before one succeeds.
type fakeSender struct {
	mu        sync.Mutex
	fail      map[string]int
	failStart map[string]int
	delivered []string // texts, in the order the device accepted them
	attempts  []string // texts, every attempt
	reports   []store.Report
}

// StartMessage decides the device's answer at once, in the order the
// MESSAGEs are started (as a device answers them in the order they arrive).
// A text in failStart is not sent at all, as when the connection is gone.
func (f *fakeSender) StartMessage(_ context.Context, _ registrar.Binding, d Delivery) (func() error, error) {
	f.mu.Lock()
	if f.failStart[d.Text] > 0 {
		f.failStart[d.Text]--
		f.attempts = append(f.attempts, d.Text)
		f.mu.Unlock()
		return nil, errors.New("no connection")
	}
	f.mu.Unlock()
	err := f.answer(d)
	return func() error { return err }, nil
}

func (f *fakeSender) answer(d Delivery) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = append(f.attempts, d.Text)
	if f.fail[d.Text] > 0 {
		f.fail[d.Text]--
		return errors.New("device answered 500")
	}
	f.delivered = append(f.delivered, d.Text)
	return nil
}

func (f *fakeSender) SendReport(_ context.Context, _ registrar.Binding, r store.Report) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = append(f.reports, r)
	return nil
}

func (f *fakeSender) snapshot() (delivered, attempts []string, reports int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.delivered...), append([]string(nil), f.attempts...), len(f.reports)
}

type fixture struct {
	q      *Queue
	clock  *clock.Fake
	sender *fakeSender
	online map[string]registrar.Binding
	mu     sync.Mutex
	store  store.Store
}

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, sqlite.Options{})
}

// newFixtureWith is newFixture with a store opened with o.
func newFixtureWith(t *testing.T, o sqlite.Options) *fixture {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "q.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, n := range []string{"alice", "bob"} {
		if err := st.CreateAccount(context.Background(), store.Account{Name: n, PasswordHash: "x", CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	key := make([]byte, seal.KeySize)
	sl, err := seal.New(key, st, func(err error) bool { return errors.Is(err, store.ErrNotFound) }, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clock: clock.NewFake(t0), sender: &fakeSender{fail: map[string]int{}, failStart: map[string]int{}}, online: map[string]registrar.Binding{}, store: st}
	f.q = New(Options{
		Store: st, Sealer: sl, Sender: f.sender, Clock: f.clock,
		Lookup: func(a string) (registrar.Binding, bool) {
			f.mu.Lock()
			defer f.mu.Unlock()
			b, ok := f.online[a]
			return b, ok
		},
	})
	f.q.Start()
	t.Cleanup(f.q.Stop)
	return f
}

func (f *fixture) goOnline(account string, imdn bool) {
	f.mu.Lock()
	f.online[account] = registrar.Binding{Account: account, IMDN: imdn}
	f.mu.Unlock()
	f.q.Online(account)
}

func (f *fixture) submit(t *testing.T, text string) string {
	t.Helper()
	id := message.NewID()
	if _, created, err := f.q.Submit(context.Background(), Submission{ID: id, From: "alice", To: "bob", Text: text}); err != nil || !created {
		t.Fatalf("submit %q: %v %v", text, created, err)
	}
	return id
}

func checkFor(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A failed message stops the sending: nothing is put on the wire after the
// failure, and the next pass, after the retry interval, sends the failed
// one before anything newer. A refused one ("first", answered 500) already
// had "second" on the wire behind it, which the device accepted; one that
// could not be sent at all (no connection) had nothing behind it.
func TestFailureStopsSendingAndIsRetriedFirst(t *testing.T) {
	for _, c := range []struct {
		name                            string
		unsent                          bool
		delivered, attempts, afterRetry string
	}{
		{"refused", false, "[second]", "[first second]", "[first second first third]"},
		{"not sent", true, "[]", "[first]", "[first first second third]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			if c.unsent {
				f.sender.failStart["first"] = 1
			} else {
				f.sender.fail["first"] = 1
			}
			f.submit(t, "first")
			f.submit(t, "second")
			f.goOnline("bob", false)
			checkFor(t, func() error {
				if !f.clock.HasTimerAt(t0.Add(30 * time.Second)) {
					return errors.New("retry not scheduled")
				}
				return nil
			})
			f.submit(t, "third") // stored during the wait: goes out after the retry of "first"
			// The run this submission kicks finds the retry not yet due and
			// schedules it again; only once it has, may the clock move (a
			// run still going would count its wait from the moved clock).
			checkFor(t, func() error {
				if f.q.Busy("bob") || !f.clock.HasTimerAt(t0.Add(30*time.Second)) {
					return errors.New("the run kicked by the third submission is still going")
				}
				return nil
			})
			if d, a, _ := f.sender.snapshot(); fmt.Sprint(d) != c.delivered || fmt.Sprint(a) != c.attempts {
				t.Fatalf("before the retry: delivered %q attempts %q", d, a)
			}
			f.clock.Advance(30 * time.Second)
			checkFor(t, func() error {
				if _, a, _ := f.sender.snapshot(); fmt.Sprint(a) != c.afterRetry {
					return fmt.Errorf("attempts %q", a)
				}
				return nil
			})
		})
	}
}

func TestOfflineRecipientGetsNoAttempt(t *testing.T) {
	f := newFixture(t)
	id := f.submit(t, "later")
	f.clock.Advance(time.Hour)
	if _, attempts, _ := f.sender.snapshot(); len(attempts) != 0 {
		t.Fatalf("attempts to an offline device: %q", attempts)
	}
	f.goOnline("bob", false)
	checkFor(t, func() error {
		m, err := f.store.Message(context.Background(), "alice", id)
		if err != nil || m.Status != message.Delivered {
			return fmt.Errorf("%v %v", m.Status, err)
		}
		return nil
	})
}

func TestReportsOnlyForDevicesThatAsked(t *testing.T) {
	f := newFixture(t)
	f.goOnline("alice", false)
	f.goOnline("bob", false)
	f.submit(t, "one")
	checkFor(t, func() error {
		if d, _, _ := f.sender.snapshot(); len(d) != 1 {
			return fmt.Errorf("delivered %q", d)
		}
		return nil
	})
	// alice's plain device: the report waits in the store.
	checkFor(t, func() error {
		r, err := f.store.PendingReports(context.Background(), "alice", 10)
		if err != nil || len(r) != 1 {
			return fmt.Errorf("pending reports %d %v", len(r), err)
		}
		return nil
	})
	if _, _, n := f.sender.snapshot(); n != 0 {
		t.Fatalf("%d reports sent to a device that did not ask", n)
	}
	f.goOnline("alice", true)
	checkFor(t, func() error {
		if _, _, n := f.sender.snapshot(); n != 1 {
			return fmt.Errorf("%d reports", n)
		}
		return nil
	})
}

func TestSubmitRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var rule *message.RuleError
	if _, _, err := f.q.Submit(ctx, Submission{ID: "x", From: "alice", To: "bob", Text: "hi"}); !errors.As(err, &rule) || rule.Code != message.CodeInvalidID {
		t.Fatalf("bad id: %v", err)
	}
	if _, _, err := f.q.Submit(ctx, Submission{ID: message.NewID(), From: "alice", To: "bob", Text: ""}); !errors.As(err, &rule) || rule.Code != message.CodeEmpty {
		t.Fatalf("empty: %v", err)
	}
	if _, _, err := f.q.Submit(ctx, Submission{ID: message.NewID(), From: "alice", To: "carol", Text: "hi"}); !errors.Is(err, ErrUnknownRecipient) {
		t.Fatalf("unknown recipient: %v", err)
	}
	if n, _ := f.store.CountPending(ctx); n != 0 {
		t.Fatalf("refusals stored %d messages", n)
	}
}

// countingStore counts Pending calls, to catch a delivery run that spins.
type countingStore struct {
	store.Store
	mu      sync.Mutex
	pending int
}

func (c *countingStore) Pending(ctx context.Context, to string, after int64, due time.Time, limit int) ([]store.Message, error) {
	c.mu.Lock()
	c.pending++
	c.mu.Unlock()
	return c.Store.Pending(ctx, to, after, due, limit)
}

func (c *countingStore) listings() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending
}

// countListings replaces f's queue with one whose store counts Pending
// calls; change adjusts its options first. The new queue is not started.
func (f *fixture) countListings(t *testing.T, change func(*Options)) *countingStore {
	f.q.Stop()
	cs := &countingStore{Store: f.store}
	o := f.q.Options()
	o.Store = cs
	if change != nil {
		change(&o)
	}
	f.q = New(o)
	t.Cleanup(f.q.Stop)
	return cs
}

// An expired message the sweep has not removed yet is passed over: the
// messages behind it go, and the run does not spin on it.
func TestExpiredButUnsweptIsPassedOver(t *testing.T) {
	f := newFixture(t)
	cs := f.countListings(t, func(o *Options) {
		o.SweepInterval = 1000 * time.Hour // no sweep during the test
	})

	f.submit(t, "old")
	f.clock.Advance(73 * time.Hour)
	f.submit(t, "new")
	f.goOnline("bob", false)
	checkFor(t, func() error {
		if d, _, _ := f.sender.snapshot(); fmt.Sprint(d) != "[new]" {
			return fmt.Errorf("delivered %q", d)
		}
		return nil
	})
	checkFor(t, func() error {
		f.q.mu.Lock()
		defer f.q.mu.Unlock()
		if r := f.q.runs["bob"]; r != nil && r.running {
			return errors.New("the run is still going")
		}
		return nil
	})
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.pending > 5 {
		t.Fatalf("Pending listed %d times: the run spun on the expired message", cs.pending)
	}
}

// blockingSender holds the answer to every MESSAGE whose text is in hold
// until release is closed, and records the order in which MESSAGEs were
// put on the wire (started) and answered.
type blockingSender struct {
	fakeSender
	hold    map[string]bool
	release chan struct{}
	started []string // guarded by fakeSender.mu
}

func (f *blockingSender) StartMessage(ctx context.Context, b registrar.Binding, d Delivery) (func() error, error) {
	f.mu.Lock()
	f.started = append(f.started, d.Text)
	f.mu.Unlock()
	return func() error {
		if f.hold[d.Text] {
			select {
			case <-f.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return f.fakeSender.answer(d)
	}, nil
}

func (f *blockingSender) startedBy(from string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, text := range f.started {
		if strings.HasPrefix(text, from+" ") {
			out = append(out, text)
		}
	}
	return out
}

// A sender's messages go on the wire in submission order, up to perSender
// of them before the first is answered; another sender's go out beside
// them.
func TestSendersPipelinedEachInOrder(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.store.CreateAccount(ctx, store.Account{Name: "carol", PasswordHash: "x", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	bs := &blockingSender{hold: map[string]bool{"alice 1": true}, release: make(chan struct{})}
	f.q.o.Sender = bs
	var alice []string
	for i := 1; i <= perSender+2; i++ {
		alice = append(alice, fmt.Sprintf("alice %d", i))
	}
	texts := append(slices.Clone(alice), "carol 1", "carol 2")
	for _, text := range texts {
		s := Submission{ID: message.NewID(), From: strings.Fields(text)[0], To: "bob", Text: text}
		if _, _, err := f.q.Submit(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	f.goOnline("bob", false)
	// While "alice 1" waits for its answer: carol's two go through, and
	// alice's next ones go out behind it, up to perSender on the wire.
	checkFor(t, func() error {
		d, _, _ := bs.snapshot()
		if !slices.Contains(d, "carol 2") || len(bs.startedBy("alice")) < perSender {
			return fmt.Errorf("delivered %q, alice's started %q", d, bs.startedBy("alice"))
		}
		return nil
	})
	if got := bs.startedBy("alice"); !slices.Equal(got, alice[:perSender]) {
		t.Fatalf("alice's on the wire while alice 1 is unanswered: %q, want %q", got, alice[:perSender])
	}
	if got := bs.startedBy("carol"); fmt.Sprint(got) != "[carol 1 carol 2]" {
		t.Fatalf("carol's on the wire: %q", got)
	}
	close(bs.release)
	checkFor(t, func() error {
		if d, _, _ := bs.snapshot(); len(d) != len(texts) {
			return fmt.Errorf("delivered %q", d)
		}
		return nil
	})
	if got := bs.startedBy("alice"); !slices.Equal(got, alice) {
		t.Fatalf("alice's on the wire: %q, want %q", got, alice)
	}
}

// A drain longer than several listing windows delivers every message once,
// each sender's in order, listing each window once: the lister lists after
// the last message it took, not again from the first one still enqueued.
func TestDrainAcrossWindows(t *testing.T) {
	f := newFixture(t)
	cs := f.countListings(t, nil)
	ctx := context.Background()
	if err := f.store.CreateAccount(ctx, store.Account{Name: "carol", PasswordHash: "x", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	const n = 3*window + 10
	var want []string
	for i := range n {
		from := []string{"alice", "carol"}[i%2]
		text := fmt.Sprintf("%s %d", from, i)
		want = append(want, text)
		if _, _, err := f.q.Submit(ctx, Submission{ID: message.NewID(), From: from, To: "bob", Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	f.goOnline("bob", false)
	checkFor(t, func() error {
		if d, _, _ := f.sender.snapshot(); len(d) != n || f.q.Busy("bob") {
			return fmt.Errorf("delivered %d of %d", len(d), n)
		}
		return nil
	})
	_, attempts, _ := f.sender.snapshot()
	if len(attempts) != n {
		t.Fatalf("%d attempts for %d messages", len(attempts), n)
	}
	for _, from := range []string{"alice", "carol"} {
		var got, wantFrom []string
		for _, text := range attempts {
			if strings.HasPrefix(text, from+" ") {
				got = append(got, text)
			}
		}
		for _, text := range want {
			if strings.HasPrefix(text, from+" ") {
				wantFrom = append(wantFrom, text)
			}
		}
		if !slices.Equal(got, wantFrom) {
			t.Fatalf("%s's messages out of order: %q", from, got)
		}
	}
	if l := cs.listings(); l > n/window+2 {
		t.Fatalf("%d listings for %d messages in windows of %d", l, n, window)
	}
	if p, err := f.store.Pending(ctx, "bob", 0, time.Time{}, 0); err != nil || len(p) != 0 {
		t.Fatalf("still pending: %d %v", len(p), err)
	}
}

// A message for an online recipient with nothing else waiting is delivered
// straight from the submission, without listing the store; one stored
// while an older one waits goes through the listing, behind it.
func TestDirectDeliveryOnlyWhenNothingOlderWaits(t *testing.T) {
	f := newFixture(t)
	cs := f.countListings(t, nil)
	f.q.Start()
	listings := cs.listings
	f.goOnline("bob", false)
	checkFor(t, func() error {
		if f.q.Busy("bob") {
			return errors.New("the registration's run is still going")
		}
		return nil
	})
	before := listings()
	f.submit(t, "alone")
	checkFor(t, func() error {
		if d, _, _ := f.sender.snapshot(); fmt.Sprint(d) != "[alone]" {
			return fmt.Errorf("delivered %q", d)
		}
		return nil
	})
	checkFor(t, func() error {
		if f.q.Busy("bob") {
			return errors.New("run still going")
		}
		return nil
	})
	if n := listings() - before; n != 0 {
		t.Errorf("delivering a message with nothing older waiting listed the store %d times; want 0", n)
	}

	// "first" fails once and keeps waiting; "second", stored behind it,
	// must not overtake it.
	f.sender.fail["first"] = 1
	f.submit(t, "first")
	checkFor(t, func() error {
		if !f.clock.HasTimerAt(t0.Add(30 * time.Second)) {
			return errors.New("retry not scheduled")
		}
		return nil
	})
	f.submit(t, "second")
	f.clock.Advance(30 * time.Second)
	checkFor(t, func() error {
		if d, _, _ := f.sender.snapshot(); fmt.Sprint(d) != "[alone first second]" {
			return fmt.Errorf("delivered %q", d)
		}
		return nil
	})
	if _, attempts, _ := f.sender.snapshot(); fmt.Sprint(attempts) != "[alone first first second]" {
		t.Errorf("attempts %q; want [alone first first second]", attempts)
	}
}
