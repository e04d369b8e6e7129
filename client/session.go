package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/client/internal/sipflow"
)

// registerTimeout bounds one REGISTER transaction: RFC 3261 Timer F,
// 64 × T1 = 32 s.
const registerTimeout = 32 * time.Second

// Online reports whether the device is registered with the SIP server.
func (c *Core) Online() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.online
}

func (c *Core) setOnline(v bool) {
	c.mu.Lock()
	c.online = v
	c.mu.Unlock()
}

// runSession keeps one SIP flow registered until ctx ends. When the flow
// fails it reconnects after a backoff that doubles from ReconnectMin to
// ReconnectMax (with jitter, so that devices cut off together do not all
// come back in the same second) and starts again at ReconnectMin once a
// registration succeeded.
func (c *Core) runSession(ctx context.Context) {
	s := c.cfg()
	backoff := time.Duration(s.ReconnectMin)
	for {
		registered, err := c.sessionOnce(ctx)
		c.setOnline(false)
		if ctx.Err() != nil {
			return
		}
		if registered {
			backoff = time.Duration(s.ReconnectMin)
		}
		wait := reconnectWait(backoff)
		// The timer is set before the event is told, so whoever reacts to
		// the event (a test moving a fake clock) finds it set.
		woke := make(chan struct{})
		timer := c.clock.AfterFunc(wait, func() { close(woke) })
		c.logf("SIP: %v; reconnecting in %s", err, wait)
		c.emit(Event{Kind: EventOffline, Detail: fmt.Sprintf("%v; reconnecting in %s", err, wait)})
		select {
		case <-woke:
		case <-ctx.Done():
			timer.Stop()
			return
		}
		backoff = min(backoff*2, time.Duration(s.ReconnectMax))
	}
}

// reconnectWait draws the wait before the next attempt to reach the SIP
// server: between half the backoff and the backoff ("equal jitter"), so
// devices cut off together come back spread out, and never later than
// the backoff.
func reconnectWait(backoff time.Duration) time.Duration {
	if backoff < 2*time.Millisecond {
		return backoff
	}
	// Whole milliseconds, so the wait the event tells is the wait.
	return (backoff/2 + rand.N(backoff-backoff/2)).Truncate(time.Millisecond)
}

// sessionOnce dials, registers and keeps the flow alive until it fails. It
// reports whether it got registered.
func (c *Core) sessionOnce(ctx context.Context) (bool, error) {
	s := c.cfg()
	conf, err := tlsConfig(c.caPEM, hostOf(c.prof.SIPAddr))
	if err != nil {
		return false, err
	}
	dctx, cancel := withClockTimeout(ctx, c.clock, time.Duration(s.AttemptTimeout))
	conn, err := sipflow.Dial(dctx, c.prof.SIPAddr, conf, c.handleSIP)
	cancel()
	if err != nil {
		return false, explainTLS(err, "SIP server "+c.prof.SIPAddr)
	}
	defer conn.Close()

	reg := &sipflow.Registrar{
		User: c.prof.Account, Domain: c.prof.Domain,
		HA1:     map[string]string{"MD5": c.prof.HA1MD5, "SHA-256": c.prof.HA1SHA256},
		Expires: time.Duration(s.RegisterExpires),
		// Ask for delivery reports: the Sealpost header, and the standard
		// way (RFC 5438 readers list message/imdn+xml in Accept).
		Extra: [][2]string{
			{api.HeaderFeatures, "imdn"},
			{"Accept", "text/plain, " + api.ContentTypeIMDN},
			{"User-Agent", "sealpost"},
		},
	}
	register := func() (time.Duration, error) {
		rctx, cancel := withClockTimeout(ctx, c.clock, registerTimeout)
		defer cancel()
		return conn.Register(rctx, reg)
	}
	granted, err := register()
	if err != nil {
		return false, fmt.Errorf("register %s@%s: %w", c.prof.Account, c.prof.Domain, err)
	}
	c.setOnline(true)
	c.logf("SIP: registered %s@%s at %s for %s", c.prof.Account, c.prof.Domain, c.prof.SIPAddr, granted)
	c.emit(Event{Kind: EventOnline, Detail: fmt.Sprintf("registered as %s@%s", c.prof.Account, c.prof.Domain)})
	c.Trigger(ctx, TriggerRegister)

	// Each timer signals its own one-slot channel; the pong timeout carries
	// a generation so that a timeout racing with its pong is ignored.
	keepC := make(chan struct{}, 1)
	regC := make(chan struct{}, 1)
	pongC := make(chan int, 1)
	signal := func(ch chan struct{}) func() {
		return func() {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	keepT := c.clock.AfterFunc(time.Duration(s.KeepaliveInterval), signal(keepC))
	regT := c.clock.AfterFunc(refreshAfter(granted), signal(regC))
	var pongT clockTimer
	pongGen := 0
	waitingPong := false
	defer func() {
		keepT.Stop()
		regT.Stop()
		if pongT != nil {
			pongT.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-conn.Done():
			return true, conn.Err()
		case <-conn.Pongs():
			if waitingPong {
				waitingPong = false
				pongGen++
				pongT.Stop()
			}
		case gen := <-pongC:
			if waitingPong && gen == pongGen {
				return true, fmt.Errorf("the SIP server did not answer a keepalive within %s", time.Duration(s.KeepaliveTimeout))
			}
		case <-keepC:
			if err := conn.Ping(); err != nil {
				return true, err
			}
			c.Trigger(ctx, TriggerKeepalive)
			if !waitingPong {
				waitingPong = true
				gen := pongGen
				pongT = c.clock.AfterFunc(time.Duration(s.KeepaliveTimeout), func() {
					select {
					case pongC <- gen:
					default:
					}
				})
			}
			keepT = c.clock.AfterFunc(time.Duration(s.KeepaliveInterval), signal(keepC))
		case <-regC:
			g, err := register()
			if err != nil {
				return true, fmt.Errorf("refresh the registration: %w", err)
			}
			c.logf("SIP: registration refreshed for %s", g)
			c.Trigger(ctx, TriggerRegister)
			regT = c.clock.AfterFunc(refreshAfter(g), signal(regC))
		}
	}
}

type clockTimer interface{ Stop() bool }

// refreshAfter is when to re-REGISTER: at three quarters of the granted
// time, so a refresh that needs a second try still lands before expiry.
func refreshAfter(granted time.Duration) time.Duration {
	return granted * 3 / 4
}
