package loginguard

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sealpost/sealpost/internal/clock"
)

func newGuard(t *testing.T) (*Guard, *clock.Fake, *bytes.Buffer) {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	var logs bytes.Buffer
	return New(Settings{}, clk, slog.New(slog.NewTextHandler(&logs, nil))), clk, &logs
}

// try reserves and reports a verdict; it returns whether a check happened.
func try(g *Guard, account, source string, right bool) bool {
	at, _ := g.Reserve(account, source, "test")
	if at == nil {
		return false
	}
	at.Done(right)
	return true
}

func TestAddressIsSpacedOutAfterFreeFailures(t *testing.T) {
	g, clk, _ := newGuard(t)
	for i := 0; i < DefaultAddressFreeFailures; i++ {
		if !try(g, "carol", "192.0.2.1:5000", false) {
			t.Fatalf("free failure %d limited", i+1)
		}
	}
	at, wait := g.Reserve("carol", "192.0.2.1:5001", "test")
	if at != nil || wait != DefaultFirstDelay {
		t.Fatalf("after the free failures: attempt %v, wait %v; want limited for %v", at, wait, DefaultFirstDelay)
	}
	// Progressively slower: 2 s, 4 s, 8 s ... up to the cap.
	for _, want := range []time.Duration{2, 4, 8, 16} {
		clk.Advance(want * time.Second / 2)
		if try(g, "carol", "192.0.2.1", false) {
			t.Fatalf("admitted halfway through a %v wait", want*time.Second)
		}
		clk.Advance(want * time.Second / 2)
		if !try(g, "carol", "192.0.2.1", false) {
			t.Fatalf("not admitted after a %v wait", want*time.Second)
		}
	}
	// The right password from an address that has not failed still works.
	if !try(g, "carol", "198.51.100.7", true) {
		t.Fatal("clean address limited")
	}
	// Another account from the guessing address is not limited.
	if !try(g, "dave", "192.0.2.1", false) {
		t.Fatal("other account limited")
	}
	// After ForgetAfter of quiet the pair starts over.
	clk.Advance(DefaultForgetAfter)
	for i := 0; i < DefaultAddressFreeFailures; i++ {
		if !try(g, "carol", "192.0.2.1", false) {
			t.Fatalf("after forgetting: failure %d limited", i+1)
		}
	}
}

func TestReservationCountsBeforeTheCheck(t *testing.T) {
	g, _, _ := newGuard(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var admitted []*Attempt
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if at, _ := g.Reserve("carol", "192.0.2.1", "test"); at != nil {
				mu.Lock()
				admitted = append(admitted, at)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(admitted) != DefaultAddressFreeFailures {
		t.Fatalf("200 concurrent reservations, none finished: %d admitted, want %d", len(admitted), DefaultAddressFreeFailures)
	}
	for _, at := range admitted {
		at.Done(false)
	}
	if n := counterValue(t, g, "address"); n != 200-DefaultAddressFreeFailures {
		t.Fatalf("limited counted %v", n)
	}
}

func TestSuccessClearsThePair(t *testing.T) {
	g, _, _ := newGuard(t)
	for i := 0; i < DefaultAddressFreeFailures-1; i++ {
		try(g, "carol", "192.0.2.1", false)
	}
	try(g, "carol", "192.0.2.1", true)
	for i := 0; i < DefaultAddressFreeFailures; i++ {
		if !try(g, "carol", "192.0.2.1", false) {
			t.Fatalf("after a success, failure %d limited", i+1)
		}
	}
}

func TestManyAddressesSlowTheAccountButNotTheRealUser(t *testing.T) {
	g, clk, logs := newGuard(t)
	// The real user logged in from home before the attack.
	try(g, "carol", "203.0.113.5", true)
	// A botnet: each address guesses once.
	checks := 0
	for i := 0; i < 2000; i++ {
		if try(g, "carol", "10.0."+itoa(i/250)+"."+itoa(i%250), false) {
			checks++
		}
		if i%100 == 99 {
			clk.Advance(3 * time.Second) // 2,000 guesses in a minute
		}
	}
	if checks > DefaultAccountFreeFailures+10 {
		t.Fatalf("2,000 guesses from 2,000 addresses in a minute: %d checks", checks)
	}
	// Home is known good: not slowed by the account's lanes.
	if !try(g, "carol", "203.0.113.5", true) {
		t.Fatal("known-good address limited during the attack")
	}
	// A new address is slowed, never locked: it gets in within the cap.
	at, wait := g.Reserve("carol", "198.51.100.9", "test")
	if at == nil {
		if wait > DefaultMaxAccountDelay {
			t.Fatalf("new address told to wait %v", wait)
		}
		clk.Advance(wait)
		at, _ = g.Reserve("carol", "198.51.100.9", "test")
	}
	if at == nil {
		t.Fatal("new address still limited after its wait")
	}
	at.Done(true)
	if n := strings.Count(logs.String(), "account is being guessed"); n != 1 {
		t.Fatalf("%d log lines for one episode:\n%s", n, logs)
	}
}

func TestOneLogLinePerEpisode(t *testing.T) {
	g, _, logs := newGuard(t)
	for i := 0; i < 1000; i++ {
		try(g, "carol", "192.0.2.1", false)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Fatalf("%d log lines for 1,000 guesses:\n%s", n, logs)
	}
}

func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:5061":           "192.0.2.1",
		"192.0.2.1":                "192.0.2.1",
		"[2001:db8:1:2:3::4]:5061": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::]:1":  "2001:db8:1:2::/64",
		"[::ffff:192.0.2.1]:80":    "192.0.2.1",
		"not an address":           "not an address",
	} {
		if got := SourceKey(in); got != want {
			t.Errorf("SourceKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func counterValue(t *testing.T, g *Guard, scope string) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.limited.WithLabelValues("test", scope).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestKnownAddressesKeepTheLatestPerAccount(t *testing.T) {
	g, clk, _ := newGuard(t)
	addr := func(i int) string { return "203.0.113." + itoa(i) }
	// As many addresses as an account remembers, a second apart; the
	// first logs in again later, so the second is now the oldest.
	for i := 0; i < maxKnownPerAcount; i++ {
		try(g, "carol", addr(i), true)
		clk.Advance(time.Second)
	}
	try(g, "carol", addr(0), true)
	try(g, "carol", addr(maxKnownPerAcount), true) // pushes out addr(1)
	for i := 0; i < 2000; i++ {
		try(g, "carol", "10.0."+itoa(i/250)+"."+itoa(i%250), false)
	}
	if at, _ := g.Reserve("carol", addr(1), "test"); at != nil {
		t.Fatal("the oldest address was still known good after newer ones took its place")
	}
	for _, i := range []int{0, 2, maxKnownPerAcount - 1, maxKnownPerAcount} {
		at, wait := g.Reserve("carol", addr(i), "test")
		if at == nil {
			t.Fatalf("%s, known good, told to wait %v during the attack", addr(i), wait)
		}
		at.Done(false)
	}
}
