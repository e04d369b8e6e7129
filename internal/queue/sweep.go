package queue

// sweep expires what is due, destroys ended key periods and schedules the
// next sweep.
func (q *Queue) sweep() {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return
	}
	if q.sweeper != nil {
		q.sweeper.Stop() // Sweep was called by hand: keep one schedule
	}
	q.mu.Unlock()
	now := q.o.Clock.Now()
	expired, err := q.o.Store.ExpireDue(q.ctx, now)
	if err != nil {
		q.o.Log.Error("expiring messages", "err", err)
	}
	for _, m := range expired {
		q.mu.Lock()
		delete(q.fresh, freshKey(m.From, m.ID))
		q.mu.Unlock()
		q.o.Log.Info("message expired undelivered", "id", m.ID, "from", m.From, "to", m.To)
		if q.o.Metrics != nil {
			q.o.Metrics.Expired.Inc()
		}
		q.Kick(m.From) // the failure report
	}
	if err == nil {
		if n, err := q.o.Sealer.DestroyExpired(q.ctx, now); err != nil {
			q.o.Log.Error("destroying expired data keys", "err", err)
		} else if n > 0 {
			q.o.Log.Info("destroyed expired data keys", "count", n)
		}
	}
	q.mu.Lock()
	if !q.stopped {
		q.sweeper = q.o.Clock.AfterFunc(q.o.SweepInterval, q.sweep)
	}
	q.mu.Unlock()
}

// Sweep runs expiry now (for tests and the operator command).
func (q *Queue) Sweep() { q.sweep() }
