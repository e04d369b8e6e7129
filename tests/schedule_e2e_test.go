package tests

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/queue"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

// storedAttempt reads alice's message id from the server's store.
func storedAttempt(t *testing.T, s *servertest.Server, id string) (attempts int, next time.Time, parked bool) {
	t.Helper()
	m, err := s.Store().Message(t.Context(), "alice", id)
	if err != nil {
		t.Fatal(err)
	}
	return m.Attempts, m.NextAttempt, m.Parked
}

// The retry schedule survives restarts of the server (same data folder, the
// same fake clock): the attempt count goes on where it was, the budget is
// one across registrations and restarts, and a parked message is still
// parked after a restart, while the next message is delivered.
func TestScheduleSurvivesServerRestart(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s, tok := newPair(t, servertest.WithFakeClock(t0), hourlySweep)
	bob := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, bob, false)
	bob.AnswerNext(500, 500, 500, 500, 500, 500)
	id := message.NewID()
	submit(t, s, tok, id, "bob", "refused six times")
	for want := 1; want <= 3; want++ {
		retry := t0.Add(time.Duration(want) * 30 * time.Second)
		servertest.CheckFor(t, 10*time.Second, func() error {
			if a, next, _ := storedAttempt(t, s, id); a != want || !next.Equal(retry) {
				return fmt.Errorf("attempts %d next %v, want %d at %v", a, next, want, retry)
			}
			if !s.Clock.HasTimerAt(retry) {
				return errors.New("retry not scheduled yet")
			}
			return nil
		})
		if want < 3 {
			s.Clock.Advance(30 * time.Second)
		}
	}
	waitIdle(t, s, "bob")

	s.Restart(t)
	if a, next, parked := storedAttempt(t, s, id); a != 3 || !next.Equal(t0.Add(90*time.Second)) || parked {
		t.Fatalf("after a restart: attempts %d next %v parked %v; want 3, %v, not parked", a, next, parked, t0.Add(90*time.Second))
	}
	// The device registers with the new process: tries 4 to 6 are what is
	// left of the budget, not a fresh one.
	mustRegister(t, bob, false)
	for want := 4; want <= 6; want++ {
		servertest.CheckFor(t, 10*time.Second, func() error {
			if a, _, _ := storedAttempt(t, s, id); a != want {
				return fmt.Errorf("attempts %d, want %d", a, want)
			}
			return nil
		})
		if want < 6 {
			servertest.CheckFor(t, 10*time.Second, func() error {
				if !s.Clock.HasTimerAt(s.Clock.Now().Add(30 * time.Second)) {
					return errors.New("retry not scheduled yet")
				}
				return nil
			})
			s.Clock.Advance(30 * time.Second)
		}
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if _, _, parked := storedAttempt(t, s, id); !parked {
			return errors.New("not parked after its budget")
		}
		return nil
	})
	waitIdle(t, s, "bob")

	s.Restart(t)
	mustRegister(t, bob, false)
	next := message.NewID()
	submit(t, s, tok, next, "bob", "the next one")
	waitStatus(t, s, tok, next, "delivered")
	waitIdle(t, s, "bob")
	if a, _, parked := storedAttempt(t, s, id); a != 6 || !parked {
		t.Fatalf("parked message after a restart and a registration: attempts %d parked %v", a, parked)
	}
	if got := bob.Texts(); len(got) != 1 || got[0] != "the next one" {
		t.Fatalf("bob has %q", got)
	}
}

