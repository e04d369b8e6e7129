package apiserver

import (
	"net"
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
)

// Login failures allowed per account and per client address within
// failureWindow; past either, POST /v1/tokens answers 429 rate_limited
// until the window has passed. Ten tries in ten minutes per account stop
// online password guessing without locking out a person who mistypes; an
// address gets more, since a whole office may share one behind NAT.
const (
	maxAccountFailures = 10
	maxAddressFailures = 100
	failureWindow      = 10 * time.Minute
)

// failureLimiter counts failed logins by key (an account name, or a client
// IP). It is kept in memory: a restart forgives, which is acceptable for a
// limit meant to slow guessing down, not to lock accounts.
type failureLimiter struct {
	clock clock.Clock
	mu    sync.Mutex
	seen  map[string]*failures // guarded by mu
}

type failures struct {
	count int
	since time.Time // start of the current window
}

func newFailureLimiter(c clock.Clock) *failureLimiter {
	return &failureLimiter{clock: c, seen: map[string]*failures{}}
}

// blocked returns how long the key must wait, or 0, once it has max
// failures in the current window.
func (l *failureLimiter) blocked(key string, max int) time.Duration {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.seen[key]
	if f == nil || now.Sub(f.since) >= failureWindow {
		return 0
	}
	if f.count < max {
		return 0
	}
	return f.since.Add(failureWindow).Sub(now)
}

// fail records a failure for the key.
func (l *failureLimiter) fail(key string) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) > 100_000 {
		for k, f := range l.seen { // drop ended windows; bounded memory
			if now.Sub(f.since) >= failureWindow {
				delete(l.seen, k)
			}
		}
	}
	f := l.seen[key]
	if f == nil || now.Sub(f.since) >= failureWindow {
		f = &failures{since: now}
		l.seen[key] = f
	}
	f.count++
}

// forget clears the key after a success.
func (l *failureLimiter) forget(key string) {
	l.mu.Lock()
	delete(l.seen, key)
	l.mu.Unlock()
}

// clientIP is the address part of r.RemoteAddr.
func clientIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}
