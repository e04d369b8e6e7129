package client

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/message"
)

// The 12 h Send error fires on its own timer: after a failed round and no
// trigger at all, the message becomes Error at 12 h exactly, with its
// notification, without anybody calling the outbox.
func TestSendErrorFiresOnTime(t *testing.T) {
	r := newRig(t, nil)
	m := r.send("bob", "hi")
	r.advance(time.Minute, 12*time.Second) // the first round fails
	deadline := t0.Add(12 * time.Hour)
	waitFor(t, func() bool { return r.clk.HasTimerAt(deadline) })
	r.clk.Set(deadline.Add(-time.Millisecond))
	if s := r.status(m.ID); s.Status != message.Sending {
		t.Fatalf("before 12 h: %s", s.Status)
	}
	r.clk.Set(deadline)
	waitFor(t, func() bool { return r.status(m.ID).Status == message.Error && len(r.eventsOf(EventSendError)) == 1 })
	if got := r.notes.list(); len(got) != 1 || got[0] != "Send error" {
		t.Fatalf("notifications %v, want one Send error", got)
	}
}

// A process that does not run the outbox (history, status) still turns a
// message that waited 12 h into Error when it opens the profile.
func TestSendErrorWithoutRun(t *testing.T) {
	r := newRig(t, nil)
	m := r.send("bob", "hi")
	r.advance(time.Minute, 12*time.Second)
	clk := clock.NewFake(t0.Add(12 * time.Hour))
	n := &notes{}
	c, err := Open(Options{Home: r.home, Clock: clk, Notifier: n, Logf: t.Logf, submitter: r.srv})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Message(context.Background(), m.ID)
	if err != nil || got.Status != message.Error || !strings.Contains(got.LastError, "12h0m0s") {
		t.Fatalf("after 12 h, opened without run: %+v, %v", got, err)
	}
	if l := n.list(); len(l) != 1 || l[0] != "Send error" {
		t.Fatalf("notifications %v", l)
	}
}

// A revoked or expired token is an Error at once, saying to log in: no
// round of five attempts.
func TestRevokedTokenIsErrorAtOnce(t *testing.T) {
	r := newRig(t, nil)
	r.srv.answer = func(int, api.SubmitRequest, context.Context) (api.SubmitResponse, error) {
		return api.SubmitResponse{}, &serverError{Status: 401, Code: api.CodeUnauthorized, Message: "the token is unknown, expired or revoked; log in again"}
	}
	m := r.send("bob", "hi")
	r.advance(5*time.Minute, 12*time.Second)
	s := r.status(m.ID)
	if s.Status != message.Error || s.Attempts != 1 || !strings.Contains(s.LastError, "run sealpost login") {
		t.Fatalf("status %s after %d attempt(s), %q", s.Status, s.Attempts, s.LastError)
	}
}

// Reconnecting to an unreachable SIP server: the first wait is under a
// second, each is at most twice the one before (doubling), none is above
// 30 s, and they are jittered, on the injected clock.
func TestReconnectBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused from now on
	home := filepath.Join(t.TempDir(), "alice")
	writeTestProfile(t, home)
	p, _, _ := loadProfile(home)
	p.SIPAddr = addr
	b, _ := json.Marshal(p)
	if err := writeFile0600(filepath.Join(home, profileFile), b); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(t0)
	c, err := Open(Options{Home: home, Clock: clk, Logf: t.Logf, submitter: &fakeServer{clk: clk, answer: unavailable}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	evs, stop := c.Subscribe()
	defer stop()
	var mu sync.Mutex
	var waits []time.Duration
	go func() {
		for e := range evs {
			if e.Kind != EventOffline {
				continue
			}
			i := strings.LastIndex(e.Detail, "reconnecting in ")
			d, err := time.ParseDuration(e.Detail[i+len("reconnecting in "):])
			if i < 0 || err != nil {
				t.Errorf("offline event %q names no wait", e.Detail)
			}
			mu.Lock()
			waits = append(waits, d)
			mu.Unlock()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.runSession(ctx) }()
	defer func() { cancel(); <-done }()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(waits) }
	const tries = 14
	for i := 1; i <= tries; i++ {
		waitFor(t, func() bool { return count() == i })
		mu.Lock()
		w := waits[i-1]
		mu.Unlock()
		waitFor(t, func() bool { return clk.HasTimerAt(clk.Now().Add(w)) })
		clk.Advance(w)
	}
	mu.Lock()
	defer mu.Unlock()
	if waits[0] >= time.Second || waits[0] < 500*time.Millisecond {
		t.Errorf("first wait %s, want under a second (and at least half of it)", waits[0])
	}
	distinct := map[time.Duration]bool{}
	for i, w := range waits {
		if w > 30*time.Second {
			t.Errorf("wait %d is %s, above the 30 s cap", i, w)
		}
		if i > 0 && w > 4*waits[i-1]+time.Millisecond {
			t.Errorf("wait %d jumped from %s to %s", i, waits[i-1], w)
		}
		if i >= 7 {
			distinct[w] = true
			if w < 15*time.Second {
				t.Errorf("wait %d is %s: once capped, waits stay between 15 and 30 s", i, w)
			}
		}
	}
	if len(distinct) < 2 {
		t.Errorf("capped waits all equal (%v): no jitter", waits[7:])
	}
}
