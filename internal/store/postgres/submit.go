package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// submitOp is one Submit waiting for a committer.
type submitOp struct {
	ctx   context.Context
	m     store.Message
	bound int64             // the mailbox bound; math.MaxInt64 for none
	done  chan submitResult // buffered; receives exactly one answer
}

type submitResult struct {
	m       store.Message
	created bool
	err     error
}

// Submit durably stores m (status enqueued) and returns it with Seq set. A
// message with the same (From, ID) is returned as it is, created=false, even
// when the mailbox is now full. It returns after the transaction holding the
// write has committed, or with an error; when that error is not a store
// sentinel, or ctx ended while the submission was queued or committing, the
// message may have been stored, and a retry with the same ID is safe.
func (s *Store) Submit(ctx context.Context, m store.Message, maxPending int) (store.Message, bool, error) {
	o := &submitOp{ctx: ctx, m: m, bound: math.MaxInt64, done: make(chan submitResult, 1)}
	if maxPending > 0 {
		o.bound = int64(maxPending)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.Message{}, false, ErrClosed
	}
	select {
	case s.submits <- o:
	case <-ctx.Done():
		s.mu.RUnlock()
		return store.Message{}, false, fmt.Errorf("postgres store: message %s from %q not queued: %w", m.ID, m.From, ctx.Err())
	}
	s.mu.RUnlock()
	select {
	case r := <-o.done:
		return r.m, r.created, r.err
	case <-ctx.Done():
		return store.Message{}, false, fmt.Errorf("postgres store: gave up waiting for the commit of message %s from %q; it may have been stored: %w", m.ID, m.From, ctx.Err())
	}
}

// commitLoop is a committer: it takes the first waiting submission and
// every other one waiting (up to MaxBatch), commits them in one transaction
// and answers them, until Close closes the queue and it is empty.
func (s *Store) commitLoop() {
	defer s.wg.Done()
	for {
		first, ok := <-s.submits
		if !ok {
			return
		}
		ops := []*submitOp{first}
	gather:
		for len(ops) < s.opts.MaxBatch {
			select {
			case o, ok := <-s.submits:
				if !ok {
					break gather
				}
				ops = append(ops, o)
			default:
				break gather
			}
		}
		start := time.Now()
		s.commitBatch(ops)
		if s.opts.OnCommit != nil {
			s.opts.OnCommit(len(ops), time.Since(start))
		}
	}
}

