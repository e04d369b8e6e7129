package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/message"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// fakeServer stands in for the HTTPS API: it records every attempt with
// the fake clock's time and answers with what answer returns.
type fakeServer struct {
	clk    *clock.Fake
	mu     sync.Mutex
	calls  []call // guarded by mu
	answer func(n int, req api.SubmitRequest, ctx context.Context) (api.SubmitResponse, error)
}

type call struct {
	ID string
	At time.Time
}

func (f *fakeServer) submit(ctx context.Context, req api.SubmitRequest) (api.SubmitResponse, error) {
	f.mu.Lock()
	f.calls = append(f.calls, call{req.ID, f.clk.Now()})
	n := len(f.calls)
	answer := f.answer
	f.mu.Unlock()
	return answer(n, req, ctx)
}

func (f *fakeServer) attempts() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func unavailable(int, api.SubmitRequest, context.Context) (api.SubmitResponse, error) {
	return api.SubmitResponse{}, &serverError{Status: 503, Code: api.CodeStoreUnavailable, Message: "store unavailable"}
}

func enqueued(clk clock.Clock) func(int, api.SubmitRequest, context.Context) (api.SubmitResponse, error) {
	return func(_ int, req api.SubmitRequest, _ context.Context) (api.SubmitResponse, error) {
		return api.SubmitResponse{ID: req.ID, Status: "enqueued", SubmittedAt: clk.Now(), ExpiresAt: clk.Now().Add(72 * time.Hour)}, nil
	}
}

type notes struct {
	mu     sync.Mutex
	titles []string
	full   []string // "title: body"
}

func (n *notes) Notify(title, body string) error {
	n.mu.Lock()
	n.titles = append(n.titles, title)
	n.full = append(n.full, title+": "+body)
	n.mu.Unlock()
	return nil
}

func (n *notes) list() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.titles...)
}

type rig struct {
	t     *testing.T
	c     *Core
	clk   *clock.Fake
	srv   *fakeServer
	notes *notes
	home  string

	mu     sync.Mutex
	events []Event // guarded by mu
}

// newRig opens a core on a fake clock and a fake server, with a profile
// written as login would, and runs its outbox and sweeper.
func newRig(t *testing.T, mod func(*Settings)) *rig {
	t.Helper()
	home := filepath.Join(t.TempDir(), "alice")
	writeTestProfile(t, home)
	clk := clock.NewFake(t0)
	srv := &fakeServer{clk: clk, answer: unavailable}
	s := DefaultSettings()
	if mod != nil {
		mod(&s)
	}
	r := &rig{t: t, clk: clk, srv: srv, notes: &notes{}, home: home}
	c, err := Open(Options{Home: home, Clock: clk, Settings: &s, Notifier: r.notes, Logf: t.Logf, submitter: srv})
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	evs, stop := c.Subscribe()
	go func() {
		for e := range evs {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.outbox.run(ctx) }()
	go func() { defer wg.Done(); c.sweeper.run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); stop(); c.Close() })
	return r
}

func writeTestProfile(t *testing.T, home string) {
	t.Helper()
	if err := makeHome(home); err != nil {
		t.Fatal(err)
	}
	p := profile{Server: "https://127.0.0.1:1", SIPAddr: "127.0.0.1:1", Domain: "localhost", Account: "alice", Token: "spt_test"}
	b, _ := json.Marshal(p)
	if err := writeFile0600(filepath.Join(home, profileFile), b); err != nil {
		t.Fatal(err)
	}
}

// settle runs the outbox until no attempt is running and a pass at the
// current (fake) time starts nothing: after it, everything the rule allows
// at this instant has happened, and nothing else will until the clock moves
// or a trigger comes.
func (r *rig) settle() {
	r.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ch := r.c.outbox.changed()
		r.c.outbox.mu.Lock()
		running := len(r.c.outbox.inflight)
		r.c.outbox.mu.Unlock()
		if running == 0 {
			n, err := r.c.outbox.pass(context.Background())
			if err != nil {
				r.t.Fatal(err)
			}
			// A pass of the run loop may have started an attempt while
			// ours waited for passMu; then wait for that one too.
			if n == 0 && r.c.outbox.idle() {
				return
			}
			continue
		}
		select {
		case <-ch:
		case <-deadline:
			r.t.Fatal("outbox did not settle")
		}
	}
}

