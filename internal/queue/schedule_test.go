package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// restart replaces f's queue with a new one on the same store and clock,
// as a new process on the same data folder would be; change adjusts its
// options first. The old queue is stopped first.
func (f *fixture) restart(t *testing.T, change func(*Options)) {
	t.Helper()
	f.q.Stop()
	o := f.q.Options()
	if change != nil {
		change(&o)
	}
	f.q = New(o)
	f.q.Start()
	t.Cleanup(f.q.Stop)
}

func (f *fixture) message(t *testing.T, id string) store.Message {
	t.Helper()
	m, err := f.store.Message(context.Background(), "alice", id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// idle waits until no run is under way for bob.
func (f *fixture) idle(t *testing.T) {
	t.Helper()
	checkFor(t, func() error {
		if f.q.Busy("bob") {
			return errors.New("a run for bob is under way")
		}
		return nil
	})
}

func (f *fixture) triesOf(text string) int {
	_, attempts, _ := f.sender.snapshot()
	n := 0
	for _, a := range attempts {
		if a == text {
			n++
		}
	}
	return n
}

// The retry schedule is read back from the store by a new queue on the
// same store and clock: the attempt count goes on from where it was, a
// message is not tried before its next attempt even though the device is
// reachable (as it is for a node taking over with the binding in a shared
// store), and a parked message stays parked.
func TestScheduleSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	f.sender.fail["stubborn"] = 100
	// Sweeps only by hand: the clock moves by days.
	daily := func(o *Options) { o.SweepInterval = 100 * time.Hour }
	f.restart(t, daily)
	f.goOnline("bob", false)
	id := f.submit(t, "stubborn")
	checkFor(t, func() error {
		if m := f.message(t, id); m.Attempts != 1 || m.LastError == "" {
			return fmt.Errorf("first failure not recorded: %+v", m)
		}
		return nil
	})
	f.idle(t)
	if m := f.message(t, id); !m.NextAttempt.Equal(t0.Add(30 * time.Second)) {
		t.Fatalf("next attempt %v, want %v", m.NextAttempt, t0.Add(30*time.Second))
	}

	for round := 2; round <= 6; round++ {
		f.restart(t, daily)
		// Not due yet: a kick (a submission, a sweep) tries nothing.
		f.clock.Advance(29 * time.Second)
		f.q.Kick("bob")
		f.idle(t)
		if n := f.triesOf("stubborn"); n != round-1 {
			t.Fatalf("round %d: %d tries before the next attempt was due, want %d", round, n, round-1)
		}
		f.clock.Advance(time.Second)
		f.q.Kick("bob")
		checkFor(t, func() error {
			if m := f.message(t, id); m.Attempts != round || f.triesOf("stubborn") != round {
				return fmt.Errorf("round %d: attempts %d, tries %d", round, m.Attempts, f.triesOf("stubborn"))
			}
			return nil
		})
		f.idle(t)
	}
	if m := f.message(t, id); !m.Parked || m.Status != message.Enqueued {
		t.Fatalf("after %d failed attempts: %+v, want parked and enqueued", 1+f.q.o.Retries, m)
	}
	// Parked is read back too: neither time nor a registration of the
	// device brings another try; a later message goes out.
	f.restart(t, daily)
	f.clock.Advance(time.Hour)
	f.goOnline("bob", false)
	f.submit(t, "later")
	checkFor(t, func() error {
		if d, _, _ := f.sender.snapshot(); !slices.Contains(d, "later") {
			return fmt.Errorf("delivered %q", d)
		}
		return nil
	})
	f.idle(t)
	if n := f.triesOf("stubborn"); n != 6 {
		t.Fatalf("a parked message was tried again after a restart: %d tries", n)
	}
	// It waits for expiry, and its sender gets the failure report.
	f.clock.Advance(72 * time.Hour)
	f.q.Sweep()
	if m := f.message(t, id); m.Status != message.Expired {
		t.Fatalf("parked message after 72 h: %s", m.Status)
	}
	reports, err := f.store.PendingReports(context.Background(), "alice", 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(reports, func(r store.Report) bool { return r.MessageID == id && r.Status == message.Expired }) {
		t.Fatalf("no failure report for the parked message: %+v", reports)
	}
}

// connError is a failure a Sender names "connection".
type connError struct{}

func (connError) Error() string  { return "connection lost" }
func (connError) Reason() string { return "connection" }

// droppingSender is a device that drops its connection whenever one
// particular message arrives: that one and every MESSAGE put on the
// connection after it fail, and nothing can be sent until the device
// registers again (up).
type droppingSender struct {
	fakeSender
	poison  string
	dropped bool // guarded by fakeSender.mu
}

func (d *droppingSender) StartMessage(_ context.Context, _ registrar.Binding, m Delivery) (func() error, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attempts = append(d.attempts, m.Text)
	if m.Text == d.poison {
		d.dropped = true
	}
	if d.dropped {
		// On the wire before the drop was noticed: it fails with it.
		return func() error { return connError{} }, nil
	}
	d.delivered = append(d.delivered, m.Text)
	return func() error { return nil }, nil
}

func (d *droppingSender) up() {
	d.mu.Lock()
	d.dropped = false
	d.mu.Unlock()
}

// A poison message, whose delivery drops the device's connection every
// time, uses up one budget of attempts across the device's registrations
// and is then parked; the messages on the wire behind it are not charged
// for its failures, and go out at the next registration.
func TestPoisonMessageParkedAndTheNextDelivered(t *testing.T) {
	f := newFixture(t)
	ds := &droppingSender{poison: "poison"}
	f.restart(t, func(o *Options) { o.Sender = ds })
	f.sender = &ds.fakeSender
	var ids []string
	for _, text := range []string{"before", "poison", "after 1", "after 2"} {
		ids = append(ids, f.submit(t, text))
	}
	budget := 1 + f.q.o.Retries
	// The first drop leaves "poison", "after 1" and "after 2" unanswered:
	// which one the device failed on is unknown, so none is charged and
	// the next passes put one MESSAGE at a time on the wire; from then on
	// each drop is the poison's own.
	for try := 1; try <= budget+1; try++ {
		ds.up()
		f.goOnline("bob", false) // the device registers again
		checkFor(t, func() error {
			if n := f.triesOf("poison"); n != try {
				return fmt.Errorf("poison tried %d times, want %d", n, try)
			}
			return nil
		})
		f.idle(t)
		if m := f.message(t, ids[1]); m.Attempts != try-1 {
			t.Fatalf("poison attempts %d after %d tries (the first uncharged)", m.Attempts, try)
		}
	}
	poison := f.message(t, ids[1])
	if !poison.Parked || poison.LastError == "" {
		t.Fatalf("poison after its budget: %+v, want parked with its error", poison)
	}
	for _, id := range ids[2:] {
		if m := f.message(t, id); m.Attempts > 1 || m.Parked {
			t.Fatalf("a message behind the poison was charged for its failures: %+v", m)
		}
	}
	ds.up()
	f.goOnline("bob", false)
	checkFor(t, func() error {
		for _, id := range []string{ids[0], ids[2], ids[3]} {
			if m := f.message(t, id); m.Status != message.Delivered {
				return fmt.Errorf("message %s: %s", id, m.Status)
			}
		}
		return nil
	})
	f.idle(t)
	if n := f.triesOf("poison"); n != budget+1 {
		t.Fatalf("poison tried %d times, want its budget of %d and the uncharged first", n, budget)
	}
	if d, _, _ := ds.snapshot(); fmt.Sprint(d) != "[before after 1 after 2]" {
		t.Fatalf("delivered %q", d)
	}
}

// stallingSender is a device on two connections: on "old" it has stopped
// answering (every wait lasts until its context ends), on "new" it takes
// every message.
type stallingSender struct {
	fakeSender
	onOld []string // texts put on the old connection; guarded by fakeSender.mu
}

func (s *stallingSender) StartMessage(ctx context.Context, b registrar.Binding, d Delivery) (func() error, error) {
	if b.Source == "old" {
		s.mu.Lock()
		s.onOld = append(s.onOld, d.Text)
		s.mu.Unlock()
		return func() error {
			<-ctx.Done()
			return ctx.Err()
		}, nil
	}
	err := s.answer(d)
	return func() error { return err }, nil
}

// Roaming: a registration on a new connection abandons the pass stalled on
// the old one at once, without waiting for AttemptTimeout: its messages
// are neither delivered nor charged, no retry wait is imposed, and they
// all go out on the new connection. The fake clock never moves and the
// attempt timeout is an hour, so only the abandonment can deliver them.
func TestRoamingAbandonsTheStalledConnection(t *testing.T) {
	f := newFixture(t)
	ss := &stallingSender{}
	f.restart(t, func(o *Options) { o.Sender = ss; o.AttemptTimeout = time.Hour })
	f.sender = &ss.fakeSender
	var ids []string
	for i := range 3 {
		ids = append(ids, f.submit(t, fmt.Sprintf("m%d", i)))
	}
	f.mu.Lock()
	f.online["bob"] = registrar.Binding{Account: "bob", Source: "old"}
	f.mu.Unlock()
	f.q.Online("bob")
	checkFor(t, func() error {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if len(ss.onOld) != 3 {
			return fmt.Errorf("on the old connection: %q", ss.onOld)
		}
		return nil
	})
	f.mu.Lock()
	f.online["bob"] = registrar.Binding{Account: "bob", Source: "new"}
	f.mu.Unlock()
	f.q.Online("bob")
	checkFor(t, func() error {
		if d, _, _ := ss.snapshot(); fmt.Sprint(d) != "[m0 m1 m2]" {
			return fmt.Errorf("delivered on the new connection: %q", d)
		}
		return nil
	})
	for _, id := range ids {
		checkFor(t, func() error {
			if m := f.message(t, id); m.Status != message.Delivered {
				return fmt.Errorf("message %s: %s", id, m.Status)
			}
			return nil
		})
		if m := f.message(t, id); m.Attempts != 1 || m.LastError != "" {
			t.Errorf("message %s charged for the abandoned connection: attempts %d, error %q", id, m.Attempts, m.LastError)
		}
	}
	if !f.clock.Now().Equal(t0) {
		t.Fatal("the clock moved")
	}
}

// A connection that closes under a pass ends it at once: what was on the
// wire failed; with three unanswered, which one the device failed on is
// unknown, so all are put back untouched (the next passes send one at a
// time: TestPoisonMessageParkedAndTheNextDelivered).
func TestClosedConnectionEndsThePass(t *testing.T) {
	f := newFixture(t)
	ss := &stallingSender{}
	f.restart(t, func(o *Options) { o.Sender = ss; o.AttemptTimeout = time.Hour })
	var ids []string
	for i := range 3 {
		ids = append(ids, f.submit(t, fmt.Sprintf("m%d", i)))
	}
	f.mu.Lock()
	f.online["bob"] = registrar.Binding{Account: "bob", Source: "old"}
	f.mu.Unlock()
	f.q.Online("bob")
	checkFor(t, func() error {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if len(ss.onOld) != 3 {
			return fmt.Errorf("on the connection: %q", ss.onOld)
		}
		return nil
	})
	f.q.Disconnected("bob", "elsewhere") // not its connection: nothing happens
	f.q.Disconnected("bob", "old")
	f.idle(t)
	for _, id := range ids {
		if m := f.message(t, id); m.Attempts != 0 || m.LastError != "" || m.Parked {
			t.Fatalf("on the wire when it closed: %+v, want put back", m)
		}
	}
}

// heldSender holds every answer until release is closed, and counts how
// often each text went out.
type heldSender struct {
	fakeSender
	release chan struct{}
	onWire  int // MESSAGEs started and not answered; guarded by fakeSender.mu
}

func (h *heldSender) StartMessage(ctx context.Context, b registrar.Binding, d Delivery) (func() error, error) {
	h.mu.Lock()
	h.onWire++
	h.mu.Unlock()
	return func() error {
		defer func() {
			h.mu.Lock()
			h.onWire--
			h.mu.Unlock()
		}()
		select {
		case <-h.release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return h.answer(d)
	}, nil
}

func (h *heldSender) wire() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.onWire
}

// A clean stop in the middle of a drain sends nothing new, waits for the
// answers of what is on the wire and records every 2xx, and puts back what
// it listed but did not send: after a restart the device gets every other
// message exactly once, and none it already took.
func TestStopRecordsEveryAnswerAndResendsNothing(t *testing.T) {
	f := newFixture(t)
	hs := &heldSender{release: make(chan struct{})}
	f.restart(t, func(o *Options) { o.Sender = hs; o.DrainTimeout = time.Minute })
	const n = window + 20
	var ids []string
	for i := range n {
		ids = append(ids, f.submit(t, fmt.Sprintf("m%03d", i)))
	}
	f.goOnline("bob", false)
	checkFor(t, func() error {
		if w := hs.wire(); w < perSender {
			return fmt.Errorf("%d on the wire", w)
		}
		return nil
	})
	stopped := make(chan struct{})
	go func() {
		f.q.Stop()
		close(stopped)
	}()
	checkFor(t, func() error {
		if !f.q.isDraining() {
			return errors.New("Stop has not begun")
		}
		return nil
	})
	select {
	case <-stopped:
		t.Fatal("Stop returned with MESSAGEs unanswered on the wire")
	default:
	}
	close(hs.release) // the answers arrive during the stop
	<-stopped
	first, _, _ := hs.snapshot()
	if len(first) == 0 || len(first) == n {
		t.Fatalf("%d of %d delivered before the stop; the test needs some, not all", len(first), n)
	}
	for _, id := range ids {
		m := f.message(t, id)
		delivered := slices.Contains(first, "m"+fmt.Sprintf("%03d", slices.Index(ids, id)))
		if delivered != (m.Status == message.Delivered) {
			t.Fatalf("message %s: the device took it: %v, store says %s", id, delivered, m.Status)
		}
		if !delivered && m.Attempts != 0 {
			t.Fatalf("message %s never sent but left with %d attempts", id, m.Attempts)
		}
	}

	hs2 := &heldSender{release: make(chan struct{})}
	close(hs2.release)
	f.restart(t, func(o *Options) { o.Sender = hs2 })
	f.goOnline("bob", false)
	checkFor(t, func() error {
		if d, _, _ := hs2.snapshot(); len(first)+len(d) != n {
			return fmt.Errorf("%d + %d delivered of %d", len(first), len(d), n)
		}
		return nil
	})
	second, _, _ := hs2.snapshot()
	for _, text := range second {
		if slices.Contains(first, text) {
			t.Fatalf("%s sent again after a clean stop", text)
		}
	}
}

// A MESSAGE still unanswered when the drain time is up does not hold the
// stop: Stop returns, the message stays enqueued, and it goes out again.
func TestStopIsBounded(t *testing.T) {
	f := newFixture(t)
	hs := &heldSender{release: make(chan struct{})} // never released
	f.restart(t, func(o *Options) { o.Sender = hs; o.DrainTimeout = 50 * time.Millisecond; o.AttemptTimeout = time.Hour })
	f.goOnline("bob", false)
	id := f.submit(t, "unanswered")
	checkFor(t, func() error {
		if hs.wire() != 1 {
			return errors.New("not on the wire yet")
		}
		return nil
	})
	f.q.Stop()
	if m := f.message(t, id); m.Status != message.Enqueued || m.Parked || m.LastError != "" {
		t.Fatalf("after a stop past its drain time: %+v", m)
	}
	f.restart(t, func(o *Options) { o.Sender = f.sender })
	f.goOnline("bob", false)
	checkFor(t, func() error {
		if m := f.message(t, id); m.Status != message.Delivered {
			return fmt.Errorf("after the restart: %s", m.Status)
		}
		return nil
	})
}

// timeoutError is a failure a Sender names "timeout".
type timeoutError struct{}

func (timeoutError) Error() string  { return "no answer" }
func (timeoutError) Reason() string { return "timeout" }

// silentSender is a device out of reach while still registered: every
// MESSAGE goes on the wire and gets no answer.
type silentSender struct{ fakeSender }

func (s *silentSender) StartMessage(_ context.Context, _ registrar.Binding, d Delivery) (func() error, error) {
	s.mu.Lock()
	s.attempts = append(s.attempts, d.Text)
	s.mu.Unlock()
	return func() error { return timeoutError{} }, nil
}

// A device out of reach while still registered (a phone in a tunnel) gets
// its retries, but its message is charged one attempt for the whole
// registration, not one per retry: being unreachable does not use up a
// message's budget. Each registration that ends the same way costs one.
func TestUnansweredTriesCountOncePerRegistration(t *testing.T) {
	f := newFixture(t)
	ss := &silentSender{}
	f.restart(t, func(o *Options) { o.Sender = ss; o.SweepInterval = 100 * time.Hour })
	f.sender = &ss.fakeSender
	id := f.submit(t, "into the tunnel")
	for registration := 1; registration <= 2; registration++ {
		f.goOnline("bob", false)
		start := f.triesOf("into the tunnel")
		for retry := 0; retry <= f.q.o.Retries; retry++ {
			checkFor(t, func() error {
				if n := f.triesOf("into the tunnel"); n != start+retry+1 {
					return fmt.Errorf("registration %d: %d tries, want %d", registration, n, start+retry+1)
				}
				if f.q.Busy("bob") {
					return errors.New("run going")
				}
				return nil
			})
			if retry < f.q.o.Retries {
				checkFor(t, func() error {
					if !f.clock.HasTimerAt(f.clock.Now().Add(30 * time.Second)) {
						return errors.New("retry not scheduled")
					}
					return nil
				})
				f.clock.Advance(30 * time.Second)
			}
		}
		// Retries+1 failed passes: the account waits for the next
		// registration; the message was charged once.
		f.clock.Advance(time.Hour)
		f.idle(t)
		if n := f.triesOf("into the tunnel"); n != registration*(1+f.q.o.Retries) {
			t.Fatalf("registration %d: %d tries, want %d", registration, n, registration*(1+f.q.o.Retries))
		}
		if m := f.message(t, id); m.Attempts != registration || m.Parked || m.LastError == "" {
			t.Fatalf("after registration %d out of reach: %+v, want %d attempts charged, not parked", registration, m, registration)
		}
	}
}
