package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/store/sqlite"
	"github.com/sealpost/sealpost/message"
)

// The operator's listing tells a parked message (its retries used up; it
// waits for expiry) from one still being tried.
func TestMessagesListShowsParked(t *testing.T) {
	data := t.TempDir()
	for _, name := range []string{"alice", "bob"} {
		if code, _, errs := runCmd(t, "a-long-password\n", nil, "--data", data, "user", "add", name, "--password-stdin"); code != 0 {
			t.Fatalf("user add %s: %d %q", name, code, errs)
		}
	}
	st, err := sqlite.Open(filepath.Join(data, "sealpost.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	parked, waiting := message.NewID(), message.NewID()
	for _, id := range []string{parked, waiting} {
		m := store.Message{ID: id, From: "alice", To: "bob", Sealed: []byte{1}, KeyPeriod: 1, SubmittedAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, _, err := st.Submit(ctx, m, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.RecordAttempt(ctx, store.Attempt{Key: store.Key{From: "alice", ID: parked}, Attempts: 6, LastError: "connection", Parked: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "", nil, "--data", data, "messages", "list")
	if code != 0 {
		t.Fatalf("messages list: %d %q", code, errs)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case strings.Contains(line, parked) && (f[4] != "enqueued,parked" || f[6] != "6"):
			t.Errorf("parked message listed as %q", line)
		case strings.Contains(line, waiting) && f[4] != "enqueued":
			t.Errorf("waiting message listed as %q", line)
		}
	}
	if !strings.Contains(out, parked) || !strings.Contains(out, waiting) {
		t.Fatalf("listing lacks a message:\n%s", out)
	}
}
