package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// attemptCountingStore counts the attempts recorded, one by one
// (RecordAttempt) or a window at a time (RecordAttempts).
type attemptCountingStore struct {
	store.Store
	mu       sync.Mutex
	attempts int
}

func (c *attemptCountingStore) RecordAttempt(ctx context.Context, a store.Attempt) error {
	c.mu.Lock()
	c.attempts++
	c.mu.Unlock()
	return c.Store.RecordAttempt(ctx, a)
}

func (c *attemptCountingStore) RecordAttempts(ctx context.Context, as []store.Attempt) ([]error, error) {
	c.mu.Lock()
	c.attempts += len(as)
	c.mu.Unlock()
	return c.Store.RecordAttempts(ctx, as)
}

func (c *attemptCountingStore) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attempts
}

func withStore(t *testing.T, f *fixture, wrap func(store.Store) store.Store) {
	t.Helper()
	f.q.Stop()
	o := f.q.Options()
	o.Store = wrap(f.store)
	f.q = New(o)
	t.Cleanup(f.q.Stop)
}

func waitDelivered(t *testing.T, f *fixture, id string) store.Message {
	t.Helper()
	var m store.Message
	checkFor(t, func() error {
		var err error
		m, err = f.store.Message(context.Background(), "alice", id)
		if err != nil || m.Status != message.Delivered {
			return fmt.Errorf("message %s: %v %v", id, m.Status, err)
		}
		return nil
	})
	return m
}

// A message to a recipient online at submission carries its first attempt
// in the submission's own write; one to an offline recipient gets its
// attempt recorded by the pass. Either way the count is on disk before the
// try, and it is one.
func TestFirstAttemptRecordedWithSubmission(t *testing.T) {
	f := newFixture(t)
	cs := &attemptCountingStore{}
	withStore(t, f, func(s store.Store) store.Store { cs.Store = s; return cs })

	f.goOnline("bob", false)
	m := waitDelivered(t, f, f.submit(t, "online"))
	if m.Attempts != 1 || cs.count() != 0 {
		t.Errorf("online recipient: attempts %d, RecordAttempt called %d times; want 1 and 0", m.Attempts, cs.count())
	}

	// Bob goes offline once his run is over: a pass that began while he
	// was online could otherwise still list the store after the next
	// submission (seen on a busy machine, with the mark written but the
	// pass not yet ended).
	checkFor(t, func() error {
		if f.q.Busy("bob") {
			return errors.New("bob's run still going")
		}
		return nil
	})
	f.mu.Lock()
	delete(f.online, "bob")
	f.mu.Unlock()
	id := f.submit(t, "offline")
	if m, _ := f.store.Message(context.Background(), "alice", id); m.Attempts != 0 {
		t.Errorf("stored for an offline recipient with %d attempts", m.Attempts)
	}
	f.goOnline("bob", false)
	m = waitDelivered(t, f, id)
	if m.Attempts != 1 || cs.count() != 1 {
		t.Errorf("offline recipient: attempts %d, RecordAttempt called %d times; want 1 and 1", m.Attempts, cs.count())
	}
}

// A failed first attempt recorded with the submission is counted once: the
// failure record says attempt 1, and the retry is attempt 2.
func TestFirstAttemptFailureCountsOnce(t *testing.T) {
	f := newFixture(t)
	f.goOnline("bob", false)
	f.sender.fail["flaky"] = 1
	id := f.submit(t, "flaky")
	checkFor(t, func() error {
		m, err := f.store.Message(context.Background(), "alice", id)
		if err != nil || m.LastError == "" {
			return fmt.Errorf("failure not recorded: %+v %v", m, err)
		}
		if m.Attempts != 1 {
			return fmt.Errorf("after one failed attempt: attempts %d", m.Attempts)
		}
		return nil
	})
	checkFor(t, func() error {
		if !f.clock.HasTimerAt(t0.Add(30 * time.Second)) {
			return errors.New("retry not scheduled")
		}
		return nil
	})
	f.clock.Advance(30 * time.Second)
	if m := waitDelivered(t, f, id); m.Attempts != 2 {
		t.Errorf("delivered on the retry with attempts %d, want 2", m.Attempts)
	}
}

