package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/store/postgres"
	"github.com/sealpost/sealpost/internal/store/postgres/pgtest"
)

// countingStore counts the lease writes of the real store it wraps.
type countingStore struct {
	store.Cluster
	takes atomic.Int64
}

func (c *countingStore) TakeLease(ctx context.Context, b store.Binding, now, until time.Time) (bool, error) {
	c.takes.Add(1)
	return c.Cluster.TakeLease(ctx, b, now, until)
}

// leaseNode is a Node on the shared test database with NATS unreachable:
// what it learns of other nodes, it learns from the store.
type leaseNode struct {
	*Node
	st *countingStore

	mu          sync.Mutex
	regs        map[string]registrar.Binding
	disconnects []string
}

func startLeaseNode(t *testing.T, db *postgres.Store, name string, clk clock.Clock) *leaseNode {
	t.Helper()
	ln := &leaseNode{st: &countingStore{Cluster: db}, regs: map[string]registrar.Binding{}}
	n, err := Start(Options{
		NATSURL: "nats://127.0.0.1:1", // nothing listens: doorbells and announcements are lost
		Node:    name,
		Store:   ln.st,
		Kick:    func(string) {},
		Lookup: func(account string) (registrar.Binding, bool) {
			ln.mu.Lock()
			defer ln.mu.Unlock()
			b, ok := ln.regs[account]
			return b, ok
		},
		Disconnect: func(source string) error {
			ln.mu.Lock()
			ln.disconnects = append(ln.disconnects, source)
			ln.mu.Unlock()
			return nil
		},
		SweepInterval: time.Hour,
		LeaseTTL:      time.Minute,
		Clock:         clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	ln.Node = n
	return ln
}

func (ln *leaseNode) register(account, source string, now time.Time) {
	ln.mu.Lock()
	ln.regs[account] = registrar.Binding{Account: account, Source: source, Expires: now.Add(time.Hour)}
	ln.mu.Unlock()
	ln.Online(account)
}

// TestLeaseIsWrittenOnlyWhenHalfUsed: a pass under a lease with more than
// half its time left writes nothing; past half, the pass renews it; and a
// pass under a kept lease still finds out, from the store alone, that the
// device moved to another node, and drops its connection here.
func TestLeaseIsWrittenOnlyWhenHalfUsed(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, pgtest.NewDatabase(t), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := clock.NewFake(time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC))
	a := startLeaseNode(t, db, "a", clk)
	b := startLeaseNode(t, db, "b", clk)

	a.register("alice", "192.0.2.1:5061", clk.Now())
	if !a.MayDeliver("alice") {
		t.Fatal("node a holds alice's only binding but may not deliver")
	}
	if got := a.st.takes.Load(); got != 1 {
		t.Fatalf("first pass wrote the lease %d times, want 1", got)
	}
	for range 3 {
		if !a.MayDeliver("alice") {
			t.Fatal("node a lost the lease it holds")
		}
	}
	if got := a.st.takes.Load(); got != 1 {
		t.Fatalf("passes under a fresh lease wrote it: %d writes, want 1", got)
	}

	clk.Advance(31 * time.Second) // past half of the 1 min lease
	if !a.MayDeliver("alice") {
		t.Fatal("node a may not deliver after half its lease")
	}
	if got := a.st.takes.Load(); got != 2 {
		t.Fatalf("pass past half the lease wrote it %d times in all, want 2 (a renewal)", got)
	}

	// The device moves to b; NATS is down, so a hears of it only from
	// the store, at its next pass, though its lease is fresh.
	b.register("alice", "192.0.2.2:5061", clk.Now())
	if !b.MayDeliver("alice") {
		t.Fatal("node b holds alice's newest binding but may not deliver")
	}
	if a.MayDeliver("alice") {
		t.Fatal("node a still delivers to alice after she moved to b: both would deliver")
	}
	a.mu.Lock()
	dropped := append([]string(nil), a.disconnects...)
	a.mu.Unlock()
	if len(dropped) != 1 || dropped[0] != "192.0.2.1:5061" {
		t.Fatalf("node a dropped %q, want its old connection 192.0.2.1:5061", dropped)
	}
	if a.MayDeliver("alice") {
		t.Fatal("node a delivers on a dropped connection")
	}
}
