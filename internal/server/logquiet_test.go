package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store/sqlite"
)

// TestQuietStoreErrors: an error the store has already reported is lowered
// to Debug (so an Info handler drops it); other errors and plain lines pass.
func TestQuietStoreErrors(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(quietStoreErrors{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})})
	log.Error("storing a message", "id", "m1", "err", fmt.Errorf("submit: %w", sqlite.ErrUnavailable))
	log.Error("marking delivered", "err", fmt.Errorf("mark: %w", sqlite.ErrDamaged))
	log.Error("something else failed", "err", fmt.Errorf("boom"))
	log.Info("message accepted", "id", "m2", "from", "alice", "to", "bob")
	out := buf.String()
	if strings.Contains(out, "storing a message") || strings.Contains(out, "marking delivered") {
		t.Errorf("a store failure the store reported was logged again:\n%s", out)
	}
	if !strings.Contains(out, "something else failed") || !strings.Contains(out, "message accepted") {
		t.Errorf("other lines were dropped:\n%s", out)
	}
}

// The check runs for every line of the server's parts (two per message at
// Info): a line of strings and times costs it no allocation.
func TestReportedByStoreAllocatesNothingForPlainLines(t *testing.T) {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "message accepted", 0)
	r.AddAttrs(slog.String("id", "m1"), slog.String("from", "alice"), slog.String("to", "bob"), slog.String("via", "sip"),
		slog.Duration("took", time.Millisecond))
	if n := testing.AllocsPerRun(100, func() { reportedByStore(r) }); n != 0 {
		t.Errorf("reportedByStore allocated %v times for a line without an error", n)
	}
}
