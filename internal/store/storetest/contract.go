package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// RunShared runs the cases of the contract that need two handles on one
// database, as two nodes (or two processes) open it. openPair must return
// two open handles on the same fresh, empty database and arrange for both
// to be closed.
func RunShared(t *testing.T, openPair func(t *testing.T) (a, b store.Store)) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, a, b store.Store)
	}{
		{"TwoHandlesOneRecipient", testTwoHandlesOneRecipient},
		{"ExpireDueOnceAcrossHandles", testExpireOnceAcrossHandles},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := openPair(t)
			tc.fn(t, a, b)
		})
	}
}

// testTwoHandlesOneRecipient: senders submit to one recipient through two
// handles at once, each message through both (a retry racing the original),
// while a delivery run lists the mailbox as the queue does, after the last
// seq it has taken. Each message is stored once, both submitters get the
// same seq, one sender's messages keep their submission order, and the run
// sees every message: none commits below a seq the run has already passed.
func testTwoHandlesOneRecipient(t *testing.T, a, b store.Store) {
	const senders, each = 4, 25
	addAccount(t, a, "bob")
	for i := range senders {
		addAccount(t, a, fmt.Sprintf("s%d", i))
	}
	type answer struct {
		seq     int64
		created bool
	}
	var (
		mu      sync.Mutex
		answers = map[string][]answer{} // by sender/id
		errs    []error
	)
	done := make(chan struct{})
	var seen []store.Message
	listerDone := make(chan error, 1)
	go func() {
		var after int64
		list := func() error {
			ms, err := b.Pending(context.Background(), "bob", after, time.Time{}, 0)
			if err != nil {
				return err
			}
			if len(ms) > 0 {
				seen = append(seen, ms...)
				after = ms[len(ms)-1].Seq
			}
			return nil
		}
		for {
			select {
			case <-done:
				listerDone <- list() // one pass after the last commit
				return
			default:
			}
			if err := list(); err != nil {
				listerDone <- err
				return
			}
		}
	}()
	parallel(2*senders, func(g int) {
		s := []store.Store{a, b}[g%2]
		from := fmt.Sprintf("s%d", g/2)
		var last int64
		for i := range each {
			m := msg(from, "bob", i, time.Duration(i)*time.Millisecond)
			got, created, err := s.Submit(context.Background(), m, 0)
			mu.Lock()
			if err != nil {
				errs = append(errs, fmt.Errorf("Submit(%s from %s): %w", m.ID, from, err))
				mu.Unlock()
				return
			}
			if got.Seq <= last {
				errs = append(errs, fmt.Errorf("%s: message %d got seq %d after %d", from, i, got.Seq, last))
			}
			last = got.Seq
			answers[from+"/"+m.ID] = append(answers[from+"/"+m.ID], answer{got.Seq, created})
			mu.Unlock()
		}
	})
	close(done)
	if err := <-listerDone; err != nil {
		t.Fatalf("listing bob's mailbox while submitting: %v", err)
	}
	if len(errs) > 0 {
		t.Fatalf("concurrent submits through two handles: %v", errs)
	}
	for k, as := range answers {
		if len(as) != 2 || as[0].seq != as[1].seq || as[0].created == as[1].created {
			t.Errorf("%s submitted through both handles: answers %+v; want one created, both with one seq", k, as)
		}
	}
	all, err := a.Pending(t.Context(), "bob", 0, time.Time{}, 0)
	if err != nil {
		t.Fatalf("Pending(bob): %v", err)
	}
	if len(all) != senders*each {
		t.Errorf("Pending(bob) holds %d messages, want %d", len(all), senders*each)
	}
	if !slices.Equal(seqs(seen), seqs(all)) {
		t.Errorf("a delivery run listing after its last seq saw %d messages, the mailbox holds %d: a message committed below a seq the run had passed",
			len(seen), len(all))
	}
}

// testExpireOnceAcrossHandles: two sweeps at once, one per handle, expire
// each message once and queue one report for it.
func testExpireOnceAcrossHandles(t *testing.T, a, b store.Store) {
	const n = 40
	addAccounts(t, a, "alice", "bob")
	for i := range n {
		submit(t, a, msg("alice", "bob", i, 0), 0)
	}
	due := t0.Add(lifetime)
	var mu sync.Mutex
	var expired []string
	var errs []error
	for round := 0; round < 3; round++ {
		parallel(2, func(i int) {
			got, err := []store.Store{a, b}[i].ExpireDue(context.Background(), due)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			expired = append(expired, ids(got)...)
		})
	}
	if len(errs) > 0 {
		t.Fatalf("ExpireDue: %v", errs)
	}
	slices.Sort(expired)
	if len(expired) != n || len(slices.Compact(slices.Clone(expired))) != n {
		t.Errorf("two handles sweeping: %d messages returned as expired (%d distinct), want each of %d once", len(expired), len(slices.Compact(expired)), n)
	}
	if rs := reports(t, b, "alice"); len(rs) != n {
		t.Errorf("alice has %d expiry reports, want %d", len(rs), n)
	}
}

