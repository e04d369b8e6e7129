package loginguard

// Several nodes behind one balancer share their verdicts (package cluster),
// so that guessing spread over N nodes is limited as on one, not N times
// as fast. A guard tells Share of every failure, and of every success that
// cleared failures; the other nodes apply them with Learn. Sharing is best
// effort (NATS delivers at most once): a verdict lost lets one more guess
// through on one node, never keeps anyone out.

// Share sets the function told of this guard's verdicts that other nodes
// need: every failure, and each success that cleared failures. It is
// called without the guard's lock held, and must not block. Set it before
// the guard is used.
func (g *Guard) Share(fn func(account, source string, ok bool)) { g.share = fn }

// Learn applies a verdict another node reached for account from source: a
// failure counts here as one of this node's own (spacing later attempts
// the same way), a success clears the pair's failures and makes the
// address known good for the account. Nothing is shared back.
func (g *Guard) Learn(account, source string, ok bool) {
	now := g.clock.Now()
	key := pairKey{account, SourceKey(source)}
	g.mu.Lock()
	defer g.mu.Unlock()
	p, a := g.current(key, now)
	if ok {
		delete(g.pairs, key)
		if a == nil {
			g.makeRoom(now)
			a = &accountState{last: now}
			g.accounts[account] = a
		}
		a.markKnown(key.source, now)
		return
	}
	known, lane := g.standing(key, p, a, now)
	g.admit(key, p, a, lane, known, "", now)
}
