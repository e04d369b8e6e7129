// Package tests holds end-to-end tests: the real server on loopback ports
// with real TLS and the real SQLite file, driven over HTTPS and SIP.
package tests

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

func TestOnlineDelivery(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "alice-pw")
	s.AddUser(t, "bob", "bob-pw")
	bob := s.NewDevice(t, "bob", "bob-pw")
	if code, err := bob.Register(600, false); code != 200 {
		t.Fatalf("bob register: %d %v", code, err)
	}
	tok := s.Token(t, "alice", "alice-pw")
	id := message.NewID()
	code, res, e := submit(t, s, tok, id, "bob", "hello bob 👍🏽")
	if code != http.StatusAccepted || res.Status != "enqueued" || res.ID != id {
		t.Fatalf("submit: %d %+v %+v", code, res, e)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if got := bob.Texts(); len(got) != 1 || got[0] != "hello bob 👍🏽" {
			return fmt.Errorf("bob has %q", got)
		}
		return nil
	})
	r := bob.Received()[0]
	if r.From != "alice" || r.ID != id || r.ContentType != "text/plain;charset=utf-8" || r.SubmittedAt == "" {
		t.Fatalf("delivered MESSAGE: %+v", r)
	}
	waitStatus(t, s, tok, id, "delivered")
}

func newPair(t *testing.T, opts ...servertest.Option) (*servertest.Server, string) {
	t.Helper()
	s := servertest.Start(t, opts...)
	s.AddUser(t, "alice", "alice-pw")
	s.AddUser(t, "bob", "bob-pw")
	return s, s.Token(t, "alice", "alice-pw")
}

// hourlySweep keeps the expiry sweep's timer off the instants where tests
// wait for a retry timer (HasTimerAt), which a one-minute sweep would share.
var hourlySweep = servertest.WithOptions(func(o *server.Options) { o.SweepInterval = time.Hour })

// waitIdle waits until no delivery run is under way for the account, so a
// check that nothing was delivered cannot pass just by coming too early.
func waitIdle(t *testing.T, s *servertest.Server, account string) {
	t.Helper()
	servertest.CheckFor(t, 10*time.Second, func() error {
		if s.Queue().Busy(account) {
			return fmt.Errorf("a delivery run for %s is under way", account)
		}
		return nil
	})
}

func mustRegister(t *testing.T, d *servertest.Device, reports bool) {
	t.Helper()
	if code, err := d.Register(600, reports); code != 200 {
		t.Fatalf("%s register: %d %v", d.Account, code, err)
	}
}

func TestOfflineThenDeliveredInOrderOnRegister(t *testing.T) {
	s, tok := newPair(t)
	var ids []string
	var texts []string
	for i := 0; i < 20; i++ {
		id, text := message.NewID(), fmt.Sprintf("message %02d", i)
		if code, _, e := submit(t, s, tok, id, "bob", text); code != 202 {
			t.Fatalf("submit %d: %d %+v", i, code, e)
		}
		ids, texts = append(ids, id), append(texts, text)
	}
	for _, id := range ids {
		if _, st := status(t, s, tok, id); st.Status != "enqueued" || st.DeliveredAt != nil {
			t.Fatalf("offline message %s: %+v", id, st)
		}
	}
	bob := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, bob, false)
	servertest.CheckFor(t, 10*time.Second, func() error {
		if got := bob.Texts(); len(got) != len(texts) {
			return fmt.Errorf("bob has %d of %d", len(got), len(texts))
		}
		return nil
	})
	// The server puts a sender's MESSAGEs on the connection in submission
	// order, several before the first is answered; this test device is a
	// sipgo UA, which handles each request in its own goroutine, so the
	// order its handler sees is not the wire order (the raw device of
	// internal/loadtest checks that: TestDrain). What a person sees is
	// what the Sealpost client shows: the conversation in the order of
	// each message's Submitted-At, which must be the submission order.
	if shown := inSubmissionOrder(t, bob); fmt.Sprint(shown) != fmt.Sprint(texts) {
		t.Fatalf("in Submitted-At order: got %q want %q", shown, texts)
	}
	for _, id := range ids {
		waitStatus(t, s, tok, id, "delivered")
	}
}

// A drain in which the device refuses one MESSAGE while others of the
// same sender are on the wire loses nothing and shows nothing twice: the
// refused one stays enqueued, is retried after the interval, and the
// conversation in Submitted-At order is the submission order.
func TestDrainWithRefusalLosesNothing(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s, tok := newPair(t, servertest.WithFakeClock(t0), hourlySweep)
	const n = 20
	var ids, texts []string
	for i := range n {
		id, text := message.NewID(), fmt.Sprintf("stored %02d", i)
		if code, _, e := submit(t, s, tok, id, "bob", text); code != 202 {
			t.Fatalf("submit %d: %d %+v", i, code, e)
		}
		ids, texts = append(ids, id), append(texts, text)
		s.Clock.Advance(time.Millisecond) // distinct submission times, as a real clock gives
	}
	t0 = s.Clock.Now()
	bob := s.NewDevice(t, "bob", "bob-pw")
	bob.AnswerNext(200, 200, 200, 500) // the fourth MESSAGE it handles is refused
	mustRegister(t, bob, false)
	servertest.CheckFor(t, 10*time.Second, func() error {
		if !s.Clock.HasTimerAt(t0.Add(30 * time.Second)) {
			return errors.New("no retry scheduled after the refusal")
		}
		return nil
	})
	if got := len(bob.Texts()); got >= n {
		t.Fatalf("bob has all %d messages before the retry, though one was refused", got)
	}
	s.Clock.Advance(30 * time.Second)
	for _, id := range ids {
		waitStatus(t, s, tok, id, "delivered")
	}
	if shown := inSubmissionOrder(t, bob); fmt.Sprint(shown) != fmt.Sprint(texts) {
		t.Fatalf("bob's messages in Submitted-At order: %q, want each once, %q", shown, texts)
	}
}

