package queue

import (
	"context"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// pendingFor submits n messages to bob (offline) and returns them as the
// store lists them.
func pendingFor(t *testing.T, f *fixture, n int) []store.Message {
	t.Helper()
	for range n {
		f.submit(t, "hello")
	}
	ms, err := f.store.Pending(context.Background(), "bob", 0, time.Time{}, 0)
	if err != nil || len(ms) != n {
		t.Fatalf("pending: %d messages, %v; want %d", len(ms), err, n)
	}
	return ms
}

// A pass that ends after its deliveries writes their marks itself: no
// goroutine of the marker's is started for them, and they are in the
// store when wait returns.
func TestMarksOfAPassThatEndsAreWrittenInWait(t *testing.T) {
	f := newFixture(t)
	ms := pendingFor(t, f, 2)
	mk := newMarker(f.q)
	for _, m := range ms {
		mk.delivered(m)
	}
	if mk.started {
		t.Fatal("the marker started a goroutine for a pass with nothing else to wait for")
	}
	if err := mk.wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}
	for _, m := range ms {
		got, err := f.store.Message(context.Background(), m.From, m.ID)
		if err != nil || got.Status != message.Delivered {
			t.Fatalf("message %s after wait: %v, %v; want delivered", m.ID, got.Status, err)
		}
	}
}

// Deliveries never wait for a writer that was not started: past
// maxInFlight unwritten marks the marker writes in the background even
// if the pass never flushes, and a flush starts it for fewer.
func TestMarksGoToTheBackgroundWhenTheyPileUpOrThePassWaits(t *testing.T) {
	f := newFixture(t)
	ms := pendingFor(t, f, maxMarking+8)
	mk := newMarker(f.q)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, m := range ms {
			mk.delivered(m)
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("delivered blocked: the slots filled with no writer to empty them")
	}
	if err := mk.wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if n, err := f.store.CountPending(context.Background()); err != nil || n != 0 {
		t.Fatalf("%d still pending after wait (%v)", n, err)
	}

	ms = pendingFor(t, f, 1)
	mk = newMarker(f.q)
	mk.delivered(ms[0])
	mk.flush()
	if !mk.started {
		t.Fatal("flush left the mark for wait: the pass would hold it while it waits for answers")
	}
	if err := mk.wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}
}
