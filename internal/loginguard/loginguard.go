// Package loginguard bounds password guessing for every way into Sealpost
// (HTTPS Basic, SIP REGISTER digest, digest on MESSAGE) in one place.
//
// An attempt is reserved before the password is checked, and the
// reservation already counts as a failure; a success undoes it. So a burst
// of concurrent guesses cannot race past the limit while the slow hash runs:
// the sixth of 200 simultaneous guesses is refused before any check.
//
// The limits are lockout-free, in the way of mature servers (Dovecot's auth
// penalty, Microsoft's smart lockout): an attacker must not be able to keep
// the real user out. So there is no hard per-account lock. Instead:
//
//   - Each (account, source address) pair gets AddressFreeFailures failures,
//     then its attempts are spaced out: FirstDelay after the first further
//     failure, doubling with each, up to MaxAddressDelay.
//   - Each account, over all addresses, gets AccountFreeFailures failures;
//     past them, attempts for the account from addresses that are not known
//     good (no success for this account lately) go through two lanes, one
//     for addresses that have already failed for this account and one for
//     those that have not, each spaced out the same way up to
//     MaxAccountDelay. An attacker on one address fills only the first
//     lane; many addresses (a botnet) fill the second, which still lets a
//     handful of attempts per minute through, so a person on a new network
//     gets in within minutes; a device on an address it logged in from
//     before is not slowed by the account's lanes at all.
//
// A refused attempt checks nothing, so its answer cannot reveal whether the
// password was right. Refusals are counted in metrics and logged once per
// episode (when a pair or an account starts being limited), never once per
// attempt. State is in memory and bounded; a restart forgives.
package loginguard

import (
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/internal/clock"
)

// Settings are the guard's limits. Zero values take the defaults noted.
type Settings struct {
	// AddressFreeFailures is how many failures one address may make for one
	// account before its attempts are spaced out (default 5).
	AddressFreeFailures int
	// AccountFreeFailures is how many failures an account may see from all
	// addresses together before its lanes slow down (default 20).
	AccountFreeFailures int
	// FirstDelay is the spacing after the free failures; each further
	// failure doubles it (default 2 s).
	FirstDelay time.Duration
	// MaxAddressDelay caps the spacing of one (account, address) pair
	// (default 15 min).
	MaxAddressDelay time.Duration
	// MaxAccountDelay caps the spacing of an account's lanes (default 1 min:
	// under attack an account still takes one attempt a minute per lane).
	MaxAccountDelay time.Duration
	// ForgetAfter is how long failures are remembered after the last one
	// (default 1 h).
	ForgetAfter time.Duration
	// KnownGoodFor is how long an address that logged in to an account is
	// exempt from the account's lanes (default 30 days).
	KnownGoodFor time.Duration
}

// Defaults of Settings.
const (
	DefaultAddressFreeFailures = 5
	DefaultAccountFreeFailures = 20
	DefaultFirstDelay          = 2 * time.Second
	DefaultMaxAddressDelay     = 15 * time.Minute
	DefaultMaxAccountDelay     = time.Minute
	DefaultForgetAfter         = time.Hour
	DefaultKnownGoodFor        = 30 * 24 * time.Hour
)

func (s *Settings) setDefaults() {
	if s.AddressFreeFailures <= 0 {
		s.AddressFreeFailures = DefaultAddressFreeFailures
	}
	if s.AccountFreeFailures <= 0 {
		s.AccountFreeFailures = DefaultAccountFreeFailures
	}
	if s.FirstDelay <= 0 {
		s.FirstDelay = DefaultFirstDelay
	}
	if s.MaxAddressDelay <= 0 {
		s.MaxAddressDelay = DefaultMaxAddressDelay
	}
	if s.MaxAccountDelay <= 0 {
		s.MaxAccountDelay = DefaultMaxAccountDelay
	}
	if s.ForgetAfter <= 0 {
		s.ForgetAfter = DefaultForgetAfter
	}
	if s.KnownGoodFor <= 0 {
		s.KnownGoodFor = DefaultKnownGoodFor
	}
}

// Memory bounds: past these the oldest state is dropped first.
const (
	maxPairs          = 1 << 17
	maxAccounts       = 1 << 16
	maxKnownPerAcount = 16
)

// Guard is the login limit shared by every listener of a server.
type Guard struct {
	s     Settings
	clock clock.Clock
	log   *slog.Logger

	checks  *prometheus.CounterVec // by via
	limited *prometheus.CounterVec // by via and scope

	mu       sync.Mutex
	pairs    map[pairKey]*pairState   // guarded by mu
	accounts map[string]*accountState // guarded by mu

	share func(account, source string, ok bool) // see Share; set before use
}

