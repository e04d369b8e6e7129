package storecopy

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/store/postgres"
	"github.com/sealpost/sealpost/internal/store/postgres/pgtest"
	"github.com/sealpost/sealpost/internal/store/sqlite"
)

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 123456789, time.UTC)

// TestCopyKeepsEverything fills a SQLite store with every kind of row
// (messages enqueued, scheduled, parked, delivered and expired, reports,
// tokens, data keys), copies it, and reads each back from PostgreSQL; then
// the copy goes on where the original stopped: new messages list after the
// copied ones.
func TestCopyKeepsEverything(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sealpost.db")
	src, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob"} {
		if err := src.CreateAccount(ctx, store.Account{Name: name, PasswordHash: "hash-" + name, SIPSecrets: []byte("sip-" + name), CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	tok := store.Token{Hash: []byte("token-hash"), Account: "alice", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := src.AddToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := src.PutDataKey(ctx, 7, []byte("wrapped key 7")); err != nil {
		t.Fatal(err)
	}
	var sent []store.Message
	for i, id := range []string{"plain", "scheduled", "parked", "delivered", "expired", "late"} {
		m := store.Message{ID: id, From: "alice", To: "bob", Sealed: []byte("sealed " + id), KeyPeriod: 7,
			SubmittedAt: t0.Add(time.Duration(i) * time.Second), ExpiresAt: t0.Add(72 * time.Hour)}
		if id == "expired" {
			m.ExpiresAt = t0.Add(time.Hour)
		}
		got, _, err := src.Submit(ctx, m, 0)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, got)
	}
	if err := src.RecordAttempt(ctx, store.Attempt{Key: store.Key{From: "alice", ID: "scheduled"}, Attempts: 2, Next: t0.Add(time.Minute), LastError: "timeout"}); err != nil {
		t.Fatal(err)
	}
	if err := src.RecordAttempt(ctx, store.Attempt{Key: store.Key{From: "alice", ID: "parked"}, Attempts: 6, LastError: "rejected", Parked: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.MarkDeliveredAll(ctx, []store.Key{{From: "alice", ID: "delivered"}}, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := src.ExpireDue(ctx, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var want []store.Message
	for _, m := range sent {
		got, err := src.Message(ctx, m.From, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, got)
	}
	wantReports, err := src.PendingReports(ctx, "alice", 0)
	if err != nil || len(wantReports) != 2 {
		t.Fatalf("reports before the copy: %+v, %v", wantReports, err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}

	url := pgtest.NewDatabase(t)
	c, err := Copy(ctx, path, url)
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if want := (Counts{Accounts: 2, Tokens: 1, Messages: 6, Waiting: 4, Reports: 2, DataKeys: 1}); c != want {
		t.Errorf("Copy counted %+v, want %+v", c, want)
	}
	dst, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for _, w := range want {
		g, err := dst.Message(ctx, w.From, w.ID)
		if err != nil {
			t.Fatalf("Message(%s) in the copy: %v", w.ID, err)
		}
		if g.Seq != w.Seq || g.To != w.To || g.Status != w.Status || !bytes.Equal(g.Sealed, w.Sealed) || g.KeyPeriod != w.KeyPeriod ||
			g.Attempts != w.Attempts || g.LastError != w.LastError || g.Parked != w.Parked || !g.NextAttempt.Equal(w.NextAttempt) ||
			!g.SubmittedAt.Equal(w.SubmittedAt) || !g.ExpiresAt.Equal(w.ExpiresAt) || !g.DeliveredAt.Equal(w.DeliveredAt) {
			t.Errorf("copy of %s:\n got %+v\nwant %+v", w.ID, g, w)
		}
	}
	gotReports, err := dst.PendingReports(ctx, "alice", 0)
	if err != nil || len(gotReports) != len(wantReports) {
		t.Fatalf("reports in the copy: %+v, %v", gotReports, err)
	}
	for i := range wantReports {
		g, w := gotReports[i], wantReports[i]
		if g.Seq != w.Seq || g.MessageID != w.MessageID || g.Status != w.Status || !g.At.Equal(w.At) || !g.ExpiresAt.Equal(w.ExpiresAt) {
			t.Errorf("report %d: got %+v, want %+v", i, g, w)
		}
	}
	if g, err := dst.TokenByHash(ctx, tok.Hash, t0); err != nil || g.Account != "alice" {
		t.Errorf("token in the copy: %+v, %v", g, err)
	}
	if k, err := dst.DataKey(ctx, 7); err != nil || string(k) != "wrapped key 7" {
		t.Errorf("data key in the copy: %q, %v", k, err)
	}
	if a, err := dst.Account(ctx, "bob"); err != nil || a.PasswordHash != "hash-bob" || string(a.SIPSecrets) != "sip-bob" {
		t.Errorf("account in the copy: %+v, %v", a, err)
	}
	// The copy goes on: a new message lists after the copied ones, a new
	// report after the copied reports.
	late, created, err := dst.Submit(ctx, store.Message{ID: "after the move", From: "alice", To: "bob", Sealed: []byte("new"), KeyPeriod: 7,
		SubmittedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(72 * time.Hour)}, 0)
	if err != nil || !created {
		t.Fatalf("Submit on the copy: %v", err)
	}
	pending, err := dst.Pending(ctx, "bob", 0, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range pending {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"plain", "scheduled", "late", "after the move"}) {
		t.Errorf("Pending(bob) on the copy = %v, want the copied ones in their order, then the new one", ids)
	}
	if _, err := dst.MarkDeliveredAll(ctx, []store.Key{{From: "alice", ID: late.ID}}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if rs, err := dst.PendingReports(ctx, "alice", 0); err != nil || len(rs) != 3 || rs[2].Seq <= rs[1].Seq {
		t.Errorf("reports after a new delivery on the copy: %+v, %v", rs, err)
	}
	// A second copy into the same database is refused.
	if _, err := Copy(ctx, path, url); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("a second Copy into the same database: %v, want a refusal", err)
	}
}
