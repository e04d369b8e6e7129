package queue

// Moved tells the queue that the account's device registered on another
// node (package cluster), whose delivery takes over: the pass under way
// here is abandoned as a registration on another connection abandons it
// (roaming). Nothing in it is charged; a 2xx that arrived before is still
// recorded. Call it before closing the old connection, so that the close
// does not count as the device failing.
func (q *Queue) Moved(account string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.runs[account]; r != nil && r.abandon != nil {
		q.o.Log.Info("abandoning the delivery here: the device registered on another node", "account", account, "source", r.source)
		r.abandon(errMoved)
	}
}
