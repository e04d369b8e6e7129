package client

import (
	"context"
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
)

// sweeper erases texts whose device-side validity (Settings.Validity,
// counted from when the message was sent or arrived here) has passed,
// unless Settings.Persistent. It runs at Open, before every read of the
// history, and on a timer set for the next text to expire. A message still
// in the outbox keeps its text until it leaves it (it cannot be sent
// without); it is erased at the next sweep after that.
type sweeper struct {
	c     *Core
	kickc chan struct{}

	mu    sync.Mutex  // serialises sweeps
	timer clock.Timer // guarded by mu
	dirty bool        // erased, but the WAL still holds old pages; guarded by mu
}

// checkpointRetry spaces retries of a checkpoint that another process's
// reader held up.
const checkpointRetry = 30 * time.Second

func newSweeper(c *Core) *sweeper { return &sweeper{c: c, kickc: make(chan struct{}, 1)} }

func (s *sweeper) kick() {
	select {
	case s.kickc <- struct{}{}:
	default:
	}
}

func (s *sweeper) run(ctx context.Context) {
	defer func() {
		s.mu.Lock()
		if s.timer != nil {
			s.timer.Stop()
		}
		s.mu.Unlock()
	}()
	for {
		if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
			s.c.logf("validity sweep: %v", err)
		}
		if err := s.arm(ctx); err != nil && ctx.Err() == nil {
			s.c.logf("validity sweep: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.kickc:
		}
	}
}

// sweep erases every text past its validity now.
func (s *sweeper) sweep(ctx context.Context) error {
	c := s.c
	if c.cfg().Persistent {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := c.db.eraseBefore(ctx, c.clock.Now().Add(-time.Duration(c.cfg().Validity)))
	if err != nil {
		return err
	}
	if n > 0 {
		c.logf("validity: erased the text of %d message(s)", n)
		c.emit(Event{Kind: EventErased, Count: int(n)})
	}
	if n > 0 || s.dirty {
		// Until the checkpoint succeeds the WAL may still hold the old
		// page with the text; the timer retries it (see arm).
		err = c.db.checkpoint(ctx)
		s.dirty = err != nil
	}
	return err
}

// arm sets the timer for the oldest text still kept.
func (s *sweeper) arm(ctx context.Context) error {
	c := s.c
	if c.cfg().Persistent {
		return nil
	}
	oldest, err := c.db.oldestUnerased(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	var d time.Duration
	switch {
	case s.dirty:
		d = checkpointRetry
	case oldest.IsZero():
		return nil
	default:
		d = max(oldest.Add(time.Duration(c.cfg().Validity)).Sub(c.clock.Now()), 0)
	}
	s.timer = c.clock.AfterFunc(d, s.kick)
	return nil
}