// inSubmissionOrder returns the texts d received as the Sealpost client
// shows a conversation: in the order of each one's X-Sealpost-Submitted-At.
func inSubmissionOrder(t *testing.T, d *servertest.Device) []string {
	t.Helper()
	type shown struct {
		at   time.Time
		text string
	}
	var got []shown
	for _, r := range d.Received() {
		at, err := time.Parse(time.RFC3339Nano, r.SubmittedAt)
		if err != nil {
			t.Fatalf("%q: Submitted-At %q: %v", r.Body, r.SubmittedAt, err)
		}
		got = append(got, shown{at, r.Body})
	}
	slices.SortStableFunc(got, func(a, b shown) int { return a.at.Compare(b.at) })
	var texts []string
	for _, g := range got {
		texts = append(texts, g.text)
	}
	return texts
}

func TestRetryWhileRegistered(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s, tok := newPair(t, servertest.WithFakeClock(t0), hourlySweep)
	bob := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, bob, false)
	bob.AnswerNext(500, 500) // then 200
	id := message.NewID()
	if code, _, e := submit(t, s, tok, id, "bob", "third time lucky"); code != 202 {
		t.Fatalf("submit: %d %+v", code, e)
	}
	attempts := func(want int) {
		t.Helper()
		servertest.CheckFor(t, 10*time.Second, func() error {
			m, err := s.Store().Message(t.Context(), "alice", id)
			if err != nil {
				return err
			}
			if m.Attempts != want {
				return fmt.Errorf("attempts %d, want %d", m.Attempts, want)
			}
			return nil
		})
	}
	retryScheduled := func(at time.Time) {
		t.Helper()
		servertest.CheckFor(t, 10*time.Second, func() error {
			if !s.Clock.HasTimerAt(at) {
				return fmt.Errorf("no retry scheduled at %v", at)
			}
			return nil
		})
	}
	attempts(1)
	retryScheduled(t0.Add(30 * time.Second))
	// No retry before 30 s have passed.
	s.Clock.Advance(29 * time.Second)
	attempts(1)
	s.Clock.Advance(time.Second)
	attempts(2)
	if _, st := status(t, s, tok, id); st.Status != "enqueued" {
		t.Fatalf("after two 500s: %+v", st)
	}
	retryScheduled(t0.Add(60 * time.Second))
	s.Clock.Advance(30 * time.Second)
	attempts(3)
	waitStatus(t, s, tok, id, "delivered")
	if got := bob.Texts(); len(got) != 1 || got[0] != "third time lucky" {
		t.Fatalf("bob has %q", got)
	}
}

// A message the device keeps refusing uses up its budget (1 attempt + 5
// retries, 30 s apart) and is parked: time brings no more attempts, nor
// does the device's next registration, and the messages behind it go
// out. It waits for its expiry and the failure report to its sender.
func TestRetriesExhaustedParkTheMessage(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s, tok := newPair(t, servertest.WithFakeClock(t0), hourlySweep)
	bob := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, bob, false)
	bob.AnswerNext(500, 500, 500, 500, 500, 500)
	id := message.NewID()
	submit(t, s, tok, id, "bob", "stubborn")
	stored := func() (attempts int, parked bool) {
		m, err := s.Store().Message(t.Context(), "alice", id)
		if err != nil {
			t.Fatal(err)
		}
		return m.Attempts, m.Parked
	}
	// 1 attempt + 5 retries, 30 s apart.
	for want := 1; want <= 6; want++ {
		servertest.CheckFor(t, 10*time.Second, func() error {
			if a, _ := stored(); a != want {
				return fmt.Errorf("attempts %d, want %d", a, want)
			}
			if want < 6 && !s.Clock.HasTimerAt(t0.Add(time.Duration(want)*30*time.Second)) {
				return fmt.Errorf("retry %d not scheduled yet", want)
			}
			return nil
		})
		if want < 6 {
			s.Clock.Advance(30 * time.Second)
		}
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if _, parked := stored(); !parked {
			return errors.New("not parked after its budget")
		}
		return nil
	})
	// Parked: neither time nor a registration brings another attempt;
	// the next message goes out.
	s.Clock.Advance(10 * time.Minute)
	mustRegister(t, bob, false)
	next := message.NewID()
	submit(t, s, tok, next, "bob", "the next one")
	waitStatus(t, s, tok, next, "delivered")
	waitIdle(t, s, "bob")
	if a, _ := stored(); a != 6 {
		t.Fatalf("attempts while parked: %d", a)
	}
	if got := bob.Texts(); len(got) != 1 || got[0] != "the next one" {
		t.Fatalf("bob has %q", got)
	}
	if _, st := status(t, s, tok, id); st.Status != "enqueued" {
		t.Fatalf("parked message: %+v, want still enqueued until it expires", st)
	}
	s.Clock.Advance(72 * time.Hour)
	s.Queue().Sweep()
	waitStatus(t, s, tok, id, "expired")
}