// advance moves the clock in steps of at most step, settling after each.
func (r *rig) advance(d, step time.Duration) {
	r.t.Helper()
	for d > 0 {
		s := min(d, step)
		r.clk.Advance(s)
		r.settle()
		d -= s
	}
}

func (r *rig) send(to, text string) Message {
	r.t.Helper()
	m, err := r.c.Send(context.Background(), to, text)
	if err != nil {
		r.t.Fatal(err)
	}
	r.settle()
	return m
}

func (r *rig) status(id string) row {
	r.t.Helper()
	row, err := r.c.db.outgoing(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return row
}

func (r *rig) eventsOf(kind EventKind) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func offsets(calls []call) []time.Duration {
	var out []time.Duration
	for _, c := range calls {
		out = append(out, c.At.Sub(t0))
	}
	return out
}

func TestRoundIsFiveAttemptsTwelveSecondsApart(t *testing.T) {
	r := newRig(t, nil)
	m := r.send("bob", "hi")
	r.advance(2*time.Hour, 6*time.Second)
	got := offsets(r.srv.attempts())
	want := []time.Duration{0, 12 * time.Second, 24 * time.Second, 36 * time.Second, 48 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("attempts at %v, want %v and then none without a trigger", got, want)
	}
	row := r.status(m.ID)
	if row.Status != message.Sending || row.Attempts != 5 || row.RoundLeft != 0 {
		t.Fatalf("after a failed round: status %s, %d attempts, %d left; want sending, 5, 0", row.Status, row.Attempts, row.RoundLeft)
	}
	if !strings.Contains(row.LastError, "503") {
		t.Fatalf("last error %q does not say what failed", row.LastError)
	}
}

func TestAttemptTimesOutAfterTwelveSeconds(t *testing.T) {
	r := newRig(t, nil)
	// The server never answers: each attempt ends only at its timeout.
	r.srv.answer = func(_ int, _ api.SubmitRequest, ctx context.Context) (api.SubmitResponse, error) {
		<-ctx.Done()
		return api.SubmitResponse{}, ctx.Err()
	}
	m, err := r.c.Send(context.Background(), "bob", "hi")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(r.srv.attempts()) == 1 })
	r.clk.Advance(11 * time.Second)
	if n := len(r.srv.attempts()); n != 1 {
		t.Fatalf("%d attempts before the first timed out", n)
	}
	for i := 2; i <= 5; i++ {
		r.clk.Advance(time.Second)
		waitFor(t, func() bool { return len(r.srv.attempts()) == i })
		r.clk.Advance(11 * time.Second)
	}
	r.clk.Advance(time.Second) // the fifth attempt times out at 60 s
	waitFor(t, func() bool { return r.status(m.ID).LastError != "" && r.c.outbox.idle() })
	r.advance(time.Hour, 10*time.Second)
	got := offsets(r.srv.attempts())
	want := []time.Duration{0, 12 * time.Second, 24 * time.Second, 36 * time.Second, 48 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("attempts at %v, want %v", got, want)
	}
	if le := r.status(m.ID).LastError; !strings.Contains(le, "no answer within 12s") {
		t.Fatalf("last error %q does not name the timeout", le)
	}
}