type pairKey struct{ account, source string }

type pairState struct {
	failures int
	next     time.Time // no attempt before this once failures >= free
	last     time.Time
	logged   bool // this episode was logged
}

// Lanes of an account under attack.
const (
	laneClean = iota // addresses with no failure for the account
	laneDirty        // addresses that failed for it already
)

type accountState struct {
	failures int
	last     time.Time
	lanes    [2]time.Time // no attempt in a lane before this
	// known holds the addresses that logged in to the account lately,
	// with their last success: at most maxKnownPerAcount, and mostly
	// one (the device's). A slice, not a map: a map of one entry cost
	// ~0.6 KiB of every registered device's server memory.
	known  []knownSource
	logged bool
}

// knownSource is an address known good for an account.
type knownSource struct {
	source string
	at     time.Time // last success
}

// knownAt returns when source last logged in to the account (zero: never,
// or forgotten).
func (a *accountState) knownAt(source string) time.Time {
	for _, k := range a.known {
		if k.source == source {
			return k.at
		}
	}
	return time.Time{}
}

// New returns a guard. Register its metrics with Register.
func New(s Settings, c clock.Clock, log *slog.Logger) *Guard {
	s.setDefaults()
	if c == nil {
		c = clock.Real{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{
		s: s, clock: c, log: log,
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_login_checks_total",
			Help: "Passwords (HTTPS Basic) and digest responses (SIP) actually checked, by way in.",
		}, []string{"via"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_login_limited_total",
			Help: "Login attempts refused unchecked by the login guard, by way in and by the limit that refused them (address or account).",
		}, []string{"via", "scope"}),
		pairs:    map[pairKey]*pairState{},
		accounts: map[string]*accountState{},
	}
}

// Settings returns the limits in force (defaults filled in).
func (g *Guard) Settings() Settings { return g.s }

// Register adds the guard's metrics to r.
func (g *Guard) Register(r prometheus.Registerer) error {
	if err := r.Register(g.checks); err != nil {
		return err
	}
	return r.Register(g.limited)
}

// Attempt is a reserved login attempt: check the password, then call Done
// (or Cancel when no verdict came of it) exactly once.
type Attempt struct {
	g        *Guard
	key      pairKey
	via      string
	lane     int
	laneUsed bool
	prevLane time.Time
	prevNext time.Time
	prevFail int // failures of the pair before this attempt
	done     bool
}

// Reserve asks to check a password for account from source (a client
// address, "IP:port" or "IP"), arriving by via ("https", "sip"). It returns
// the attempt, or nil and how long to wait when the attempt is limited.
func (g *Guard) Reserve(account, source, via string) (*Attempt, time.Duration) {
	now := g.clock.Now()
	src := SourceKey(source)
	key := pairKey{account, src}
	g.mu.Lock()
	defer g.mu.Unlock()
	p, a := g.current(key, now)
	if p != nil && p.failures >= g.s.AddressFreeFailures && now.Before(p.next) {
		g.limited.WithLabelValues(via, "address").Inc()
		if !p.logged {
			p.logged = true
			g.log.Warn("login attempts limited: repeated failures for one account from one address",
				"account", account, "source", src, "via", via, "failures", p.failures)
		}
		return nil, p.next.Sub(now)
	}
	known, lane := g.standing(key, p, a, now)
	slowed := a != nil && !known && a.failures >= g.s.AccountFreeFailures
	if slowed && now.Before(a.lanes[lane]) {
		g.limited.WithLabelValues(via, "account").Inc()
		if !a.logged {
			a.logged = true
			g.log.Warn("login attempts limited: account is being guessed from many attempts",
				"account", account, "via", via, "failures", a.failures)
		}
		return nil, a.lanes[lane].Sub(now)
	}

	return g.admit(key, p, a, lane, known, via, now), 0
}

// current returns the state of the pair and of its account, forgetting
// what is older than ForgetAfter. Called with mu held.
func (g *Guard) current(key pairKey, now time.Time) (*pairState, *accountState) {
	p := g.pairs[key]
	if p != nil && now.Sub(p.last) >= g.s.ForgetAfter {
		delete(g.pairs, key)
		p = nil
	}
	a := g.accounts[key.account]
	if a != nil && now.Sub(a.last) >= g.s.ForgetAfter && a.failures > 0 {
		a.failures, a.lanes, a.logged = 0, [2]time.Time{}, false
	}
	return p, a
}

