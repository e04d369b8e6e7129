package registrar

import (
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
)

func TestBindingLifeCycle(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := New(clk)
	var online []string
	r.OnOnline = func(a string) { online = append(online, a) }
	var disconnected []string
	r.OnDisconnect = func(a, source string) { disconnected = append(disconnected, a+"@"+source) }

	r.Register(Binding{Account: "bob", Source: "1.1.1.1:1"}, 600*time.Second)
	if b, ok := r.Lookup("bob"); !ok || b.Source != "1.1.1.1:1" || !b.Expires.Equal(clk.Now().Add(600*time.Second)) {
		t.Fatalf("lookup: %+v %v", b, ok)
	}
	if a, ok := r.AccountOn("1.1.1.1:1"); !ok || a != "bob" {
		t.Fatalf("account on: %q %v", a, ok)
	}
	// Refresh before expiry keeps it alive past the first deadline.
	clk.Advance(500 * time.Second)
	r.Register(Binding{Account: "bob", Source: "1.1.1.1:1"}, 600*time.Second)
	clk.Advance(200 * time.Second)
	if _, ok := r.Lookup("bob"); !ok {
		t.Fatal("refreshed binding expired")
	}
	clk.Advance(400 * time.Second)
	if _, ok := r.Lookup("bob"); ok {
		t.Fatal("binding outlived its expiry")
	}
	if len(online) != 2 {
		t.Fatalf("online calls: %v", online)
	}

	// A new device replaces the old one; the old connection closing later
	// does not remove the new binding.
	r.Register(Binding{Account: "bob", Source: "1.1.1.1:1"}, time.Hour)
	if old, replaced := r.Register(Binding{Account: "bob", Source: "2.2.2.2:2"}, time.Hour); !replaced || old.Source != "1.1.1.1:1" {
		t.Fatalf("replace: %+v %v", old, replaced)
	}
	r.ConnectionClosed("1.1.1.1:1")
	if b, ok := r.Lookup("bob"); !ok || b.Source != "2.2.2.2:2" {
		t.Fatalf("after old connection closed: %+v %v", b, ok)
	}
	r.ConnectionClosed("2.2.2.2:2")
	if _, ok := r.Lookup("bob"); ok || r.Len() != 0 {
		t.Fatal("binding survived its connection")
	}
	// Only the closing of a bound connection is reported: the replaced
	// one's was not.
	if len(disconnected) != 1 || disconnected[0] != "bob@2.2.2.2:2" {
		t.Fatalf("disconnects reported: %v", disconnected)
	}

	// Un-register only from the bound connection.
	r.Register(Binding{Account: "bob", Source: "3.3.3.3:3"}, time.Hour)
	r.Unregister("bob", "9.9.9.9:9")
	if _, ok := r.Lookup("bob"); !ok {
		t.Fatal("unregister from another connection removed the binding")
	}
	r.Unregister("bob", "3.3.3.3:3")
	if _, ok := r.Lookup("bob"); ok {
		t.Fatal("unregister did not remove the binding")
	}
	if clk.Pending() != 0 {
		t.Fatalf("%d timers left behind", clk.Pending())
	}
}

// TestOfflineSaysWhy: every end of a binding is reported once to
// OnOffline with its reason; a replacement by the same account is not an
// end.
func TestOfflineSaysWhy(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := New(clk)
	var got []string
	r.OnOffline = func(b Binding, reason string) { got = append(got, b.Account+": "+reason) }

	r.Register(Binding{Account: "a", Source: "s1"}, time.Minute)
	r.Register(Binding{Account: "a", Source: "s2"}, time.Minute) // replaced: still online
	r.Unregister("a", "s2")
	r.Register(Binding{Account: "b", Source: "s3"}, time.Minute)
	r.ConnectionClosed("s3")
	r.Register(Binding{Account: "c", Source: "s4"}, time.Minute)
	clk.Advance(time.Minute)
	r.Register(Binding{Account: "d", Source: "s5"}, time.Minute)
	if b, ok := r.Remove("d"); !ok || b.Source != "s5" {
		t.Fatalf("Remove: %+v %v", b, ok)
	}
	if _, ok := r.Remove("d"); ok {
		t.Fatal("Remove of an account not online reported a binding")
	}
	want := []string{"a: unregistered", "b: connection closed", "c: registration expired", "d: account deleted"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("offline calls: %q, want %q", got, want)
	}
	if r.Len() != 0 {
		t.Fatalf("%d bindings left", r.Len())
	}
}