func TestEachTriggerStartsOneRound(t *testing.T) {
	for _, trigger := range []string{TriggerRegister, TriggerKeepalive, TriggerSend} {
		t.Run(trigger, func(t *testing.T) {
			r := newRig(t, nil)
			m := r.send("bob", "hi")
			r.advance(10*time.Minute, 12*time.Second)
			if n := len(r.srv.attempts()); n != 5 {
				t.Fatalf("%d attempts in the first round", n)
			}
			fire := func() {
				if trigger == TriggerSend {
					// Another message, to someone else, so that only
					// the waiting message's attempts are counted below.
					r.send("carol", "another")
					return
				}
				r.c.Trigger(context.Background(), trigger)
			}
			fire()
			r.settle()
			// A second trigger while the round runs does not stretch it.
			r.advance(30*time.Second, 6*time.Second)
			fire()
			r.advance(time.Hour, 6*time.Second)
			var toBob []time.Duration
			for _, c := range r.srv.attempts() {
				if c.ID == m.ID {
					toBob = append(toBob, c.At.Sub(t0))
				}
			}
			round2 := []time.Duration{600, 612, 624, 636, 648}
			for i := range round2 {
				round2[i] *= time.Second
			}
			want := append([]time.Duration{0, 12 * time.Second, 24 * time.Second, 36 * time.Second, 48 * time.Second}, round2...)
			if fmt.Sprint(toBob) != fmt.Sprint(want) {
				t.Fatalf("attempts at %v, want %v", toBob, want)
			}
			if s := r.status(m.ID); s.Attempts != 10 || s.Status != message.Sending {
				t.Fatalf("stored %d attempts, status %s", s.Attempts, s.Status)
			}
		})
	}
}

func TestTwelveHoursInQueueIsSendError(t *testing.T) {
	r := newRig(t, nil)
	m := r.send("bob", "hi")
	r.advance(time.Minute, 12*time.Second)
	// A trigger every hour starts round after round, as keepalives would
	// while the device is registered but the HTTPS API is down.
	for h := 1; h < 12; h++ {
		r.clk.Set(t0.Add(time.Duration(h) * time.Hour))
		r.c.Trigger(context.Background(), TriggerKeepalive)
		r.advance(time.Minute, 12*time.Second)
	}
	r.clk.Set(t0.Add(12*time.Hour - time.Second))
	r.settle()
	if s := r.status(m.ID); s.Status != message.Sending || s.Attempts != 60 {
		t.Fatalf("just before 12 h: status %s after %d attempts; want sending after 60", s.Status, s.Attempts)
	}
	if len(r.notes.list()) != 0 {
		t.Fatalf("notification before 12 h: %v", r.notes.list())
	}
	r.advance(time.Second, time.Second)
	s := r.status(m.ID)
	if s.Status != message.Error || !strings.Contains(s.LastError, "12h0m0s") {
		t.Fatalf("after 12 h: status %s, last error %q", s.Status, s.LastError)
	}
	if got := r.notes.list(); len(got) != 1 || got[0] != "Send error" {
		t.Fatalf("notifications %v, want one Send error", got)
	}
	waitFor(t, func() bool { return len(r.eventsOf(EventSendError)) == 1 })
	if rows, _ := r.c.db.sending(context.Background()); len(rows) != 0 {
		t.Fatalf("still in the queue: %v", rows)
	}
	before := len(r.srv.attempts())
	r.c.Trigger(context.Background(), TriggerKeepalive)
	r.advance(time.Hour, time.Minute)
	if after := len(r.srv.attempts()); after != before {
		t.Fatalf("attempted again after leaving the queue: %d → %d", before, after)
	}
}

func TestRefusalIsErrorAtOnce(t *testing.T) {
	r := newRig(t, nil)
	r.srv.answer = func(int, api.SubmitRequest, context.Context) (api.SubmitResponse, error) {
		return api.SubmitResponse{}, &serverError{Status: 404, Code: api.CodeUnknownRecipient, Message: "no account named bob"}
	}
	m := r.send("bob", "hi")
	s := r.status(m.ID)
	if s.Status != message.Error || s.Attempts != 1 || !strings.Contains(s.LastError, "no account named bob") {
		t.Fatalf("status %s after %d attempts, last error %q; want error after 1 with the server's reason", s.Status, s.Attempts, s.LastError)
	}
	r.advance(time.Minute, 12*time.Second)
	if n := len(r.srv.attempts()); n != 1 {
		t.Fatalf("%d attempts after a refusal", n)
	}
	if got := r.notes.list(); len(got) != 1 || got[0] != "Send error" {
		t.Fatalf("notifications %v", got)
	}
}

