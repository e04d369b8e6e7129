// Package registrar knows which device of which account is online, and on
// which connection.
//
// Life cycle of a binding: a successful REGISTER binds an account to the TLS
// connection it arrived on (identified by the connection's remote address,
// not by the Contact: devices sit behind NAT, and the server never dials a
// device). One device per account: a new registration replaces the old
// binding. A binding ends when its expiry passes without a refresh, when the
// device un-registers (Expires: 0), or when its connection closes. Every new
// or refreshed binding is reported to OnOnline, so the delivery queue can
// start a run for that account.
package registrar

import (
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
)

// Binding is an account's registered device.
type Binding struct {
	Account string
	// Source is the remote address (ip:port) of the TLS connection the
	// device registered on; delivery goes back over that connection.
	Source  string
	Contact string
	// IMDN is true when the device asked for delivery reports.
	IMDN         bool
	RegisteredAt time.Time
	Expires      time.Time
}

// Registrar holds the bindings. It opens no sockets.
type Registrar struct {
	clock clock.Clock
	// OnOnline, if set, is called (outside the lock) after every register
	// or refresh.
	OnOnline func(account string)
	// OnChange, if set, is called with the number of bindings after each
	// change (for metrics).
	OnChange func(n int)
	// OnDisconnect, if set, is called (outside the lock) when a binding
	// ends because its connection closed: nothing sent on it can be
	// answered any more, so the delivery queue ends what it has in flight
	// there at once instead of waiting for transaction timeouts.
	OnDisconnect func(account, source string)
	// OnOffline, if set, is called (outside the lock) whenever a binding
	// ends without a new one of the account taking its place, with why:
	// "unregistered", "connection closed", "registration expired" or
	// "account deleted".
	OnOffline func(b Binding, reason string)

	mu       sync.Mutex
	bindings map[string]*entry // by account; guarded by mu
	bySource map[string]*entry // by connection source; guarded by mu
}

type entry struct {
	Binding
	timer clock.Timer
}

// New returns an empty Registrar.
func New(c clock.Clock) *Registrar {
	return &Registrar{clock: c, bindings: map[string]*entry{}, bySource: map[string]*entry{}}
}

// Register binds b.Account to b.Source until now+ttl, replacing any earlier
// binding of the account, and returns the binding it replaced (if on another
// connection).
func (r *Registrar) Register(b Binding, ttl time.Duration) (replaced Binding, ok bool) {
	now := r.clock.Now()
	b.RegisteredAt = now
	b.Expires = now.Add(ttl)
	r.mu.Lock()
	if old := r.bindings[b.Account]; old != nil {
		r.removeLocked(old)
		if old.Source != b.Source {
			replaced, ok = old.Binding, true
		}
	}
	if other := r.bySource[b.Source]; other != nil {
		// Another account registered on this connection before: a
		// connection carries one device, so the newest account wins.
		r.removeLocked(other)
	}
	e := &entry{Binding: b}
	e.timer = r.clock.AfterFunc(ttl, func() { r.expire(e) })
	r.bindings[b.Account] = e
	r.bySource[b.Source] = e
	n := len(r.bindings)
	r.mu.Unlock()
	r.changed(n)
	if r.OnOnline != nil {
		r.OnOnline(b.Account)
	}
	return replaced, ok
}

// Unregister removes the account's binding if it is on source.
func (r *Registrar) Unregister(account, source string) {
	r.mu.Lock()
	e := r.bindings[account]
	if e == nil || e.Source != source {
		r.mu.Unlock()
		return
	}
	r.removeLocked(e)
	n := len(r.bindings)
	r.mu.Unlock()
	r.changed(n)
	r.offline(e.Binding, "unregistered")
}

// ConnectionClosed removes every binding on the connection from source.
func (r *Registrar) ConnectionClosed(source string) {
	r.mu.Lock()
	e := r.bySource[source]
	if e == nil {
		r.mu.Unlock()
		return
	}
	r.removeLocked(e)
	n := len(r.bindings)
	r.mu.Unlock()
	r.changed(n)
	if r.OnDisconnect != nil {
		r.OnDisconnect(e.Account, source)
	}
	r.offline(e.Binding, "connection closed")
}

// Remove ends the account's binding, whatever its connection (the account
// was deleted), and returns it.
func (r *Registrar) Remove(account string) (Binding, bool) {
	r.mu.Lock()
	e := r.bindings[account]
	if e == nil {
		r.mu.Unlock()
		return Binding{}, false
	}
	r.removeLocked(e)
	n := len(r.bindings)
	r.mu.Unlock()
	r.changed(n)
	r.offline(e.Binding, "account deleted")
	return e.Binding, true
}

func (r *Registrar) offline(b Binding, reason string) {
	if r.OnOffline != nil {
		r.OnOffline(b, reason)
	}
}

// Lookup returns the account's binding, if it is online.
func (r *Registrar) Lookup(account string) (Binding, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.bindings[account]
	if e == nil {
		return Binding{}, false
	}
	return e.Binding, true
}

// AccountOn returns the account bound to the connection from source.
func (r *Registrar) AccountOn(source string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.bySource[source]; e != nil {
		return e.Account, true
	}
	return "", false
}

// Len returns the number of bindings.
func (r *Registrar) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bindings)
}

func (r *Registrar) expire(e *entry) {
	r.mu.Lock()
	if r.bindings[e.Account] != e {
		r.mu.Unlock()
		return
	}
	r.removeLocked(e)
	n := len(r.bindings)
	r.mu.Unlock()
	r.changed(n)
	r.offline(e.Binding, "registration expired")
}

// removeLocked drops e from both indexes and stops its expiry timer.
func (r *Registrar) removeLocked(e *entry) {
	e.timer.Stop()
	if r.bindings[e.Account] == e {
		delete(r.bindings, e.Account)
	}
	if r.bySource[e.Source] == e {
		delete(r.bySource, e.Source)
	}
}

func (r *Registrar) changed(n int) {
	if r.OnChange != nil {
		r.OnChange(n)
	}
}
