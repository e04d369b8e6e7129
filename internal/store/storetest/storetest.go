// Package storetest is the conformance suite of store.Store: every backend
// runs Run against a fresh store and must pass it unchanged. It tests only
// what the interface documents, so that any backend that passes serves
// sealpostd equally well.
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

// t0 is the fixed "now" of the suite: times are never taken from the wall
// clock, so every time rule is tested exactly.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

// lifetime is how long a message of the suite may wait (the server's default).
const lifetime = 72 * time.Hour

// Run runs the conformance suite. open must return a fresh, empty store for
// the test and arrange (with t.Cleanup) for it to be closed.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Accounts", testAccounts},
		{"DeleteAccountRemovesItsData", testDeleteAccount},
		{"FailMailboxReportsToTheSenders", testFailMailbox},
		{"SetPasswordRevokesTokens", testSetPassword},
		{"Tokens", testTokens},
		{"SubmitStoresEveryField", testSubmit},
		{"SubmitIsIdempotent", testSubmitIdempotent},
		{"SubmitTellsPendingBefore", testSubmitPendingBefore},
		{"SubmitSameIDConcurrently", testSubmitSameIDConcurrent},
		{"MailboxBound", testMailboxBound},
		{"MailboxBoundConcurrent", testMailboxBoundConcurrent},
		{"ConcurrentSubmits", testConcurrentSubmits},
		{"PendingOrder", testPendingOrder},
		{"RecordAttempt", testRecordAttempt},
		{"RecordAttempts", testRecordAttempts},
		{"PendingListsOnlyWhatIsDue", testPendingDue},
		{"ParkedIsNeverListedAndExpires", testParked},
		{"RescheduleMakesDue", testReschedule},
		{"MarkDelivered", testMarkDelivered},
		{"MarkDeliveredAll", testMarkDeliveredAll},
		{"ExpireDue", testExpireDue},
		{"ExpireDueDeletesOldReports", testExpireReports},
		{"CountPending", testCountPending},
		{"MessagesListing", testMessages},
		{"Reports", testReports},
		{"DataKeys", testDataKeys},
		{"PutDataKeyConcurrent", testPutDataKeyConcurrent},
		{"CancelMidCommitThenRetry", testCancelMidCommitThenRetry},
		{"ExpirePeriodAndKey", testExpirePeriodAndKey},
		{"Ping", func(t *testing.T, s store.Store) {
			if err := s.Ping(t.Context()); err != nil {
				t.Fatalf("Ping on a fresh store: %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// ---- helpers ----

func id(n int) string { return fmt.Sprintf("%08x-0000-4000-8000-000000000000", n) }

func addAccount(t *testing.T, s store.Store, name string) store.Account {
	t.Helper()
	a := store.Account{
		Name:         name,
		PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$" + name,
		SIPSecrets:   []byte("sealed-ha1-" + name),
		CreatedAt:    t0,
	}
	if err := s.CreateAccount(t.Context(), a); err != nil {
		t.Fatalf("CreateAccount(%q): %v", name, err)
	}
	return a
}

func addAccounts(t *testing.T, s store.Store, names ...string) {
	t.Helper()
	for _, n := range names {
		addAccount(t, s, n)
	}
}

// msg builds a message submitted at t0+offset that may wait lifetime.
func msg(from, to string, n int, offset time.Duration) store.Message {
	return store.Message{
		ID:          id(n),
		From:        from,
		To:          to,
		Sealed:      []byte(fmt.Sprintf("sealed text %d from %s to %s", n, from, to)),
		KeyPeriod:   int64(1000 + n),
		SubmittedAt: t0.Add(offset),
		ExpiresAt:   t0.Add(offset + lifetime),
	}
}

func submit(t *testing.T, s store.Store, m store.Message, maxPending int) store.Message {
	t.Helper()
	got, created, err := s.Submit(t.Context(), m, maxPending)
	if err != nil {
		t.Fatalf("Submit(%s from %s to %s): %v", m.ID, m.From, m.To, err)
	}
	if !created {
		t.Fatalf("Submit(%s from %s): created = false for a new message", m.ID, m.From)
	}
	return got
}

func getMessage(t *testing.T, s store.Store, from, id string) store.Message {
	t.Helper()
	m, err := s.Message(t.Context(), from, id)
	if err != nil {
		t.Fatalf("Message(%s, %s): %v", from, id, err)
	}
	return m
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func wantTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// sameMessage compares every field; times with Equal, so a backend may
// return them in any location.
func sameMessage(t *testing.T, what string, got, want store.Message) {
	t.Helper()
	if got.ID != want.ID || got.From != want.From || got.To != want.To || got.Seq != want.Seq ||
		got.KeyPeriod != want.KeyPeriod || got.Status != want.Status || !bytes.Equal(got.Sealed, want.Sealed) ||
		got.Attempts != want.Attempts || got.LastError != want.LastError || got.Parked != want.Parked {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
	wantTime(t, what+" SubmittedAt", got.SubmittedAt, want.SubmittedAt)
	wantTime(t, what+" ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	wantTime(t, what+" DeliveredAt", got.DeliveredAt, want.DeliveredAt)
	wantTime(t, what+" NextAttempt", got.NextAttempt, want.NextAttempt)
}

func seqs(ms []store.Message) []int64 {
	var out []int64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func ids(ms []store.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.From+"/"+m.ID)
	}
	return out
}

func pendingIDs(t *testing.T, s store.Store, to string, limit int) []string {
	t.Helper()
	ms, err := s.Pending(t.Context(), to, 0, time.Time{}, limit)
	if err != nil {
		t.Fatalf("Pending(%q): %v", to, err)
	}
	return ids(ms)
}

func attempt(from, id string, attempts int, next time.Time, lastErr string) store.Attempt {
	return store.Attempt{Key: store.Key{From: from, ID: id}, Attempts: attempts, Next: next, LastError: lastErr}
}

func countPending(t *testing.T, s store.Store) int {
	t.Helper()
	n, err := s.CountPending(t.Context())
	if err != nil {
		t.Fatalf("CountPending: %v", err)
	}
	return n
}

func reports(t *testing.T, s store.Store, to string) []store.Report {
	t.Helper()
	rs, err := s.PendingReports(t.Context(), to, 0)
	if err != nil {
		t.Fatalf("PendingReports(%q): %v", to, err)
	}
	return rs
}

// markDelivered marks one message delivered: a MarkDeliveredAll of one.
func markDelivered(s store.Store, ctx context.Context, from, id string, at time.Time) error {
	errs, err := s.MarkDeliveredAll(ctx, []store.Key{{From: from, ID: id}}, at)
	if err != nil {
		return err
	}
	return errs[0]
}

// parallel runs f(i) for i in [0, n) on n goroutines and waits.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

// ---- accounts and tokens ----

func testAccounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	if as, err := s.Accounts(ctx); err != nil || len(as) != 0 {
		t.Fatalf("Accounts on an empty store = %v, %v; want none", as, err)
	}
	carol := addAccount(t, s, "carol")
	alice := addAccount(t, s, "alice")
	addAccount(t, s, "bob")

	got, err := s.Account(ctx, "alice")
	if err != nil {
		t.Fatalf("Account(alice): %v", err)
	}
	if got.Name != alice.Name || got.PasswordHash != alice.PasswordHash || !bytes.Equal(got.SIPSecrets, alice.SIPSecrets) {
		t.Errorf("Account(alice) = %+v, want %+v", got, alice)
	}
	wantTime(t, "alice CreatedAt", got.CreatedAt, alice.CreatedAt)

	dup := carol
	dup.PasswordHash = "other"
	wantErr(t, "CreateAccount(carol) again", s.CreateAccount(ctx, dup), store.ErrExists)
	if got, _ := s.Account(ctx, "carol"); got.PasswordHash != carol.PasswordHash {
		t.Errorf("a refused CreateAccount changed carol's password hash to %q", got.PasswordHash)
	}

	_, err = s.Account(ctx, "nobody")
	wantErr(t, "Account(nobody)", err, store.ErrNotFound)

	as, err := s.Accounts(ctx)
	if err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	var names []string
	for _, a := range as {
		names = append(names, a.Name)
	}
	if !slices.Equal(names, []string{"alice", "bob", "carol"}) {
		t.Errorf("Accounts = %v, want [alice bob carol] (ordered by name)", names)
	}

	wantErr(t, "DeleteAccount(nobody)", s.DeleteAccount(ctx, "nobody"), store.ErrNotFound)
	wantErr(t, "SetPassword(nobody)", s.SetPassword(ctx, "nobody", "h", nil), store.ErrNotFound)
	if err := s.DeleteAccount(ctx, "carol"); err != nil {
		t.Fatalf("DeleteAccount(carol): %v", err)
	}
	_, err = s.Account(ctx, "carol")
	wantErr(t, "Account(carol) after delete", err, store.ErrNotFound)
	wantErr(t, "DeleteAccount(carol) again", s.DeleteAccount(ctx, "carol"), store.ErrNotFound)
	if as, _ := s.Accounts(ctx); len(as) != 2 {
		t.Errorf("Accounts after deleting carol: %d accounts, want 2", len(as))
	}
	// The name is free again.
	addAccount(t, s, "carol")
}

func testDeleteAccount(t *testing.T, s store.Store) {
	ctx := t.Context()
	addAccounts(t, s, "alice", "bob", "carol")
	tok := store.Token{Hash: []byte("bob-token-hash-0123456789abcdef0"), Account: "bob", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.AddToken(ctx, tok); err != nil {
		t.Fatalf("AddToken: %v", err)
	}
	toBob := submit(t, s, msg("alice", "bob", 1, 0), 0)
	fromBob := submit(t, s, msg("bob", "carol", 2, time.Second), 0)
	deliveredFromBob := submit(t, s, msg("bob", "carol", 3, 2*time.Second), 0)
	if err := markDelivered(s, ctx, "bob", deliveredFromBob.ID, t0.Add(time.Minute)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	unrelated := submit(t, s, msg("carol", "alice", 4, 3*time.Second), 0)
	if len(reports(t, s, "bob")) != 1 {
		t.Fatalf("bob should have one delivery report before the deletion")
	}

	if err := s.DeleteAccount(ctx, "bob"); err != nil {
		t.Fatalf("DeleteAccount(bob): %v", err)
	}
	_, err := s.TokenByHash(ctx, tok.Hash, t0)
	wantErr(t, "bob's token after DeleteAccount", err, store.ErrNotFound)
	if got := pendingIDs(t, s, "bob", 0); len(got) != 0 {
		t.Errorf("Pending(bob) after DeleteAccount = %v, want none", got)
	}
	if got := pendingIDs(t, s, "carol", 0); len(got) != 0 {
		t.Errorf("Pending(carol) after deleting bob = %v, want none (bob's messages)", got)
	}
	_, err = s.Message(ctx, "alice", toBob.ID)
	wantErr(t, "pending message to bob after DeleteAccount", err, store.ErrNotFound)
	_, err = s.Message(ctx, "bob", fromBob.ID)
	wantErr(t, "pending message from bob after DeleteAccount", err, store.ErrNotFound)
	if rs := reports(t, s, "bob"); len(rs) != 0 {
		t.Errorf("reports for bob after DeleteAccount = %+v, want none", rs)
	}
	if got := pendingIDs(t, s, "alice", 0); !slices.Equal(got, ids([]store.Message{unrelated})) {
		t.Errorf("Pending(alice) = %v, want only carol's message %v", got, unrelated.ID)
	}
	if n := countPending(t, s); n != 1 {
		t.Errorf("CountPending after deleting bob = %d, want 1", n)
	}
	// carol's mailbox no longer counts bob's message.
	if _, _, err := s.Submit(ctx, msg("alice", "carol", 5, 4*time.Second), 1); err != nil {
		t.Errorf("Submit to carol with bound 1 after bob's message to her was deleted: %v", err)
	}
	// A new account of the same name starts empty.
	addAccount(t, s, "bob")
	if _, err := s.TokenByHash(ctx, tok.Hash, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the old bob's token works for the new bob: %v", err)
	}
}

// testFailMailbox: before the operator deletes an account, its waiting
// messages fail with an Expired report to each sender, which the deletion
// keeps; its own messages and reports go.
func testFailMailbox(t *testing.T, s store.Store) {
	ctx := t.Context()
	f, ok := s.(store.MailboxFailer)
	if !ok {
		t.Fatalf("%T does not implement store.MailboxFailer", s)
	}
	addAccounts(t, s, "alice", "bob", "carol")
	fromAlice := submit(t, s, msg("alice", "bob", 1, 0), 0)
	fromCarol := submit(t, s, msg("carol", "bob", 2, time.Second), 0)
	fromBob := submit(t, s, msg("bob", "alice", 3, 2*time.Second), 0)
	at := t0.Add(time.Hour)
	failed, err := f.FailMailbox(ctx, "bob", at)
	if err != nil {
		t.Fatalf("FailMailbox: %v", err)
	}
	want := []store.Key{{From: "alice", ID: fromAlice.ID}, {From: "carol", ID: fromCarol.ID}}
	if !slices.Equal(failed, want) {
		t.Fatalf("FailMailbox = %v, want %v", failed, want)
	}
	if got := pendingIDs(t, s, "bob", 0); len(got) != 0 {
		t.Errorf("Pending(bob) after FailMailbox = %v", got)
	}
	if err := s.DeleteAccount(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	for _, sender := range []struct {
		name string
		m    store.Message
	}{{"alice", fromAlice}, {"carol", fromCarol}} {
		rs := reports(t, s, sender.name)
		if len(rs) != 1 || rs[0].MessageID != sender.m.ID || rs[0].Recipient != "bob" || rs[0].Status != message.Expired ||
			!rs[0].At.Equal(at) || !rs[0].ExpiresAt.Equal(at.Add(lifetime)) {
			t.Errorf("%s's reports after deleting bob: %+v", sender.name, rs)
		}
	}
	_, err = s.Message(ctx, "bob", fromBob.ID)
	wantErr(t, "bob's own message after DeleteAccount", err, store.ErrNotFound)
	if got := pendingIDs(t, s, "alice", 0); len(got) != 0 {
		t.Errorf("Pending(alice) = %v, want none (bob's message went with him)", got)
	}
}

func testSetPassword(t *testing.T, s store.Store) {
	ctx := t.Context()
	addAccount(t, s, "alice")
	addAccount(t, s, "bob")
	toks := []store.Token{
		{Hash: []byte("alice-token-1"), Account: "alice", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		{Hash: []byte("alice-token-2"), Account: "alice", CreatedAt: t0, ExpiresAt: t0.Add(2 * time.Hour)},
		{Hash: []byte("bob-token-1"), Account: "bob", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
	}
	for _, tok := range toks {
		if err := s.AddToken(ctx, tok); err != nil {
			t.Fatalf("AddToken(%s): %v", tok.Hash, err)
		}
	}
	if err := s.SetPassword(ctx, "alice", "new-hash", []byte("new-secrets")); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	a, err := s.Account(ctx, "alice")
	if err != nil {
		t.Fatalf("Account(alice): %v", err)
	}
	if a.PasswordHash != "new-hash" || string(a.SIPSecrets) != "new-secrets" {
		t.Errorf("after SetPassword: hash %q secrets %q, want new-hash new-secrets", a.PasswordHash, a.SIPSecrets)
	}
	for _, tok := range toks[:2] {
		_, err := s.TokenByHash(ctx, tok.Hash, t0)
		wantErr(t, fmt.Sprintf("TokenByHash(%s) after SetPassword", tok.Hash), err, store.ErrNotFound)
	}
	if _, err := s.TokenByHash(ctx, toks[2].Hash, t0); err != nil {
		t.Errorf("bob's token was revoked by alice's SetPassword: %v", err)
	}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	addAccount(t, s, "alice")
	tok := store.Token{Hash: []byte("0123456789abcdef0123456789abcdef"), Account: "alice", CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}
	if err := s.AddToken(ctx, tok); err != nil {
		t.Fatalf("AddToken: %v", err)
	}
	got, err := s.TokenByHash(ctx, tok.Hash, t0)
	if err != nil {
		t.Fatalf("TokenByHash: %v", err)
	}
	if !bytes.Equal(got.Hash, tok.Hash) || got.Account != "alice" {
		t.Errorf("TokenByHash = %+v, want %+v", got, tok)
	}
	wantTime(t, "token CreatedAt", got.CreatedAt, tok.CreatedAt)
	wantTime(t, "token ExpiresAt", got.ExpiresAt, tok.ExpiresAt)

	if _, err := s.TokenByHash(ctx, tok.Hash, tok.ExpiresAt.Add(-time.Nanosecond)); err != nil {
		t.Errorf("TokenByHash a nanosecond before expiry: %v", err)
	}
	_, err = s.TokenByHash(ctx, tok.Hash, tok.ExpiresAt.Add(time.Nanosecond))
	wantErr(t, "TokenByHash after expiry", err, store.ErrNotFound)
	_, err = s.TokenByHash(ctx, []byte("no such token"), t0)
	wantErr(t, "TokenByHash(unknown)", err, store.ErrNotFound)

	if err := s.RevokeToken(ctx, tok.Hash); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	_, err = s.TokenByHash(ctx, tok.Hash, t0)
	wantErr(t, "TokenByHash after RevokeToken", err, store.ErrNotFound)
	wantErr(t, "RevokeToken again", s.RevokeToken(ctx, tok.Hash), store.ErrNotFound)
}

// ---- messages ----

func testSubmit(t *testing.T, s store.Store) {
	addAccount(t, s, "alice")
	addAccount(t, s, "bob")
	m := msg("alice", "bob", 1, 0)
	m.Attempts, m.LastError = 0, ""
	got := submit(t, s, m, 10)
	if got.Seq <= 0 {
		t.Errorf("Submit returned Seq %d, want > 0", got.Seq)
	}
	want := m
	want.Seq = got.Seq
	want.Status = message.Enqueued
	sameMessage(t, "Submit result", got, want)
	sameMessage(t, "Message after Submit", getMessage(t, s, "alice", m.ID), want)
	_, err := s.Message(t.Context(), "bob", m.ID)
	wantErr(t, "Message with the right id but the wrong sender", err, store.ErrNotFound)
}

// testSubmitPendingBefore: Submit tells how many other messages were
// waiting for the recipient when it stored a new one.
func testSubmitPendingBefore(t *testing.T, s store.Store) {
	ctx := t.Context()
	addAccounts(t, s, "alice", "bob", "carol", "dave")
	want := func(what string, m store.Message, n int) {
		t.Helper()
		if m.PendingBefore != n {
			t.Errorf("%s: PendingBefore = %d, want %d", what, m.PendingBefore, n)
		}
	}
	asking := func(m store.Message) store.Message { m.WantPendingBefore = true; return m }
	first := submit(t, s, asking(msg("alice", "bob", 1, 0)), 0)
	want("first for bob", first, 0)
	second := submit(t, s, asking(msg("carol", "bob", 2, 0)), 0)
	want("second for bob", second, 1)
	want("first for carol", submit(t, s, asking(msg("alice", "carol", 3, 0)), 0), 0)
	want("third for bob, not asked", submit(t, s, msg("dave", "bob", 5, 0), 0), 0)
	retry, created, err := s.Submit(ctx, asking(msg("alice", "bob", 1, 0)), 0)
	if err != nil || created {
		t.Fatalf("Submit retry: created %v, %v", created, err)
	}
	want("a retry (nothing stored)", retry, 0)
	for _, m := range []store.Message{first, second} {
		if err := markDelivered(s, ctx, m.From, m.ID, t0.Add(time.Minute)); err != nil {
			t.Fatalf("MarkDelivered: %v", err)
		}
	}
	if got := submit(t, s, asking(msg("alice", "bob", 4, 0)), 0); got.PendingBefore != 1 {
		t.Errorf("for bob after two of three were delivered: PendingBefore = %d, want 1 (dave's)", got.PendingBefore)
	}
}

func testSubmitIdempotent(t *testing.T, s store.Store) {
	ctx := t.Context()
	addAccounts(t, s, "alice", "bob", "carol", "dave")
	first := submit(t, s, msg("alice", "bob", 1, 0), 0)

	retry := msg("alice", "dave", 1, time.Minute) // same From and ID, everything else different
	retry.Sealed = []byte("different sealed text")
	got, created, err := s.Submit(ctx, retry, 0)
	if err != nil {
		t.Fatalf("Submit retry: %v", err)
	}
	if created {
		t.Errorf("Submit retry: created = true, want false")
	}
	sameMessage(t, "Submit retry result", got, first)
	if p := pendingIDs(t, s, "bob", 0); len(p) != 1 {
		t.Errorf("Pending(bob) after a retry = %v, want one message", p)
	}
	if p := pendingIDs(t, s, "dave", 0); len(p) != 0 {
		t.Errorf("Pending(dave) after a retry addressed to dave = %v, want none", p)
	}
	if n := countPending(t, s); n != 1 {
		t.Errorf("CountPending after a retry = %d, want 1", n)
	}

	// The same id from another sender is another message.
	other := submit(t, s, msg("carol", "bob", 1, time.Second), 0)
	if other.Seq == first.Seq {
		t.Errorf("carol's message got alice's Seq %d", first.Seq)
	}
	if got := getMessage(t, s, "alice", first.ID); !bytes.Equal(got.Sealed, first.Sealed) {
		t.Errorf("carol's message with alice's id changed alice's message")
	}
	if p := pendingIDs(t, s, "bob", 0); len(p) != 2 {
		t.Errorf("Pending(bob) = %v, want alice's and carol's", p)
	}

	// A retry of an accepted message is answered with it even when the
	// mailbox is now full: refusing it would make the sender believe a
	// message failed that is in fact waiting to be delivered.
	got, created, err = s.Submit(ctx, retry, 1)
	if err != nil || created || got.Seq != first.Seq {
		t.Errorf("retry into a full mailbox = (seq %d, created %v, %v), want the existing message", got.Seq, created, err)
	}

	// A retry after delivery returns the delivered message and enqueues nothing.
	if err := markDelivered(s, ctx, "alice", first.ID, t0.Add(time.Hour)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	got, created, err = s.Submit(ctx, retry, 0)
	if err != nil || created {
		t.Fatalf("retry after delivery = created %v, %v; want the existing message", created, err)
	}
	if got.Status != message.Delivered || got.Seq != first.Seq {
		t.Errorf("retry after delivery returned status %q seq %d, want delivered seq %d", got.Status, got.Seq, first.Seq)
	}
	if p := pendingIDs(t, s, "bob", 0); len(p) != 1 {
		t.Errorf("Pending(bob) after delivery and a retry = %v, want only carol's", p)
	}
}

func testSubmitSameIDConcurrent(t *testing.T, s store.Store) {
	addAccount(t, s, "alice")
	addAccount(t, s, "bob")
	const n = 16
	var (
		mu      sync.Mutex
		created int
		seqSet  = map[int64]bool{}
		errs    []error
	)
	parallel(n, func(i int) {
		got, c, err := s.Submit(context.Background(), msg("alice", "bob", 7, 0), 0)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		if c {
			created++
		}
		seqSet[got.Seq] = true
	})
	if len(errs) > 0 {
		t.Fatalf("concurrent retries failed: %v", errs)
	}
	if created != 1 || len(seqSet) != 1 {
		t.Errorf("%d concurrent submits of one message: %d created, %d distinct Seqs; want 1 and 1", n, created, len(seqSet))
	}
	if p := pendingIDs(t, s, "bob", 0); len(p) != 1 {
		t.Errorf("Pending(bob) = %v, want one message", p)
	}
}

func testMailboxBound(t *testing.T, s store.Store) {
	ctx := t.Context()
	addAccounts(t, s, "alice", "bob", "carol")
	const bound = 3
	var accepted []store.Message
	for i := range bound {
		accepted = append(accepted, submit(t, s, msg("alice", "bob", i, time.Duration(i)*time.Second), bound))
	}
	over := msg("alice", "bob", 100, 10*time.Second)
	_, _, err := s.Submit(ctx, over, bound)
	wantErr(t, "Submit past the bound", err, store.ErrMailboxFull)
	_, err = s.Message(ctx, over.From, over.ID)
	wantErr(t, "refused message", err, store.ErrNotFound)

	// Another recipient has its own mailbox.
	submit(t, s, msg("alice", "carol", 101, 11*time.Second), bound)
	// maxPending <= 0: no bound.
	unbounded := submit(t, s, msg("carol", "bob", 102, 12*time.Second), 0)
	if p := pendingIDs(t, s, "bob", 0); len(p) != bound+1 {
		t.Fatalf("Pending(bob) = %d messages, want %d", len(p), bound+1)
	}

	// Delivered messages leave the mailbox.
	for _, m := range accepted[:2] {
		if err := markDelivered(s, ctx, m.From, m.ID, t0.Add(time.Minute)); err != nil {
			t.Fatalf("MarkDelivered: %v", err)
		}
	}
	submit(t, s, over, bound) // 2 pending before it
	_, _, err = s.Submit(ctx, msg("alice", "bob", 103, 13*time.Second), bound)
	wantErr(t, "Submit past the bound after deliveries", err, store.ErrMailboxFull)

	// Expired messages leave the mailbox too.
	if _, err := s.ExpireDue(ctx, unbounded.ExpiresAt); err != nil {
		t.Fatalf("ExpireDue: %v", err)
	}
	if p := pendingIDs(t, s, "bob", 0); len(p) != 0 {
		t.Fatalf("Pending(bob) after expiry = %v, want none", p)
	}
	for i := range bound {
		submit(t, s, msg("carol", "bob", 200+i, lifetime+time.Hour), bound)
	}
}

func testMailboxBoundConcurrent(t *testing.T, s store.Store) {
	addAccount(t, s, "bob")
	const senders, bound = 40, 7
	for i := range senders {
		addAccount(t, s, fmt.Sprintf("sender%02d", i))
	}
	var (
		mu             sync.Mutex
		created, fulls int
		others         []error
	)
	parallel(senders, func(i int) {
		_, c, err := s.Submit(context.Background(), msg(fmt.Sprintf("sender%02d", i), "bob", i, 0), bound)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, store.ErrMailboxFull):
			fulls++
		case err != nil:
			others = append(others, err)
		case c:
			created++
		}
	})
	if len(others) > 0 {
		t.Fatalf("unexpected errors: %v", others)
	}
	if created != bound || fulls != senders-bound {
		t.Errorf("%d concurrent submits into a mailbox of %d: %d created, %d refused; want %d and %d",
			senders, bound, created, fulls, bound, senders-bound)
	}
	if p := pendingIDs(t, s, "bob", 0); len(p) != bound {
		t.Errorf("Pending(bob) holds %d messages, want %d", len(p), bound)
	}
	if n := countPending(t, s); n != bound {
		t.Errorf("CountPending = %d, want %d", n, bound)
	}
}

func testConcurrentSubmits(t *testing.T, s store.Store) {
	const workers, each = 8, 25
	rcpts := []string{"r0", "r1", "r2"}
	addAccounts(t, s, rcpts...)
	for w := range workers {
		addAccount(t, s, fmt.Sprintf("w%d", w))
	}
	var mu sync.Mutex
	var all []store.Message
	var errs []error
	parallel(workers, func(w int) {
		from := fmt.Sprintf("w%d", w)
		var mine []store.Message
		for i := range each {
			m := msg(from, rcpts[(w+i)%len(rcpts)], w*1000+i, time.Duration(i)*time.Millisecond)
			got, created, err := s.Submit(context.Background(), m, 0)
			if err == nil && !created {
				err = fmt.Errorf("Submit(%s from %s): created = false for a new message", m.ID, from)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			mine = append(mine, got)
		}
		// One goroutine's submissions are sequential: Seq follows their order.
		for i := 1; i < len(mine); i++ {
			if mine[i].Seq <= mine[i-1].Seq {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: Seq %d after %d", from, mine[i].Seq, mine[i-1].Seq))
				mu.Unlock()
			}
		}
		mu.Lock()
		all = append(all, mine...)
		mu.Unlock()
	})
	if len(errs) > 0 {
		t.Fatalf("concurrent submits: %v", errs)
	}
	seen := map[int64]bool{}
	for _, m := range all {
		if seen[m.Seq] {
			t.Fatalf("Seq %d given twice", m.Seq)
		}
		seen[m.Seq] = true
		if got := getMessage(t, s, m.From, m.ID); got.Seq != m.Seq || !bytes.Equal(got.Sealed, m.Sealed) {
			t.Errorf("Message(%s, %s) = seq %d, want the submitted seq %d and text", m.From, m.ID, got.Seq, m.Seq)
		}
	}
	total := 0
	for _, r := range rcpts {
		ms, err := s.Pending(t.Context(), r, 0, time.Time{}, 0)
		if err != nil {
			t.Fatalf("Pending(%s): %v", r, err)
		}
		if !slices.IsSorted(seqs(ms)) {
			t.Errorf("Pending(%s) not in Seq order: %v", r, seqs(ms))
		}
		total += len(ms)
	}
	if total != workers*each {
		t.Errorf("Pending holds %d messages in all, want %d", total, workers*each)
	}
	if n := countPending(t, s); n != workers*each {
		t.Errorf("CountPending = %d, want %d", n, workers*each)
	}
}

func testPendingOrder(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob", "carol", "dave")
	ctx := t.Context()
	m1 := submit(t, s, msg("alice", "bob", 1, 0), 0)
	m2 := submit(t, s, msg("carol", "bob", 2, time.Second), 0)
	m3 := submit(t, s, msg("alice", "bob", 3, 2*time.Second), 0)
	submit(t, s, msg("alice", "dave", 4, 3*time.Second), 0)
	if !(m1.Seq < m2.Seq && m2.Seq < m3.Seq) {
		t.Fatalf("Seqs %d %d %d do not follow submission order", m1.Seq, m2.Seq, m3.Seq)
	}
	got, err := s.Pending(ctx, "bob", 0, time.Time{}, 0)
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("Pending(bob) = %v, want 3 messages", ids(got))
	}
	for i, want := range []store.Message{m1, m2, m3} {
		sameMessage(t, fmt.Sprintf("Pending(bob)[%d]", i), got[i], want)
	}
	if p := pendingIDs(t, s, "bob", 2); !slices.Equal(p, ids([]store.Message{m1, m2})) {
		t.Errorf("Pending(bob, limit 2) = %v, want the first two", p)
	}
	for _, c := range []struct {
		after int64
		limit int
		want  []store.Message
	}{
		{m1.Seq, 0, []store.Message{m2, m3}},
		{m1.Seq, 1, []store.Message{m2}},
		{m2.Seq - 1, 0, []store.Message{m2, m3}},
		{m3.Seq, 0, nil},
	} {
		got, err := s.Pending(ctx, "bob", c.after, time.Time{}, c.limit)
		if err != nil {
			t.Fatalf("Pending(bob, after %d): %v", c.after, err)
		}
		if !slices.Equal(ids(got), ids(c.want)) {
			t.Errorf("Pending(bob, after %d, limit %d) = %v, want %v", c.after, c.limit, ids(got), ids(c.want))
		}
	}
	if err := markDelivered(s, ctx, "carol", m2.ID, t0.Add(time.Minute)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	if p := pendingIDs(t, s, "bob", 0); !slices.Equal(p, ids([]store.Message{m1, m3})) {
		t.Errorf("Pending(bob) after delivering m2 = %v, want m1 m3", p)
	}
	if p := pendingIDs(t, s, "nobody", 0); len(p) != 0 {
		t.Errorf("Pending(nobody) = %v, want none", p)
	}
}

func testRecordAttempt(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob")
	ctx := t.Context()
	m := submit(t, s, msg("alice", "bob", 1, 0), 0)
	next := t0.Add(30 * time.Second)
	if err := s.RecordAttempt(ctx, attempt("alice", m.ID, 2, next, "timeout after 12s")); err != nil {
		t.Fatalf("RecordAttempt: %v", err)
	}
	want := m
	want.Attempts, want.NextAttempt, want.LastError = 2, next, "timeout after 12s"
	sameMessage(t, "Message after RecordAttempt", getMessage(t, s, "alice", m.ID), want)
	p, err := s.Pending(ctx, "bob", 0, time.Time{}, 0)
	if err != nil || len(p) != 1 {
		t.Fatalf("Pending(bob) = %v, %v; want the message", ids(p), err)
	}
	sameMessage(t, "Pending after RecordAttempt", p[0], want)

	// Zero next attempt: as soon as the recipient is online.
	if err := s.RecordAttempt(ctx, attempt("alice", m.ID, 3, time.Time{}, "")); err != nil {
		t.Fatalf("RecordAttempt: %v", err)
	}
	if got := getMessage(t, s, "alice", m.ID); got.Attempts != 3 || !got.NextAttempt.IsZero() || got.LastError != "" {
		t.Errorf("after RecordAttempt(3, zero, \"\"): attempts %d next %v error %q", got.Attempts, got.NextAttempt, got.LastError)
	}

	wantErr(t, "RecordAttempt(unknown)", s.RecordAttempt(ctx, attempt("alice", id(99), 1, next, "x")), store.ErrNotFound)
	wantErr(t, "RecordAttempt(wrong sender)", s.RecordAttempt(ctx, attempt("bob", m.ID, 1, next, "x")), store.ErrNotFound)
	if err := markDelivered(s, ctx, "alice", m.ID, t0.Add(time.Minute)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	wantErr(t, "RecordAttempt after delivery", s.RecordAttempt(ctx, attempt("alice", m.ID, 9, next, "late")), store.ErrNotFound)
	if got := getMessage(t, s, "alice", m.ID); got.Attempts == 9 {
		t.Errorf("RecordAttempt on a delivered message changed it")
	}
}

func testRecordAttempts(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob", "carol")
	ctx := t.Context()
	m1 := submit(t, s, msg("alice", "bob", 1, 0), 0)
	m2 := submit(t, s, msg("carol", "bob", 2, time.Second), 0)
	if err := markDelivered(s, ctx, "carol", m2.ID, t0.Add(time.Minute)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	next := t0.Add(30 * time.Second)
	as := []store.Attempt{
		{Key: store.Key{From: "alice", ID: m1.ID}, Attempts: 2, Next: next, LastError: "timeout after 12s"},
		{Key: store.Key{From: "carol", ID: m2.ID}, Attempts: 5, Next: next},
		{Key: store.Key{From: "alice", ID: id(99)}, Attempts: 1, Next: next},
	}
	errs, err := s.RecordAttempts(ctx, as)
	if err != nil {
		t.Fatalf("RecordAttempts: %v", err)
	}
	if len(errs) != len(as) {
		t.Fatalf("RecordAttempts answered %d results for %d", len(errs), len(as))
	}
	for i, want := range []error{nil, store.ErrNotFound, store.ErrNotFound} {
		wantErr(t, fmt.Sprintf("RecordAttempts result %d", i), errs[i], want)
	}
	want := m1
	want.Attempts, want.NextAttempt, want.LastError = 2, next, "timeout after 12s"
	sameMessage(t, "Message after RecordAttempts", getMessage(t, s, "alice", m1.ID), want)
	if got := getMessage(t, s, "carol", m2.ID); got.Attempts == 5 {
		t.Errorf("RecordAttempts on a delivered message changed it")
	}
}

func testMarkDelivered(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob")
	ctx := t.Context()
	m := submit(t, s, msg("alice", "bob", 1, 0), 0)
	other := submit(t, s, msg("alice", "bob", 2, time.Second), 0)
	at := t0.Add(5 * time.Minute)
	if err := markDelivered(s, ctx, "alice", m.ID, at); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	got := getMessage(t, s, "alice", m.ID)
	if got.Status != message.Delivered {
		t.Errorf("status after MarkDelivered = %q, want delivered", got.Status)
	}
	if len(got.Sealed) != 0 || got.KeyPeriod != 0 {
		t.Errorf("after MarkDelivered the sealed text is still there (%d bytes, period %d)", len(got.Sealed), got.KeyPeriod)
	}
	wantTime(t, "DeliveredAt", got.DeliveredAt, at)
	wantTime(t, "SubmittedAt after delivery", got.SubmittedAt, m.SubmittedAt)
	wantTime(t, "ExpiresAt after delivery", got.ExpiresAt, m.ExpiresAt)
	if got.Seq != m.Seq || got.To != "bob" {
		t.Errorf("MarkDelivered changed seq or recipient: %+v", got)
	}

	rs := reports(t, s, "alice")
	if len(rs) != 1 {
		t.Fatalf("reports for alice = %+v, want one delivery report", rs)
	}
	r := rs[0]
	if r.To != "alice" || r.MessageID != m.ID || r.Recipient != "bob" || r.Status != message.Delivered {
		t.Errorf("delivery report = %+v, want To alice, MessageID %s, Recipient bob, Status delivered", r, m.ID)
	}
	wantTime(t, "report At", r.At, at)
	// "Reports wait as long as messages do."
	wantTime(t, "report ExpiresAt", r.ExpiresAt, at.Add(lifetime))

	if p := pendingIDs(t, s, "bob", 0); !slices.Equal(p, ids([]store.Message{other})) {
		t.Errorf("Pending(bob) after delivery = %v, want only the other message", p)
	}
	if n := countPending(t, s); n != 1 {
		t.Errorf("CountPending after delivery = %d, want 1", n)
	}

	wantErr(t, "MarkDelivered again", markDelivered(s, ctx, "alice", m.ID, at.Add(time.Hour)), store.ErrNotFound)
	wantTime(t, "DeliveredAt after a second MarkDelivered", getMessage(t, s, "alice", m.ID).DeliveredAt, at)
	if rs := reports(t, s, "alice"); len(rs) != 1 {
		t.Errorf("a second MarkDelivered queued another report: %+v", rs)
	}
	wantErr(t, "MarkDelivered(unknown)", markDelivered(s, ctx, "alice", id(99), at), store.ErrNotFound)
	wantErr(t, "MarkDelivered(wrong sender)", markDelivered(s, ctx, "bob", other.ID, at), store.ErrNotFound)

	// A delivered message is never expired.
	expired, err := s.ExpireDue(ctx, m.ExpiresAt.Add(time.Hour))
	if err != nil {
		t.Fatalf("ExpireDue: %v", err)
	}
	for _, e := range expired {
		if e.ID == m.ID {
			t.Errorf("ExpireDue expired a delivered message")
		}
	}
	if got := getMessage(t, s, "alice", m.ID); got.Status != message.Delivered {
		t.Errorf("status after ExpireDue = %q, want still delivered", got.Status)
	}
}

func testMarkDeliveredAll(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob", "carol")
	ctx := t.Context()
	m1 := submit(t, s, msg("alice", "bob", 1, 0), 0)
	m2 := submit(t, s, msg("carol", "bob", 2, time.Second), 0)
	m3 := submit(t, s, msg("alice", "bob", 3, 2*time.Second), 0)
	if err := markDelivered(s, ctx, "carol", m2.ID, t0.Add(time.Minute)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	at := t0.Add(5 * time.Minute)
	keys := []store.Key{{From: "alice", ID: m1.ID}, {From: "carol", ID: m2.ID}, {From: "alice", ID: id(99)}, {From: "alice", ID: m3.ID}}
	errs, err := s.MarkDeliveredAll(ctx, keys, at)
	if err != nil {
		t.Fatalf("MarkDeliveredAll: %v", err)
	}
	if len(errs) != len(keys) {
		t.Fatalf("MarkDeliveredAll answered %d results for %d keys", len(errs), len(keys))
	}
	for i, want := range []error{nil, store.ErrNotFound, store.ErrNotFound, nil} {
		wantErr(t, fmt.Sprintf("MarkDeliveredAll result %d (%s)", i, keys[i].ID), errs[i], want)
	}
	for _, m := range []store.Message{m1, m3} {
		got := getMessage(t, s, "alice", m.ID)
		if got.Status != message.Delivered || len(got.Sealed) != 0 {
			t.Errorf("%s after MarkDeliveredAll: status %q, %d bytes sealed", m.ID, got.Status, len(got.Sealed))
		}
		wantTime(t, "DeliveredAt", got.DeliveredAt, at)
	}
	wantTime(t, "DeliveredAt of the one delivered before", getMessage(t, s, "carol", m2.ID).DeliveredAt, t0.Add(time.Minute))
	if rs := reports(t, s, "alice"); len(rs) != 2 || rs[0].MessageID != m1.ID || rs[1].MessageID != m3.ID {
		t.Errorf("alice's reports = %+v, want the reports of m1 and m3", rs)
	}
	if n := countPending(t, s); n != 0 {
		t.Errorf("CountPending = %d, want 0", n)
	}
	if errs, err := s.MarkDeliveredAll(ctx, nil, at); err != nil || len(errs) != 0 {
		t.Errorf("MarkDeliveredAll of nothing = %v, %v", errs, err)
	}
}

func testExpireDue(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob", "carol", "dave")
	ctx := t.Context()
	m1 := submit(t, s, msg("alice", "bob", 1, 0), 0)          // expires t0+72h
	m2 := submit(t, s, msg("alice", "bob", 2, time.Hour), 0)  // expires t0+73h
	m3 := submit(t, s, msg("carol", "dave", 3, 0), 0)         // expires t0+72h
	m4 := submit(t, s, msg("carol", "bob", 4, -time.Hour), 0) // expires t0+71h, delivered first
	if err := markDelivered(s, ctx, m4.From, m4.ID, t0); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	deadline := m1.ExpiresAt

	if got, err := s.ExpireDue(ctx, deadline.Add(-time.Nanosecond)); err != nil || len(got) != 0 {
		t.Fatalf("ExpireDue a nanosecond early = %v, %v; want nothing", ids(got), err)
	}
	got, err := s.ExpireDue(ctx, deadline) // ExpiresAt <= now: due exactly at its time
	if err != nil {
		t.Fatalf("ExpireDue: %v", err)
	}
	gotIDs := ids(got)
	slices.Sort(gotIDs)
	if want := ids([]store.Message{m1, m3}); !slices.Equal(gotIDs, want) {
		t.Fatalf("ExpireDue returned %v, want %v", gotIDs, want)
	}
	for _, e := range got {
		if len(e.Sealed) != 0 {
			t.Errorf("ExpireDue returned message %s with its sealed text", e.ID)
		}
		if e.Status != message.Expired {
			t.Errorf("ExpireDue returned message %s with status %q, want expired", e.ID, e.Status)
		}
	}
	for _, m := range []store.Message{m1, m3} {
		g := getMessage(t, s, m.From, m.ID)
		if g.Status != message.Expired || len(g.Sealed) != 0 || g.KeyPeriod != 0 {
			t.Errorf("message %s after expiry: status %q, %d bytes sealed, period %d; want expired and no text",
				m.ID, g.Status, len(g.Sealed), g.KeyPeriod)
		}
		wantTime(t, "ExpiresAt after expiry", g.ExpiresAt, m.ExpiresAt)
	}
	if g := getMessage(t, s, "alice", m2.ID); g.Status != message.Enqueued || !bytes.Equal(g.Sealed, m2.Sealed) {
		t.Errorf("message not yet due: status %q, sealed %q; want enqueued with its text", g.Status, g.Sealed)
	}
	if p := pendingIDs(t, s, "bob", 0); !slices.Equal(p, ids([]store.Message{m2})) {
		t.Errorf("Pending(bob) after expiry = %v, want only m2", p)
	}
	if n := countPending(t, s); n != 1 {
		t.Errorf("CountPending after expiry = %d, want 1", n)
	}

	for _, c := range []struct {
		sender string
		m      store.Message
	}{{"alice", m1}, {"carol", m3}} {
		var found bool
		for _, r := range reports(t, s, c.sender) {
			if r.MessageID != c.m.ID {
				continue
			}
			found = true
			if r.Status != message.Expired || r.Recipient != c.m.To || r.To != c.sender {
				t.Errorf("expiry report %+v, want status expired, recipient %s, to %s", r, c.m.To, c.sender)
			}
			if !r.ExpiresAt.After(deadline) {
				t.Errorf("expiry report ExpiresAt %v is not after the sweep at %v: it would be deleted unsent", r.ExpiresAt, deadline)
			}
		}
		if !found {
			t.Errorf("no expiry report for %s about %s", c.sender, c.m.ID)
		}
	}
	if got, err := s.ExpireDue(ctx, deadline); err != nil || len(got) != 0 {
		t.Errorf("second ExpireDue = %v, %v; want nothing", ids(got), err)
	}
	wantErr(t, "MarkDelivered on an expired message", markDelivered(s, ctx, "alice", m1.ID, deadline), store.ErrNotFound)
}

func testExpireReports(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob")
	ctx := t.Context()
	m := submit(t, s, msg("alice", "bob", 1, 0), 0)
	if err := markDelivered(s, ctx, "alice", m.ID, t0.Add(time.Minute)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	rs := reports(t, s, "alice")
	if len(rs) != 1 {
		t.Fatalf("reports = %+v, want one", rs)
	}
	end := rs[0].ExpiresAt
	if _, err := s.ExpireDue(ctx, end.Add(-time.Nanosecond)); err != nil {
		t.Fatalf("ExpireDue: %v", err)
	}
	if rs := reports(t, s, "alice"); len(rs) != 1 {
		t.Errorf("report deleted before its ExpiresAt")
	}
	if _, err := s.ExpireDue(ctx, end); err != nil {
		t.Fatalf("ExpireDue: %v", err)
	}
	if rs := reports(t, s, "alice"); len(rs) != 0 {
		t.Errorf("report still there at its ExpiresAt: %+v", rs)
	}
}

func testCountPending(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob", "carol")
	ctx := t.Context()
	if n := countPending(t, s); n != 0 {
		t.Errorf("CountPending on an empty store = %d", n)
	}
	a := submit(t, s, msg("alice", "bob", 1, 0), 0)
	submit(t, s, msg("alice", "carol", 2, 0), 0)
	b := submit(t, s, msg("carol", "bob", 3, time.Hour), 0)
	if n := countPending(t, s); n != 3 {
		t.Errorf("CountPending = %d, want 3", n)
	}
	if err := markDelivered(s, ctx, "alice", a.ID, t0); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	if _, err := s.ExpireDue(ctx, a.ExpiresAt); err != nil {
		t.Fatalf("ExpireDue: %v", err)
	}
	if n := countPending(t, s); n != 1 {
		t.Errorf("CountPending after one delivery and one expiry = %d, want 1 (%s)", n, b.ID)
	}
}

func testMessages(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob", "carol", "dave", "eve", "frank")
	ctx := t.Context()
	m1 := submit(t, s, msg("alice", "bob", 1, 0), 0)
	m2 := submit(t, s, msg("bob", "carol", 2, time.Second), 0)
	m3 := submit(t, s, msg("carol", "dave", 3, 2*time.Second), 0)
	m4 := submit(t, s, msg("dave", "alice", 4, 3*time.Second), 0)
	if err := markDelivered(s, ctx, "bob", m2.ID, t0.Add(time.Minute)); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	list := func(f store.MessageFilter) []store.Message {
		t.Helper()
		ms, err := s.Messages(ctx, f)
		if err != nil {
			t.Fatalf("Messages(%+v): %v", f, err)
		}
		for _, m := range ms {
			if len(m.Sealed) != 0 {
				t.Fatalf("Messages(%+v) returned message %s with its sealed text", f, m.ID)
			}
		}
		return ms
	}
	for _, c := range []struct {
		name string
		f    store.MessageFilter
		want []store.Message
	}{
		{"all, newest first", store.MessageFilter{}, []store.Message{m4, m3, m2, m1}},
		{"from or to bob", store.MessageFilter{Account: "bob"}, []store.Message{m2, m1}},
		{"from or to alice", store.MessageFilter{Account: "alice"}, []store.Message{m4, m1}},
		{"delivered", store.MessageFilter{Status: message.Delivered}, []store.Message{m2}},
		{"enqueued to or from carol", store.MessageFilter{Account: "carol", Status: message.Enqueued}, []store.Message{m3}},
		{"limit", store.MessageFilter{Limit: 2}, []store.Message{m4, m3}},
		{"nobody", store.MessageFilter{Account: "nobody"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := list(c.f)
			if !slices.Equal(ids(got), ids(c.want)) {
				t.Errorf("Messages(%+v) = %v, want %v", c.f, ids(got), ids(c.want))
			}
		})
	}
	got := list(store.MessageFilter{Account: "bob", Status: message.Delivered})
	if len(got) != 1 {
		t.Fatalf("delivered messages of bob = %v", ids(got))
	}
	if got[0].Status != message.Delivered || got[0].To != "carol" || got[0].Seq != m2.Seq {
		t.Errorf("listed message = %+v", got[0])
	}
	wantTime(t, "listed DeliveredAt", got[0].DeliveredAt, t0.Add(time.Minute))
	wantTime(t, "listed SubmittedAt", got[0].SubmittedAt, m2.SubmittedAt)

	// Limit 0 means a default of 100.
	for i := range 101 {
		submit(t, s, msg("eve", "frank", 100+i, 0), 0)
	}
	if got := list(store.MessageFilter{}); len(got) != 100 {
		t.Errorf("Messages with Limit 0 returned %d, want the default of 100", len(got))
	}
}

func testReports(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob", "carol")
	ctx := t.Context()
	var delivered []store.Message
	for i := range 3 {
		m := submit(t, s, msg("alice", "bob", i, time.Duration(i)*time.Second), 0)
		delivered = append(delivered, m)
	}
	carols := submit(t, s, msg("carol", "bob", 10, 0), 0)
	for i, m := range []store.Message{delivered[1], carols, delivered[0], delivered[2]} {
		if err := markDelivered(s, ctx, m.From, m.ID, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatalf("MarkDelivered: %v", err)
		}
	}
	rs := reports(t, s, "alice")
	var got []string
	for i, r := range rs {
		got = append(got, r.MessageID)
		if i > 0 && r.Seq <= rs[i-1].Seq {
			t.Errorf("PendingReports not in Seq order: %d after %d", r.Seq, rs[i-1].Seq)
		}
	}
	if want := []string{delivered[1].ID, delivered[0].ID, delivered[2].ID}; !slices.Equal(got, want) {
		t.Errorf("PendingReports(alice) = %v, want %v (in the order they were queued)", got, want)
	}
	limited, err := s.PendingReports(ctx, "alice", 2)
	if err != nil || len(limited) != 2 || limited[0].Seq != rs[0].Seq {
		t.Errorf("PendingReports(alice, 2) = %+v, %v; want the first two", limited, err)
	}
	if err := s.DeleteReport(ctx, rs[0].Seq); err != nil {
		t.Fatalf("DeleteReport: %v", err)
	}
	if left := reports(t, s, "alice"); len(left) != 2 || left[0].Seq != rs[1].Seq {
		t.Errorf("after DeleteReport: %+v, want the last two", left)
	}
	wantErr(t, "DeleteReport again", s.DeleteReport(ctx, rs[0].Seq), store.ErrNotFound)
	if rs := reports(t, s, "carol"); len(rs) != 1 || rs[0].MessageID != carols.ID {
		t.Errorf("PendingReports(carol) = %+v, want carol's report only", rs)
	}
}

// ---- data keys ----

func testDataKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.DataKey(ctx, 1)
	wantErr(t, "DataKey of a period without a key", err, store.ErrNotFound)
	k1, k1b := []byte("wrapped key one, 60 bytes ......"), []byte("wrapped key one, a second try ..")
	got, err := s.PutDataKey(ctx, 1, k1)
	if err != nil || !bytes.Equal(got, k1) {
		t.Fatalf("PutDataKey(1) = %q, %v; want the key", got, err)
	}
	got, err = s.PutDataKey(ctx, 1, k1b)
	if err != nil || !bytes.Equal(got, k1) {
		t.Errorf("second PutDataKey(1) = %q, %v; want the first key", got, err)
	}
	if got, err := s.DataKey(ctx, 1); err != nil || !bytes.Equal(got, k1) {
		t.Errorf("DataKey(1) = %q, %v; want the first key", got, err)
	}
	for _, p := range []int64{2, 3, 5} {
		if _, err := s.PutDataKey(ctx, p, []byte(fmt.Sprintf("key %d", p))); err != nil {
			t.Fatalf("PutDataKey(%d): %v", p, err)
		}
	}
	n, err := s.DeleteDataKeys(ctx, 3)
	if err != nil || n != 2 {
		t.Fatalf("DeleteDataKeys(before 3) = %d, %v; want 2", n, err)
	}
	for _, p := range []int64{1, 2} {
		_, err := s.DataKey(ctx, p)
		wantErr(t, fmt.Sprintf("DataKey(%d) after it was destroyed", p), err, store.ErrNotFound)
	}
	for _, p := range []int64{3, 5} {
		if got, err := s.DataKey(ctx, p); err != nil || string(got) != fmt.Sprintf("key %d", p) {
			t.Errorf("DataKey(%d) = %q, %v; want its key", p, got, err)
		}
	}
	if n, err := s.DeleteDataKeys(ctx, 3); err != nil || n != 0 {
		t.Errorf("DeleteDataKeys(before 3) again = %d, %v; want 0", n, err)
	}
	// A destroyed period's key is not resurrected by the old value.
	if got, err := s.PutDataKey(ctx, 1, k1b); err != nil || !bytes.Equal(got, k1b) {
		t.Errorf("PutDataKey(1) after destruction = %q, %v; want the new key", got, err)
	}
}

func testPutDataKeyConcurrent(t *testing.T, s store.Store) {
	const n = 12
	got := make([][]byte, n)
	errs := make([]error, n)
	parallel(n, func(i int) {
		got[i], errs[i] = s.PutDataKey(context.Background(), 77, []byte(fmt.Sprintf("candidate key %02d", i)))
	})
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("PutDataKey: %v", errs[i])
		}
		if !bytes.Equal(got[i], got[0]) {
			t.Fatalf("concurrent creators disagree: %q and %q", got[0], got[i])
		}
	}
	stored, err := s.DataKey(t.Context(), 77)
	if err != nil || !bytes.Equal(stored, got[0]) {
		t.Errorf("DataKey(77) = %q, %v; want the key every creator got, %q", stored, err, got[0])
	}
}

// ---- the schedule ----

// testPendingDue: the listing returns only what is due by the time asked
// for, in Seq order, and the schedule reads back as it was written.
func testPendingDue(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob", "carol")
	ctx := t.Context()
	m1 := submit(t, s, msg("alice", "bob", 1, 0), 0)
	m2 := submit(t, s, msg("carol", "bob", 2, time.Second), 0)
	m3 := submit(t, s, msg("alice", "bob", 3, 2*time.Second), 0)
	now := t0.Add(time.Minute)
	later := now.Add(30 * time.Second)
	if err := s.RecordAttempt(ctx, attempt("alice", m1.ID, 2, later, "timeout")); err != nil {
		t.Fatalf("RecordAttempt: %v", err)
	}
	if err := s.RecordAttempt(ctx, attempt("carol", m2.ID, 1, now, "")); err != nil {
		t.Fatalf("RecordAttempt: %v", err)
	}
	due := func(at time.Time, after int64) []string {
		t.Helper()
		ms, err := s.Pending(ctx, "bob", after, at, 0)
		if err != nil {
			t.Fatalf("Pending(bob, due %v): %v", at, err)
		}
		return ids(ms)
	}
	for _, c := range []struct {
		what  string
		at    time.Time
		after int64
		want  []store.Message
	}{
		{"a nanosecond before m2's next attempt", now.Add(-time.Nanosecond), 0, []store.Message{m3}},
		{"at m2's next attempt (NextAttempt <= due)", now, 0, []store.Message{m2, m3}},
		{"a nanosecond before m1's", later.Add(-time.Nanosecond), 0, []store.Message{m2, m3}},
		{"at m1's", later, 0, []store.Message{m1, m2, m3}},
		{"at m1's, after m2", later, m2.Seq, []store.Message{m3}},
		{"the zero time: any NextAttempt", time.Time{}, 0, []store.Message{m1, m2, m3}},
	} {
		if got := due(c.at, c.after); !slices.Equal(got, ids(c.want)) {
			t.Errorf("Pending(bob) %s = %v, want %v", c.what, got, ids(c.want))
		}
	}
	if ms, err := s.Pending(ctx, "bob", 0, later, 2); err != nil || !slices.Equal(ids(ms), ids([]store.Message{m1, m2})) {
		t.Errorf("Pending(bob, limit 2) = %v, %v; want m1 m2", ids(ms), err)
	}
	want := m1
	want.Attempts, want.NextAttempt, want.LastError = 2, later, "timeout"
	sameMessage(t, "Message with its schedule", getMessage(t, s, "alice", m1.ID), want)
	ms, err := s.Pending(ctx, "bob", 0, later, 1)
	if err != nil || len(ms) != 1 {
		t.Fatalf("Pending(bob, limit 1) = %v, %v", ids(ms), err)
	}
	sameMessage(t, "Pending with its schedule", ms[0], want)
	if n := countPending(t, s); n != 3 {
		t.Errorf("CountPending = %d, want 3: a message not due is still pending", n)
	}
}

// testParked: a parked message is never listed, whatever the time, reads
// back parked, keeps its place in the mailbox bound and the counts, and is
// expired with a failure report at its time like any other.
func testParked(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob")
	ctx := t.Context()
	m1 := submit(t, s, msg("alice", "bob", 1, 0), 0)
	asked := msg("alice", "bob", 2, time.Second)
	asked.Parked = true // ignored: a new message is never parked
	m2 := submit(t, s, asked, 0)
	if m2.Parked || getMessage(t, s, "alice", m2.ID).Parked {
		t.Fatalf("Submit stored a new message parked")
	}
	park := attempt("alice", m1.ID, 5, t0.Add(time.Minute), "connection lost")
	park.Parked = true
	if err := s.RecordAttempt(ctx, park); err != nil {
		t.Fatalf("RecordAttempt(parked): %v", err)
	}
	want := m1
	want.Attempts, want.NextAttempt, want.LastError, want.Parked = 5, t0.Add(time.Minute), "connection lost", true
	sameMessage(t, "Message after parking", getMessage(t, s, "alice", m1.ID), want)
	for _, at := range []time.Time{{}, t0.Add(time.Minute), t0.Add(71 * time.Hour)} {
		ms, err := s.Pending(ctx, "bob", 0, at, 0)
		if err != nil {
			t.Fatalf("Pending: %v", err)
		}
		if !slices.Equal(ids(ms), ids([]store.Message{m2})) {
			t.Errorf("Pending(bob, due %v) = %v, want only m2 (m1 is parked)", at, ids(ms))
		}
	}
	if n, err := s.Reschedule(ctx, "bob", t0); err != nil || n != 0 {
		t.Errorf("Reschedule with only a parked message scheduled later = %d, %v; want 0", n, err)
	}
	if g := getMessage(t, s, "alice", m1.ID); !g.Parked || !g.NextAttempt.Equal(park.Next) {
		t.Errorf("Reschedule touched a parked message: %+v", g)
	}
	if n := countPending(t, s); n != 2 {
		t.Errorf("CountPending = %d, want 2: a parked message is still pending", n)
	}
	if _, created, err := s.Submit(ctx, msg("alice", "bob", 3, 2*time.Second), 2); !errors.Is(err, store.ErrMailboxFull) || created {
		t.Errorf("Submit past a bound of 2 with one parked = %v, %v; want ErrMailboxFull", created, err)
	}
	// Recording again replaces the parked state too.
	if err := s.RecordAttempt(ctx, attempt("alice", m2.ID, 1, time.Time{}, "")); err != nil {
		t.Fatalf("RecordAttempt: %v", err)
	}
	if g := getMessage(t, s, "alice", m2.ID); g.Parked {
		t.Errorf("m2 parked by another message's RecordAttempt")
	}
	expired, err := s.ExpireDue(ctx, m1.ExpiresAt)
	if err != nil || !slices.Equal(ids(expired), ids([]store.Message{m1})) {
		t.Fatalf("ExpireDue = %v, %v; want the parked m1", ids(expired), err)
	}
	var found bool
	for _, r := range reports(t, s, "alice") {
		found = found || (r.MessageID == m1.ID && r.Status == message.Expired)
	}
	if !found {
		t.Errorf("no failure report for the parked message that expired")
	}
	wantErr(t, "RecordAttempt on an expired parked message", s.RecordAttempt(ctx, park), store.ErrNotFound)
}

// testReschedule: a registration makes every unparked message scheduled
// later due now, and leaves the rest of the bookkeeping alone.
func testReschedule(t *testing.T, s store.Store) {
	addAccounts(t, s, "alice", "bob", "carol")
	ctx := t.Context()
	m1 := submit(t, s, msg("alice", "bob", 1, 0), 0)
	m2 := submit(t, s, msg("alice", "bob", 2, time.Second), 0)
	m3 := submit(t, s, msg("alice", "carol", 3, 2*time.Second), 0)
	now := t0.Add(time.Minute)
	for _, a := range []store.Attempt{
		attempt("alice", m1.ID, 3, now.Add(30*time.Second), "timeout"),
		attempt("alice", m2.ID, 1, now.Add(-time.Second), ""),
		attempt("alice", m3.ID, 2, now.Add(30*time.Second), "rejected"),
	} {
		if err := s.RecordAttempt(ctx, a); err != nil {
			t.Fatalf("RecordAttempt: %v", err)
		}
	}
	if n, err := s.Reschedule(ctx, "bob", now); err != nil || n != 1 {
		t.Fatalf("Reschedule(bob) = %d, %v; want 1 (m1; m2 is already due)", n, err)
	}
	if ms, err := s.Pending(ctx, "bob", 0, now, 0); err != nil || !slices.Equal(ids(ms), ids([]store.Message{m1, m2})) {
		t.Errorf("Pending(bob, now) after Reschedule = %v, %v; want m1 m2", ids(ms), err)
	}
	g := getMessage(t, s, "alice", m1.ID)
	if g.Attempts != 3 || g.LastError != "timeout" || g.Parked {
		t.Errorf("Reschedule changed more than the next attempt: %+v", g)
	}
	wantTime(t, "m1 NextAttempt after Reschedule", g.NextAttempt, now)
	wantTime(t, "m2 NextAttempt (was due already)", getMessage(t, s, "alice", m2.ID).NextAttempt, now.Add(-time.Second))
	wantTime(t, "carol's message NextAttempt", getMessage(t, s, "alice", m3.ID).NextAttempt, now.Add(30*time.Second))
	if n, err := s.Reschedule(ctx, "bob", now); err != nil || n != 0 {
		t.Errorf("second Reschedule(bob) = %d, %v; want 0", n, err)
	}
	if n, err := s.Reschedule(ctx, "nobody", now); err != nil || n != 0 {
		t.Errorf("Reschedule(nobody) = %d, %v; want 0", n, err)
	}
}