func TestTemporaryOrPermanent(t *testing.T) {
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{&serverError{Status: 400, Code: api.CodeBadRequest}, true},
		{&serverError{Status: 403, Code: api.CodeForbidden}, true},
		{&serverError{Status: 404, Code: api.CodeUnknownRecipient}, true},
		{&serverError{Status: 413, Code: api.CodeBodyTooLarge}, true},
		{&serverError{Status: 422, Code: message.CodeTooLong}, true},
		{&serverError{Status: 429, Code: api.CodeMailboxFull}, true},
		{&serverError{Status: 429, Code: api.CodeRateLimited}, false},
		{&serverError{Status: 401, Code: api.CodeUnauthorized}, true},
		{&serverError{Status: 500}, false},
		{&serverError{Status: 503, Code: api.CodeStoreUnavailable}, false},
		{errors.New("dial tcp: connection refused"), false},
		{context.DeadlineExceeded, false},
	} {
		if got := permanent(tc.err); got != tc.permanent {
			t.Errorf("permanent(%v) = %v", tc.err, got)
		}
	}
}

func TestContactOrderIsKept(t *testing.T) {
	r := newRig(t, nil)
	// The first three attempts fail; then the server accepts.
	ok := enqueued(r.clk)
	r.srv.answer = func(n int, req api.SubmitRequest, ctx context.Context) (api.SubmitResponse, error) {
		if n <= 3 {
			return unavailable(n, req, ctx)
		}
		return ok(n, req, ctx)
	}
	first := r.send("bob", "first")
	second := r.send("bob", "second")
	third := r.send("carol", "to carol")
	r.advance(2*time.Minute, 12*time.Second)
	var order []string
	for _, c := range r.srv.attempts() {
		order = append(order, map[string]string{first.ID: "first", second.ID: "second", third.ID: "carol"}[c.ID])
	}
	// carol's message does not wait for bob's; bob's second only goes
	// after his first was accepted.
	if got := strings.Join(order, ","); got != "first,carol,first,carol,first,second" {
		t.Fatalf("submission order %s", got)
	}
	for _, m := range []Message{first, second, third} {
		if s := r.status(m.ID); s.Status != message.Enqueued {
			t.Fatalf("%s: %s", m.Text, s.Status)
		}
	}
}

func TestSendChecksTheRules(t *testing.T) {
	r := newRig(t, nil)
	_, err := r.c.Send(context.Background(), "bob", strings.Repeat("a", 171))
	if err == nil || err.Error() != "171 characters; the limit is 160" {
		t.Fatalf("171 characters: %v", err)
	}
	if _, err := r.c.Send(context.Background(), "Bob!", "hi"); err == nil {
		t.Fatal("a bad recipient name was accepted")
	}
	if n := len(r.srv.attempts()); n != 0 {
		t.Fatalf("%d attempts for refused messages", n)
	}
}

func TestAttemptIsRecordedBeforeItIsMade(t *testing.T) {
	r := newRig(t, nil)
	var seen row
	r.srv.answer = func(n int, req api.SubmitRequest, ctx context.Context) (api.SubmitResponse, error) {
		var err error
		if seen, err = r.c.db.outgoing(ctx, req.ID); err != nil {
			t.Error(err)
		}
		return unavailable(n, req, ctx)
	}
	r.send("bob", "hi")
	if seen.Attempts != 1 || seen.RoundLeft != 4 || !seen.NextAttempt.Equal(t0.Add(12*time.Second)) {
		t.Fatalf("during the first attempt the store said %d attempts, %d left, next %v", seen.Attempts, seen.RoundLeft, seen.NextAttempt)
	}
}

func TestRestartDoesNotRetryHot(t *testing.T) {
	r := newRig(t, nil)
	m := r.send("bob", "hi")
	r.advance(10*time.Minute, 12*time.Second)
	// A new process on the same profile finds the round spent and waits.
	c2, err := Open(Options{Home: r.home, Clock: r.clk, Settings: ptr(DefaultSettings()), submitter: r.srv, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if n, err := c2.outbox.pass(context.Background()); err != nil || n != 0 {
		t.Fatalf("a reopened outbox started %d attempts (%v) without a trigger", n, err)
	}
	if s := r.status(m.ID); s.Attempts != 5 {
		t.Fatalf("%d attempts", s.Attempts)
	}
}

func ptr[T any](v T) *T { return &v }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