// A device that drops its connection whenever one particular message
// arrives gets it once per registration until its budget is used up (not
// once per registration for ever); then it is parked and the messages
// behind it are delivered.
func TestPoisonMessageIsParked(t *testing.T) {
	s, tok := newPair(t, servertest.WithFakeClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)), hourlySweep)
	bob := s.NewDevice(t, "bob", "bob-pw")
	bob.DropOn("poison")
	var ids []string
	for _, text := range []string{"before", "poison", "after 1", "after 2"} {
		id := message.NewID()
		if code, _, e := submit(t, s, tok, id, "bob", text); code != 202 {
			t.Fatalf("submit %q: %d %+v", text, code, e)
		}
		ids = append(ids, id)
	}
	budget := 1 + s.Queue().Options().Retries
	// Each registration (on a new connection) brings one try. The try is
	// charged to the first message on the wire that failed: almost always
	// the poison, but "before" when its 200 is lost in the drop (the
	// device took it; the server cannot know), so allow a few extra.
	for round := 1; ; round++ {
		if round > 2*budget {
			a, _, _ := storedAttempt(t, s, ids[1])
			t.Fatalf("poison still not parked after %d registrations (attempts %d)", round-1, a)
		}
		mustRegister(t, bob, false)
		servertest.CheckFor(t, 10*time.Second, func() error {
			if d := bob.Drops(); d != round {
				return fmt.Errorf("dropped %d times, want %d", d, round)
			}
			if s.Queue().Busy("bob") {
				return errors.New("the run is still going")
			}
			return nil
		})
		if _, _, parked := storedAttempt(t, s, ids[1]); parked {
			break
		}
	}
	if a, _, _ := storedAttempt(t, s, ids[1]); a != budget {
		t.Fatalf("poison parked after %d attempts, want its budget of %d", a, budget)
	}
	for _, id := range ids[2:] {
		if a, _, parked := storedAttempt(t, s, id); parked || a > 1 {
			t.Fatalf("a message behind the poison was charged for its drops: attempts %d parked %v", a, parked)
		}
	}
	drops := bob.Drops()
	mustRegister(t, bob, false)
	for _, id := range []string{ids[0], ids[2], ids[3]} {
		waitStatus(t, s, tok, id, "delivered")
	}
	waitIdle(t, s, "bob")
	if d := bob.Drops(); d != drops {
		t.Fatalf("the parked poison went out again: %d drops, was %d", d, drops)
	}
	// Messages on the wire behind the poison when it dropped the
	// connection may have reached the device without their 200 reaching
	// the server: they are sent again, and the client drops the repeat.
	got := map[string]bool{}
	for _, r := range bob.Received() {
		got[r.Body] = true
	}
	if len(got) != 3 || !got["before"] || !got["after 1"] || !got["after 2"] {
		t.Fatalf("bob has %v", got)
	}
	if _, st := status(t, s, tok, ids[1]); st.Status != "enqueued" {
		t.Fatalf("parked poison: %+v, want enqueued until it expires", st)
	}
}

// Roaming: bob's old connection stalls (the phone stops answering) with
// messages on it; bob registers on a new connection and the backlog goes
// out there at once. The fake clock never moves: had the old run waited
// for its 32 s transaction timeout and recorded a failure, the 30 s retry
// wait on the fake clock would hold the backlog for ever.
func TestRoamingTakesOverAStalledConnection(t *testing.T) {
	s, tok := newPair(t, servertest.WithFakeClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)), hourlySweep)
	old := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, old, false)
	old.Stall()
	var ids []string
	for i := range 5 {
		id := message.NewID()
		submit(t, s, tok, id, "bob", fmt.Sprintf("backlog %d", i))
		ids = append(ids, id)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if !s.Queue().Busy("bob") {
			return errors.New("no run on the old connection")
		}
		return nil
	})
	moved := s.NewDevice(t, "bob", "bob-pw")
	start := s.Clock.Now()
	mustRegister(t, moved, false)
	servertest.CheckFor(t, 20*time.Second, func() error {
		if got := moved.Texts(); len(got) != len(ids) {
			return fmt.Errorf("on the new connection: %q", got)
		}
		return nil
	})
	for _, id := range ids {
		waitStatus(t, s, tok, id, "delivered")
		if a, _, _ := storedAttempt(t, s, id); a != 1 {
			t.Errorf("message %s: %d attempts; the abandoned one must not count", id, a)
		}
	}
	if !s.Clock.Now().Equal(start) {
		t.Fatal("the fake clock moved")
	}
	if got := old.Texts(); len(got) != 0 {
		t.Fatalf("the stalled device answered: %q", got)
	}
}

// A clean stop in the middle of a drain re-sends nothing: the server stops
// while a device is taking a backlog of messages, is started again on the
// same folder, and the device gets the rest; no message reaches it twice
// and none is missing.
func TestCleanStopResendsNothing(t *testing.T) {
	s, _ := newPair(t, servertest.WithOptions(func(o *server.Options) { o.MaxPending = 10000 }))
	const n = 3000
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				ids[i] = message.NewID()
				sub := queue.Submission{ID: ids[i], From: "alice", To: "bob", Text: fmt.Sprintf("message %d", i), Via: "https"}
				if _, _, err := s.Queue().Submit(context.Background(), sub); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	bob := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, bob, false)
	servertest.CheckFor(t, 30*time.Second, func() error {
		if got := len(bob.Received()); got < n/30 {
			return fmt.Errorf("%d received", got)
		}
		return nil
	})
	s.Stop(t) // mid-drain
	first := len(bob.Received())
	if first == n {
		t.Fatalf("the drain ended before the stop; the test needs it under way")
	}
	s.Restart(t)
	mustRegister(t, bob, false)
	servertest.CheckFor(t, 60*time.Second, func() error {
		if got := len(bob.Received()); got < n {
			return fmt.Errorf("%d of %d received", got, n)
		}
		return nil
	})
	waitIdle(t, s, "bob")
	seen := map[string]int{}
	for _, r := range bob.Received() {
		seen[r.ID]++
	}
	resent := 0
	for _, c := range seen {
		resent += c - 1
	}
	if resent != 0 || len(seen) != n {
		t.Fatalf("%d messages, %d re-sent after a clean stop (%d received before it)", len(seen), resent, first)
	}
	t.Logf("%d received before the stop, %d after, none twice", first, n-first)
}