// The recipient check is cached for knownTTL: an account deleted by
// another process can be written to for at most that long; Forget ends it
// at once.
func TestRecipientCacheIsBoundedInTime(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.submit(t, "bob exists")
	if err := f.store.DeleteAccount(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	f.submit(t, "within the cache lifetime")
	f.clock.Advance(knownTTL)
	if _, _, err := f.q.Submit(ctx, Submission{ID: message.NewID(), From: "alice", To: "bob", Text: "hi"}); !errors.Is(err, ErrUnknownRecipient) {
		t.Fatalf("after knownTTL: %v, want ErrUnknownRecipient", err)
	}

	if err := f.store.CreateAccount(ctx, store.Account{Name: "carol", PasswordHash: "x", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.q.Submit(ctx, Submission{ID: message.NewID(), From: "alice", To: "carol", Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	if err := f.store.DeleteAccount(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	f.q.Forget("carol")
	if _, _, err := f.q.Submit(ctx, Submission{ID: message.NewID(), From: "alice", To: "carol", Text: "hi"}); !errors.Is(err, ErrUnknownRecipient) {
		t.Fatalf("after Forget: %v, want ErrUnknownRecipient", err)
	}
}

// A message stored on node a for a device registered on node b travels
// with the doorbell (here through the same JSON the cluster sends): b
// delivers it without listing the store and without recording its attempt
// again, and the one attempt a recorded with the message is the one made.
func TestHandedMessageIsDeliveredWithoutListing(t *testing.T) {
	f := newFixture(t) // node b, where bob's device is
	var ac *attemptCountingStore
	cs := f.countListings(t, func(o *Options) {
		ac = &attemptCountingStore{Store: o.Store.(store.Store)}
		o.Store = ac
	})
	f.q.Start()

	rung := make(chan bool, 10) // whether each doorbell carried a message
	oa := f.q.Options()         // node a: same store, bob not registered here
	oa.Store = f.store
	oa.Sender = nil
	oa.Lookup = func(string) (registrar.Binding, bool) { return registrar.Binding{}, false }
	oa.OnlineElsewhere = func(a string) bool { return a == "bob" }
	oa.Elsewhere = func(account string, direct *store.Message) {
		rung <- direct != nil
		if direct == nil {
			f.q.Kick(account)
			return
		}
		data, err := json.Marshal(direct)
		if err != nil {
			t.Error(err)
			return
		}
		var m store.Message
		if err := json.Unmarshal(data, &m); err != nil {
			t.Error(err)
			return
		}
		f.q.Handed(m)
	}
	qa := New(oa)
	qa.Start()
	t.Cleanup(qa.Stop)

	f.goOnline("bob", false)
	checkFor(t, func() error { // the registration's own pass ends
		f.q.mu.Lock()
		defer f.q.mu.Unlock()
		if r := f.q.runs["bob"]; r != nil && r.running {
			return errors.New("the registration's pass is still going")
		}
		return nil
	})
	listed := cs.listings()

	id := message.NewID()
	if _, created, err := qa.Submit(context.Background(), Submission{ID: id, From: "alice", To: "bob", Text: "across"}); err != nil || !created {
		t.Fatalf("submit on node a: %v %v", created, err)
	}
	if carried := <-rung; !carried {
		t.Fatal("the doorbell did not carry the message")
	}
	m := waitDelivered(t, f, id)
	if m.Attempts != 1 || ac.count() != 0 {
		t.Errorf("attempts %d, recorded by node b %d times; want 1 and 0", m.Attempts, ac.count())
	}
	if got := cs.listings(); got != listed {
		t.Errorf("node b listed the store %d times for a handed message, want 0", got-listed)
	}
	if d, _, _ := f.sender.snapshot(); fmt.Sprint(d) != "[across]" {
		t.Errorf("node b's device got %q, want [across]", d)
	}
}

// A message handed over while an older one waits for the same device is
// not delivered directly, but its attempt is still not recorded twice: the
// holder's listing finds it noted as handed.
func TestHandedBehindAPendingMessageCountsOneAttempt(t *testing.T) {
	f := newFixture(t) // node b; bob's device registers here only later
	var ac *attemptCountingStore
	f.countListings(t, func(o *Options) {
		ac = &attemptCountingStore{Store: o.Store.(store.Store)}
		o.Store = ac
	})
	f.q.Start()
	var elsewhere atomic.Bool // what node a believes of bob's device
	oa := f.q.Options()
	oa.Store = f.store
	oa.Sender = nil
	oa.Lookup = func(string) (registrar.Binding, bool) { return registrar.Binding{}, false }
	oa.OnlineElsewhere = func(string) bool { return elsewhere.Load() }
	oa.Elsewhere = func(account string, direct *store.Message) {
		if direct != nil {
			f.q.Handed(*direct)
		}
	}
	qa := New(oa)
	qa.Start()
	t.Cleanup(qa.Stop)

	submit := func(text string) string {
		id := message.NewID()
		if _, created, err := qa.Submit(context.Background(), Submission{ID: id, From: "alice", To: "bob", Text: text}); err != nil || !created {
			t.Fatalf("submit %q on node a: %v %v", text, created, err)
		}
		return id
	}
	older := submit("older") // bob offline everywhere: no attempt yet
	elsewhere.Store(true)
	newer := submit("newer") // handed over, one message pending before it
	f.goOnline("bob", false)
	for id, want := range map[string]int{older: 1, newer: 1} {
		if m := waitDelivered(t, f, id); m.Attempts != want {
			t.Errorf("message %s delivered with %d attempts recorded, want %d", id, m.Attempts, want)
		}
	}
	if got := ac.count(); got != 1 {
		t.Errorf("node b recorded %d attempts, want 1 (the older message's)", got)
	}
	if d, _, _ := f.sender.snapshot(); fmt.Sprint(d) != "[older newer]" {
		t.Errorf("delivered %q, want [older newer]", d)
	}
}
