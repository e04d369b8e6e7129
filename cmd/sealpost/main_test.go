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
	long := "Hello Bob, this is a longer message that has to wrap over several lines of the bubble 👋"
	h := []client.Message{
		{Peer: "alice", Text: "hi bob", Status: client.Received, At: at},
		{Peer: "alice", Outgoing: true, Text: "hi alice", Status: message.Delivered, At: at.Add(time.Minute), DeliveredAt: at.Add(2 * time.Minute)},
		{Peer: "alice", Text: client.PlaceholderReceived, Erased: true, Status: client.Received, At: at.Add(3 * time.Minute)},
		{Peer: "alice", Text: "\x1b[31mred", Status: client.Received, At: at.Add(4 * time.Minute)},
		{Peer: "alice", Outgoing: true, Text: long, Status: message.Error, At: at.Add(5 * time.Minute),
			LastError: "the server refused it (404 unknown_recipient): no account named alice, which is a long reason"},
	}
	for _, width := range []int{50, 80, 200} {
		var b bytes.Buffer
		printHistory(&b, "bob", "alice", h, width)
		out := b.String()
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if !strings.HasPrefix(lines[2], "  hi bob") {
			t.Errorf("width %d: incoming not on the left:\n%s", width, out)
		}
		if !strings.Contains(out, "Delivered") || !strings.HasSuffix(lines[len(lines)-1], "bubble 👋") {
			t.Errorf("width %d: outgoing without its mark:\n%s", width, out)
		}
		if !strings.Contains(out, "[Message received]") || strings.Contains(out, "\x1b") {
			t.Errorf("width %d: placeholder missing or an escape sequence reached the terminal:\n%q", width, out)
		}
		bubble := min(width*60/100, 70)
		// The last message (outgoing, Error): every line, the error too,
		// starts at the same column right of the middle, and none is wider
		// than the bubble; words are not cut.
		var block []string
		for i, l := range lines {
			if strings.Contains(l, "Error:") {
				block = lines[i:]
			}
		}
		if len(block) < 3 || !strings.Contains(strings.Join(strings.Fields(strings.Join(block, " ")), " "), "Error: the server refused it") {
			t.Fatalf("width %d: no Error block at the end:\n%s", width, out)
		}
		indent := len(block[0]) - len(strings.TrimLeft(block[0], " "))
		if indent < width-bubble-2 {
			t.Errorf("width %d: the error line starts at column %d, left of the bubble:\n%s", width, indent, out)
		}
		var words []string
		for _, l := range block {
			if n := len(l) - len(strings.TrimLeft(l, " ")); n != indent {
				t.Errorf("width %d: line %q starts at %d, not with its message at %d", width, l, n, indent)
			}
			if w := uniseg.StringWidth(strings.TrimLeft(l, " ")); w > bubble {
				t.Errorf("width %d: line %q is %d columns, above the bubble's %d", width, l, w, bubble)
			}
			words = append(words, strings.Fields(l)...)
		}
		if !strings.Contains(strings.Join(words, " "), long) {
			t.Errorf("width %d: the text was cut mid-word:\n%s", width, out)
		}
	}
}

func TestWrapKeepsWords(t *testing.T) {
	got := wrap("one two three four five six", 10)
	if strings.Join(got, "|") != "one two|three four|five six" {
		t.Errorf("wrap by words: %q", got)
	}
	got = wrap("abcdefghijklmnopqrstuvwxyz end", 10)
	if strings.Join(got, "|") != "abcdefghij|klmnopqrst|uvwxyz end" {
		t.Errorf("a word longer than the line: %q", got)
	}
}
