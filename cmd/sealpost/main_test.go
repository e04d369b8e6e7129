package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rivo/uniseg"

	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/message"
)

func TestWrapNeverCutsACharacter(t *testing.T) {
	text := strings.Repeat("👍🏽", 30) + "\nsecond line"
	lines := wrap(text, 11)
	if strings.Join(lines, "") != strings.ReplaceAll(text, "\n", "") {
		t.Fatalf("wrap lost text: %q", lines)
	}
	for _, l := range lines {
		if w := uniseg.StringWidth(l); w > 11 {
			t.Fatalf("line %q is %d columns", l, w)
		}
	}
	if lines[len(lines)-1] != "second line" {
		t.Fatalf("line feed not kept: %q", lines)
	}
}

func TestHistoryLayout(t *testing.T) {
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.Local)
	h := []client.Message{
		{Peer: "alice", Text: "hi bob", Status: client.Received, At: at},
		{Peer: "alice", Outgoing: true, Text: "hi alice", Status: message.Delivered, At: at.Add(time.Minute), DeliveredAt: at.Add(2 * time.Minute)},
		{Peer: "alice", Text: client.PlaceholderReceived, Erased: true, Status: client.Received, At: at.Add(3 * time.Minute)},
		{Peer: "alice", Text: "\x1b[31mred", Status: client.Received, At: at.Add(4 * time.Minute)},
	}
	var b bytes.Buffer
	printHistory(&b, "bob", "alice", h, 50)
	out := b.String()
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[2], "  hi bob") {
		t.Errorf("incoming not on the left:\n%s", out)
	}
	if !strings.HasSuffix(lines[3], "Delivered 09:02:00") || !strings.HasSuffix(lines[4], "hi alice  ") || uniseg.StringWidth(lines[4]) != 50 {
		t.Errorf("outgoing not on the right with its mark:\n%s", out)
	}
	if !strings.Contains(out, "[Message received]") {
		t.Errorf("no placeholder:\n%s", out)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("an escape sequence reached the terminal:\n%q", out)
	}
}
