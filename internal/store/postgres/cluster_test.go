package postgres

import (
	"errors"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/store/postgres/pgtest"
)

// TestLeaseFollowsTheNewestBinding: only the node of the newest binding
// takes the lease; it renews it; a newer binding elsewhere takes it over at
// once; the superseded node can neither renew nor refresh.
func TestLeaseFollowsTheNewestBinding(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := openURL(t, url, Options{}), openURL(t, url, Options{}) // two nodes
	ctx := t.Context()
	now := time.Unix(1_800_000_000, 0)
	later := now.Add(time.Minute)

	onB, err := b.Bind(ctx, "bob.smith", "B", later)
	if err != nil {
		t.Fatal(err)
	}
	take := func(s *Store, bd store.Binding, at time.Time) bool {
		t.Helper()
		ok, err := s.TakeLease(ctx, bd, at, at.Add(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// A node without the binding cannot take the lease.
	if take(a, store.Binding{Account: "bob.smith", Node: "A", Epoch: onB.Epoch}, now) {
		t.Fatal("node A took the lease of a device bound to B")
	}
	if !take(b, onB, now) {
		t.Fatal("B, holding the binding, did not get the free lease")
	}
	if !take(b, onB, now.Add(10*time.Second)) {
		t.Fatal("B could not renew its own lease")
	}
	// The device moves to C: C's epoch is newer and takes the lease at
	// once, though B's has not expired.
	onC, err := a.Bind(ctx, "bob.smith", "C", later)
	if err != nil {
		t.Fatal(err)
	}
	if onC.Epoch <= onB.Epoch {
		t.Fatalf("the later binding has epoch %d, not above %d", onC.Epoch, onB.Epoch)
	}
	if !take(a, onC, now.Add(11*time.Second)) {
		t.Fatal("C, holding the newest binding, did not take over the lease")
	}
	if take(b, onB, now.Add(12*time.Second)) {
		t.Fatal("B renewed a lease under a superseded binding")
	}
	if err := b.RefreshBinding(ctx, store.Binding{Account: "bob.smith", Node: "B", Epoch: onB.Epoch, ExpiresAt: later}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refreshing a superseded binding: %v, want ErrNotFound", err)
	}
	got, err := b.Binding(ctx, "bob.smith")
	if err != nil || got.Node != "C" || got.Epoch != onC.Epoch || !got.ExpiresAt.Equal(later) {
		t.Fatalf("Binding = %+v, %v; want C's epoch %d until %v", got, err, onC.Epoch, later)
	}
	// Unbind of the superseded binding leaves C's alone.
	if err := b.Unbind(ctx, onB); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Binding(ctx, "bob.smith"); err != nil || got.Node != "C" {
		t.Fatalf("after B's stale Unbind: %+v, %v", got, err)
	}
}

// TestClearNodeRemovesOnlyItsOwn: a node at start clears its stale
// bindings and leases, and nobody else's.
func TestClearNodeRemovesOnlyItsOwn(t *testing.T) {
	s := openURL(t, pgtest.NewDatabase(t), Options{})
	ctx := t.Context()
	now := time.Unix(1_800_000_000, 0)
	var onB store.Binding
	for _, acct := range []string{"a", "b", "c"} {
		bd, err := s.Bind(ctx, acct, "B", now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.TakeLease(ctx, bd, now, now.Add(time.Hour)); !ok || err != nil {
			t.Fatalf("TakeLease = %v, %v", ok, err)
		}
		onB = bd
	}
	onC, err := s.Bind(ctx, "d", "C", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.TakeLease(ctx, onC, now, now.Add(time.Hour)); !ok || err != nil {
		t.Fatalf("TakeLease = %v, %v", ok, err)
	}
	n, err := s.ClearNode(ctx, "B")
	if err != nil || n != 3 {
		t.Fatalf("ClearNode = %d, %v; want 3", n, err)
	}
	if _, err := s.Binding(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("B's binding survived ClearNode: %v", err)
	}
	if ok, _ := s.TakeLease(ctx, onB, now, now.Add(time.Hour)); ok {
		t.Fatal("a lease was taken under a cleared binding")
	}
	if got, err := s.Binding(ctx, "d"); err != nil || got.Node != "C" {
		t.Fatalf("C's binding: %+v, %v", got, err)
	}
	if ok, err := s.TakeLease(ctx, onC, now, now.Add(time.Hour)); !ok || err != nil {
		t.Fatalf("C's lease was lost to B's ClearNode: %v, %v", ok, err)
	}
}