// testCancelMidCommitThenRetry: a submission whose context ends at some
// point of its commit may or may not have been stored (the contract's
// unknown outcome); the retry with the same id, as a client makes it after
// an error, stores it exactly once and agrees with a first answer that did
// succeed.
func testCancelMidCommitThenRetry(t *testing.T, s store.Store) {
	const n = 30
	addAccounts(t, s, "alice", "bob")
	var want []string
	for i := range n {
		m := msg("alice", "bob", i, time.Duration(i)*time.Millisecond)
		ctx, cancel := context.WithCancel(context.Background())
		// Cancel at a different point of the commit each round: before
		// the call, and then later and later.
		if i == 0 {
			cancel()
		} else {
			time.AfterFunc(time.Duration(i-1)*100*time.Microsecond, cancel)
		}
		first, firstCreated, firstErr := s.Submit(ctx, m, 0)
		cancel()
		if firstErr != nil && errors.Is(firstErr, store.ErrMailboxFull) {
			t.Fatalf("Submit with a cancelled context: %v", firstErr)
		}
		retry, retryCreated, err := s.Submit(context.Background(), m, 0)
		if err != nil {
			t.Fatalf("retry of message %d after %v: %v", i, firstErr, err)
		}
		if firstErr == nil {
			if !firstCreated || retryCreated || retry.Seq != first.Seq {
				t.Errorf("message %d: first (created %v, seq %d), retry (created %v, seq %d); want created once, one seq",
					i, firstCreated, first.Seq, retryCreated, retry.Seq)
			}
		}
		if retry.Status != message.Enqueued || !bytes.Equal(retry.Sealed, m.Sealed) {
			t.Errorf("message %d after the retry: status %q, sealed %q", i, retry.Status, retry.Sealed)
		}
		want = append(want, m.From+"/"+m.ID)
	}
	if got := pendingIDs(t, s, "bob", 0); !slices.Equal(got, want) {
		t.Errorf("Pending(bob) = %d messages %v, want each of %d once, in submission order", len(got), got, n)
	}
	if c := countPending(t, s); c != n {
		t.Errorf("CountPending = %d, want %d", c, n)
	}
}

// testExpirePeriodAndKey: when a key period has ended, its expired
// messages are gone with their text, its data key is destroyed, and the
// next period's key and messages are untouched.
func testExpirePeriodAndKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	addAccounts(t, s, "alice", "bob")
	const p1, p2 = 500, 501
	for _, p := range []int64{p1, p2} {
		if _, err := s.PutDataKey(ctx, p, []byte(fmt.Sprintf("wrapped key of period %d", p))); err != nil {
			t.Fatalf("PutDataKey(%d): %v", p, err)
		}
	}
	inPeriod := func(n int, offset time.Duration, p int64) store.Message {
		m := msg("alice", "bob", n, offset)
		m.KeyPeriod = p
		return submit(t, s, m, 0)
	}
	old1 := inPeriod(1, 0, p1)
	old2 := inPeriod(2, time.Minute, p1)
	delivered := inPeriod(3, 2*time.Minute, p1)
	next := inPeriod(4, time.Hour, p2)
	if err := markDelivered(s, ctx, "alice", delivered.ID, t0.Add(time.Hour)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	end := old2.ExpiresAt // period p1 has ended
	got, err := s.ExpireDue(ctx, end)
	if err != nil {
		t.Fatalf("ExpireDue: %v", err)
	}
	if g := ids(got); !slices.Equal(g, ids([]store.Message{old1, old2})) {
		t.Fatalf("ExpireDue = %v, want the two enqueued messages of period %d", g, p1)
	}
	n, err := s.DeleteDataKeys(ctx, p2)
	if err != nil || n != 1 {
		t.Fatalf("DeleteDataKeys(before %d) = %d, %v; want 1", p2, n, err)
	}
	_, err = s.DataKey(ctx, p1)
	wantErr(t, "DataKey of the ended period", err, store.ErrNotFound)
	if k, err := s.DataKey(ctx, p2); err != nil || string(k) != fmt.Sprintf("wrapped key of period %d", p2) {
		t.Errorf("DataKey(%d) = %q, %v; want its key", p2, k, err)
	}
	for _, m := range []store.Message{old1, old2, delivered} {
		g := getMessage(t, s, m.From, m.ID)
		if len(g.Sealed) != 0 || g.KeyPeriod != 0 || g.Status == message.Enqueued {
			t.Errorf("message %s of the ended period: status %q, %d bytes sealed, period %d; want no text", m.ID, g.Status, len(g.Sealed), g.KeyPeriod)
		}
	}
	if g := getMessage(t, s, "alice", next.ID); g.Status != message.Enqueued || !bytes.Equal(g.Sealed, next.Sealed) || g.KeyPeriod != p2 {
		t.Errorf("message of the next period: status %q, sealed %q, period %d; want enqueued with its text", g.Status, g.Sealed, g.KeyPeriod)
	}
	// The live period still takes messages, and their text reads back.
	more := inPeriod(5, time.Hour+time.Minute, p2)
	if p := pendingIDs(t, s, "bob", 0); !slices.Equal(p, ids([]store.Message{next, more})) {
		t.Errorf("Pending(bob) = %v, want the two messages of period %d", p, p2)
	}
	if g := getMessage(t, s, "alice", more.ID); !bytes.Equal(g.Sealed, more.Sealed) {
		t.Errorf("a message stored after the period's end reads back %q, want %q", g.Sealed, more.Sealed)
	}
}