// standing says whether the pair's address is known good for the account,
// and which of the account's lanes its attempts go through.
func (g *Guard) standing(key pairKey, p *pairState, a *accountState, now time.Time) (known bool, lane int) {
	if a != nil {
		at := a.knownAt(key.source)
		known = !at.IsZero() && now.Sub(at) < g.s.KnownGoodFor
	}
	lane = laneClean
	if p != nil && p.failures > 0 {
		lane = laneDirty
	}
	return known, lane
}

// admit counts an attempt as a failure now (Done(true) takes it back).
// Called with mu held.
func (g *Guard) admit(key pairKey, p *pairState, a *accountState, lane int, known bool, via string, now time.Time) *Attempt {
	if p == nil {
		g.makeRoom(now)
		p = &pairState{}
		g.pairs[key] = p
	}
	if a == nil {
		g.makeRoom(now)
		a = &accountState{}
		g.accounts[key.account] = a
	}
	at := &Attempt{g: g, key: key, via: via, lane: lane, prevNext: p.next, prevFail: p.failures}
	p.failures++
	p.last = now
	if p.failures >= g.s.AddressFreeFailures {
		p.next = now.Add(g.delay(p.failures-g.s.AddressFreeFailures, g.s.MaxAddressDelay))
	}
	a.failures++
	a.last = now
	if !known && a.failures >= g.s.AccountFreeFailures {
		at.laneUsed, at.prevLane = true, a.lanes[lane]
		a.lanes[lane] = now.Add(g.delay(a.failures-g.s.AccountFreeFailures, g.s.MaxAccountDelay))
	}
	return at
}

// delay is FirstDelay doubled n times, at most limit.
func (g *Guard) delay(n int, limit time.Duration) time.Duration {
	d := g.s.FirstDelay
	for i := 0; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Done records the verdict of the check. A success clears the failures of
// its (account, address) pair, takes back its own provisional failure from
// the account, and makes the address known good for the account.
func (at *Attempt) Done(ok bool) {
	at.g.checks.WithLabelValues(at.via).Inc()
	first := !at.done
	at.finish(ok, ok)
	if first && at.g.share != nil && (!ok || at.prevFail > 0) {
		at.g.share(at.key.account, at.key.source, ok)
	}
}

// Cancel takes the attempt back without a verdict (a stale nonce answered
// correctly: the client retries at once with a fresh one).
func (at *Attempt) Cancel() { at.finish(true, false) }

func (at *Attempt) finish(undo, good bool) {
	if at.done {
		return
	}
	at.done = true
	if !undo {
		return
	}
	g := at.g
	now := g.clock.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.pairs[at.key]; p != nil {
		if good {
			delete(g.pairs, at.key)
		} else if p.failures--; p.failures <= 0 {
			delete(g.pairs, at.key)
		} else {
			p.next = at.prevNext
		}
	}
	a := g.accounts[at.key.account]
	if a == nil {
		return
	}
	if a.failures > 0 {
		a.failures--
	}
	if at.laneUsed {
		a.lanes[at.lane] = at.prevLane
	}
	if good {
		a.markKnown(at.key.source, now)
	}
}

// markKnown makes source known good for the account. Called with mu held.
func (a *accountState) markKnown(source string, now time.Time) {
	oldest := -1
	for i, k := range a.known {
		if k.source == source {
			a.known[i].at = now
			return
		}
		if oldest < 0 || k.at.Before(a.known[oldest].at) {
			oldest = i
		}
	}
	if len(a.known) >= maxKnownPerAcount {
		a.known[oldest] = knownSource{source, now}
		return
	}
	a.known = append(a.known, knownSource{source, now})
}

// makeRoom drops forgotten state when the maps are full, then, if still
// full, the state seen least recently. Called with mu held.
func (g *Guard) makeRoom(now time.Time) {
	if len(g.pairs) >= maxPairs {
		for k, p := range g.pairs {
			if now.Sub(p.last) >= g.s.ForgetAfter {
				delete(g.pairs, k)
			}
		}
		for k := range g.pairs { // map order is random: drop a random half
			if len(g.pairs) < maxPairs/2 {
				break
			}
			delete(g.pairs, k)
		}
	}
	if len(g.accounts) >= maxAccounts {
		for k, a := range g.accounts {
			if now.Sub(a.last) >= g.s.ForgetAfter && len(a.known) == 0 {
				delete(g.accounts, k)
			}
		}
		for k := range g.accounts {
			if len(g.accounts) < maxAccounts/2 {
				break
			}
			delete(g.accounts, k)
		}
	}
}

// SourceKey is the address a limit counts by: the IP of "IP:port", and for
// IPv6 its /64, since one host is usually given a whole /64 and could
// otherwise take a fresh address for every guess.
func SourceKey(source string) string {
	host, _, err := net.SplitHostPort(source)
	if err != nil {
		host = source
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}
