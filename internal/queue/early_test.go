package queue

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store/sqlite"
	"github.com/sealpost/sealpost/message"
)

// With the embedded store, a message for a device registered here goes out
// while the commit of its submission is still on its way to the disk; the
// sender's answer still waits for that commit, and the message is then
// marked delivered as usual. A message with an older one pending for the
// account waits for the commit and the run, so nothing is overtaken.
func TestOnlineDeviceIsSentTheMessageWhileItsCommitIsSynced(t *testing.T) {
	var mu sync.Mutex
	var hold chan struct{} // while set, every fsync waits for it to close
	f := newFixtureWith(t, sqlite.Options{
		CheckpointTick: time.Hour,
		OnSync: func(time.Duration) {
			mu.Lock()
			h := hold
			mu.Unlock()
			if h != nil {
				<-h
			}
		},
	})
	gate := make(chan struct{})
	release := sync.OnceFunc(func() {
		mu.Lock()
		hold = nil
		mu.Unlock()
		close(gate)
	})
	t.Cleanup(release)
	f.goOnline("bob", false)
	// One message delivered the usual way first: sealing the first
	// message writes the period's data key, which the hold would block.
	waitDelivered(t, f, f.submit(t, "before"))
	checkFor(t, func() error {
		if f.q.Busy("bob") {
			return fmt.Errorf("the run is still going")
		}
		return nil
	})
	mu.Lock()
	hold = gate
	mu.Unlock()

	id := message.NewID()
	answered := make(chan error, 1)
	go func() {
		_, created, err := f.q.Submit(context.Background(), Submission{ID: id, From: "alice", To: "bob", Text: "early"})
		if err == nil && !created {
			err = fmt.Errorf("not created")
		}
		answered <- err
	}()
	checkFor(t, func() error {
		if delivered, _, _ := f.sender.snapshot(); !slices.Equal(delivered, []string{"before", "early"}) {
			return fmt.Errorf("delivered %q; want the message while its commit is held", delivered)
		}
		return nil
	})
	select {
	case err := <-answered:
		t.Fatalf("Submit answered (%v) before its commit was synced", err)
	default:
	}
	release()
	if err := <-answered; err != nil {
		t.Fatalf("Submit: %v", err)
	}
	m := waitDelivered(t, f, id)
	if m.Attempts != 1 || len(m.Sealed) != 0 {
		t.Fatalf("stored as %d attempts, %d bytes of text; want 1 attempt and the text deleted", m.Attempts, len(m.Sealed))
	}
}

// A message submitted while one for the same device waits for its retry
// does not go out early: it goes after the waiting one, in order.
func TestEarlySendWaitsBehindAPendingMessage(t *testing.T) {
	f := newFixture(t)
	f.sender.fail["first"] = 1
	f.goOnline("bob", false)
	f.submit(t, "first") // refused once: waits RetryInterval
	checkFor(t, func() error {
		if _, attempts, _ := f.sender.snapshot(); len(attempts) != 1 || f.q.Busy("bob") {
			return fmt.Errorf("attempts %q; want the first refused and the run ended", attempts)
		}
		return nil
	})
	f.submit(t, "second")
	// A run for "second" may only be one that waits its turn.
	checkFor(t, func() error {
		if f.q.Busy("bob") {
			return fmt.Errorf("run still going")
		}
		return nil
	})
	if delivered, _, _ := f.sender.snapshot(); len(delivered) != 0 {
		t.Fatalf("delivered %q while the first waited for its retry; want nothing", delivered)
	}
	f.clock.Advance(f.q.Options().RetryInterval)
	checkFor(t, func() error {
		if delivered, _, _ := f.sender.snapshot(); !slices.Equal(delivered, []string{"first", "second"}) {
			return fmt.Errorf("delivered %q; want first, second", delivered)
		}
		return nil
	})
}