// commitBatch writes ops in one transaction and answers each. A batch
// PostgreSQL aborted (deadlock, serialization failure), or one that met a
// message of the same (From, ID) committed meanwhile by another
// transaction, is rolled back and run again.
func (s *Store) commitBatch(ops []*submitOp) {
	live := ops[:0:0]
	for _, o := range ops {
		if err := o.ctx.Err(); err != nil {
			o.done <- submitResult{err: fmt.Errorf("postgres store: message %s from %q abandoned before it was written: %w", o.m.ID, o.m.From, err)}
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommitTimeout)
	defer cancel()
	var results []submitResult
	var err error
	for try := 1; ; try++ {
		results, err = s.writeBatch(ctx, live)
		if err == nil || try == 5 || !(retryable(err) || errors.Is(err, errRaced) || pgCode(err) == "23514") {
			break
		}
		if pgCode(err) == "23514" { // no partition for the row: another node dropped it
			s.forgetPartitions()
		}
	}
	for i, o := range live {
		if err != nil {
			o.done <- submitResult{err: fmt.Errorf("postgres store: storing message %s from %q: %w", o.m.ID, o.m.From, err)}
			continue
		}
		o.done <- results[i]
	}
}

// errRaced: a message of the batch was committed by another transaction
// after the batch looked for it; the batch is rolled back and run again.
var errRaced = errors.New("postgres store: a message of the batch was stored meanwhile by another transaction")

// mailboxKey is the second key of an account's mailbox lock.
func mailboxKey(account string) int32 {
	h := fnv.New32a()
	h.Write([]byte(account))
	return int32(h.Sum32())
}

type msgKey struct{ from, id string }

// writeBatch runs one transaction for ops and returns their answers; an
// error means the transaction did not commit and nothing of it exists, or
// (a failed COMMIT) that its outcome is unknown.
//
// Order: the transaction first takes the mailbox lock of every recipient
// (in key order, so two batches never wait on each other in a cycle) and
// only then looks for existing messages, counts mailboxes and draws seqs.
// Another transaction submitting to the same recipient, on this node or
// another, waits for this one's commit before it draws its seqs, so for one
// recipient seq order is commit order, and a delivery run that has listed
// up to a seq can never later find a smaller one committed.
func (s *Store) writeBatch(ctx context.Context, ops []*submitOp) ([]submitResult, error) {
	results := make([]submitResult, len(ops))
	// first[k] is the index of the first op of key k; later ops of the same
	// key get its answer.
	first := map[msgKey]int{}
	var uniq []int
	var periods []int64
	for i, o := range ops {
		k := msgKey{o.m.From, o.m.ID}
		if _, ok := first[k]; !ok {
			first[k] = i
			uniq = append(uniq, i)
			if len(o.m.Sealed) > 0 {
				periods = append(periods, o.m.KeyPeriod)
			}
		}
	}
	if err := s.ensurePartitions(ctx, periods); err != nil {
		return nil, err
	}

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background()) // after a commit: a no-op

	// One round trip: the locks, the existing messages, the mailbox
	// counts, the seqs.
	var lockKeys []int32
	var counted []string
	var froms, ids []string
	for _, i := range uniq {
		m := ops[i].m
		lockKeys = append(lockKeys, mailboxKey(m.To))
		if (ops[i].bound < math.MaxInt64 || m.WantPendingBefore) && !slices.Contains(counted, m.To) {
			counted = append(counted, m.To)
		}
		froms, ids = append(froms, m.From), append(ids, m.ID)
	}
	slices.Sort(lockKeys)
	lockKeys = slices.Compact(lockKeys)
	b := &pgx.Batch{}
	for _, k := range lockKeys {
		b.Queue("SELECT pg_advisory_xact_lock($1, $2)", lockMailbox, k)
	}
	b.Queue(messageFrom+` JOIN unnest($1::text[], $2::text[]) AS k(from_acct, id)
		ON m.from_acct = k.from_acct AND m.id = k.id`, froms, ids)
	b.Queue(`SELECT to_acct, count(*) FROM messages WHERE status = 'enqueued' AND to_acct = ANY($1) GROUP BY to_acct`, counted)
	b.Queue("SELECT nextval('message_seq') FROM generate_series(1, $1)", len(uniq))
	br := tx.SendBatch(ctx, b)
	for range lockKeys {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, fmt.Errorf("taking mailbox locks: %w", err)
		}
	}
	rows, _ := br.Query()
	existing, err := collectMessages(rows)
	if err != nil {
		br.Close()
		return nil, fmt.Errorf("looking up existing messages: %w", err)
	}
	pending := map[string]int64{}
	rows, _ = br.Query()
	var to string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&to, &n}, func() error { pending[to] = n; return nil }); err != nil {
		br.Close()
		return nil, fmt.Errorf("counting mailboxes: %w", err)
	}
	rows, _ = br.Query()
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		br.Close()
		return nil, fmt.Errorf("drawing seqs: %w", err)
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	slices.Sort(seqs)

	found := map[msgKey]store.Message{}
	for _, m := range existing {
		found[msgKey{m.From, m.ID}] = m
	}
	// New messages in batch order: bound, seq.
	type row struct {
		i   int
		seq int64
	}
	var fresh []row
	for _, i := range uniq {
		o := ops[i]
		if m, ok := found[msgKey{o.m.From, o.m.ID}]; ok {
			results[i] = submitResult{m: m}
			continue
		}
		if pending[o.m.To] >= o.bound {
			results[i] = submitResult{err: fmt.Errorf("postgres store: %q has %d pending messages (bound %d): %w", o.m.To, pending[o.m.To], o.bound, store.ErrMailboxFull)}
			continue
		}
		m := o.m
		m.Seq = seqs[len(fresh)]
		m.Status = message.Enqueued
		m.SubmittedAt, m.ExpiresAt, m.NextAttempt = norm(m.SubmittedAt), norm(m.ExpiresAt), norm(m.NextAttempt)
		m.DeliveredAt = time.Time{}
		m.Parked = false
		m.PendingBefore = 0
		if m.WantPendingBefore {
			m.PendingBefore = int(pending[m.To])
		}
		m.WantPendingBefore = false
		pending[m.To]++
		results[i] = submitResult{m: m, created: true}
		fresh = append(fresh, row{i, m.Seq})
	}

	if len(fresh) > 0 {
		// Insert in (From, ID) order, so that two transactions waiting on
		// each other's uncommitted keys always wait in one direction.
		slices.SortFunc(fresh, func(a, b row) int {
			ma, mb := ops[a.i].m, ops[b.i].m
			return cmp.Or(cmp.Compare(ma.From, mb.From), cmp.Compare(ma.ID, mb.ID))
		})
		var (
			seq, period, submitted, expires, attempts, next []int64
			from, id, rcpt, lastErr                         []string
			sealed                                          [][]byte
		)
		for _, f := range fresh {
			m := results[f.i].m
			seq, period = append(seq, m.Seq), append(period, m.KeyPeriod)
			submitted, expires = append(submitted, encTime(m.SubmittedAt)), append(expires, encTime(m.ExpiresAt))
			attempts, next = append(attempts, int64(m.Attempts)), append(next, encTime(m.NextAttempt))
			from, id, rcpt, lastErr = append(from, m.From), append(id, m.ID), append(rcpt, m.To), append(lastErr, m.LastError)
			sealed = append(sealed, m.Sealed)
		}
		var inserted int
		err := tx.QueryRow(ctx, `WITH u AS (
				SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[],
					$6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], $11::bytea[])
				AS u(seq, from_acct, id, to_acct, key_period, submitted_at, expires_at, attempts, next_attempt, last_error, sealed)),
			ins AS (INSERT INTO messages (seq, from_acct, id, to_acct, key_period, status, submitted_at, expires_at,
					delivered_at, attempts, next_attempt, last_error)
				SELECT seq, from_acct, id, to_acct, key_period, 'enqueued', submitted_at, expires_at,
					0, attempts, next_attempt, last_error FROM u
				ON CONFLICT (from_acct, id) DO NOTHING
				RETURNING seq),
			txt AS (INSERT INTO sealed_texts (key_period, seq, sealed)
				SELECT u.key_period, u.seq, u.sealed FROM u JOIN ins USING (seq)
				WHERE u.sealed IS NOT NULL AND length(u.sealed) > 0)
			SELECT count(*) FROM ins`,
			seq, from, id, rcpt, period, submitted, expires, attempts, next, lastErr, sealed).Scan(&inserted)
		if err != nil {
			return nil, fmt.Errorf("inserting messages: %w", err)
		}
		if inserted != len(fresh) {
			return nil, errRaced
		}
	}
	committing := time.Now()
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit failed; the batch may or may not have been written: %w", err)
	}
	if s.opts.OnSync != nil {
		s.opts.OnSync(time.Since(committing))
	}
	for i, o := range ops {
		if j := first[msgKey{o.m.From, o.m.ID}]; j != i {
			results[i] = results[j]
			if results[i].err == nil {
				results[i].created = false
				results[i].m.PendingBefore = 0
			}
		}
	}
	return results, nil
}
