package clock

import (
	"testing"
	"time"
)

func TestFakeFiresInOrderAndChains(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewFake(t0)
	var fired []time.Duration
	c.AfterFunc(20*time.Second, func() { fired = append(fired, c.Now().Sub(t0)) })
	c.AfterFunc(10*time.Second, func() {
		fired = append(fired, c.Now().Sub(t0))
		// A timer scheduled by a timer fires in the same Advance.
		c.AfterFunc(5*time.Second, func() { fired = append(fired, c.Now().Sub(t0)) })
	})
	stopped := c.AfterFunc(12*time.Second, func() { t.Error("stopped timer fired") })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop should succeed once")
	}
	if !c.HasTimerAt(t0.Add(20 * time.Second)) {
		t.Fatal("HasTimerAt missed a pending timer")
	}
	c.Advance(19 * time.Second)
	want := []time.Duration{10 * time.Second, 15 * time.Second}
	if len(fired) != 2 || fired[0] != want[0] || fired[1] != want[1] {
		t.Fatalf("fired %v, want %v", fired, want)
	}
	c.Advance(time.Second)
	if len(fired) != 3 || fired[2] != 20*time.Second || c.Pending() != 0 {
		t.Fatalf("fired %v, pending %d", fired, c.Pending())
	}
	if !c.Now().Equal(t0.Add(20 * time.Second)) {
		t.Fatalf("now %v", c.Now())
	}
}
