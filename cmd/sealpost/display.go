package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/rivo/uniseg"
	"golang.org/x/term"

	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/message"
)

func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols >= 40 {
			return cols
		}
	}
	return 80
}

// clean makes a received text safe to print: the server refuses control
// characters, but a terminal must never run escape sequences that reach it
// some other way.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' {
			return r
		}
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return '\uFFFD'
		}
		return r
	}, s)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// Bubble widths: a message takes at most bubbleShare of the terminal, and
// never more than bubbleMax columns, so lines stay readable on a wide one.
const (
	bubbleShare = 60 // per cent
	bubbleMax   = 70
	bubbleMin   = 20
)

// printHistory shows a conversation the way the manual draws it: the
// contact's messages on the left, yours on the right, each a block of
// word-wrapped lines of its own width, with its time and (yours) status
// mark; every line of a message, its error included, stays on its side.
func printHistory(w io.Writer, me, peer string, h []client.Message, width int) {
	if len(h) == 0 {
		fmt.Fprintf(w, "no messages with %s\n", peer)
		return
	}
	bubble := min(width*bubbleShare/100, bubbleMax)
	bubble = min(max(bubble, bubbleMin), width)
	fmt.Fprintf(w, "%s%s\n", peer, pad(me, width-uniseg.StringWidth(peer)))
	for _, m := range h {
		text := clean(m.Text)
		if m.Erased {
			text = "[" + m.Text + "]"
		}
		if !m.Outgoing {
			fmt.Fprintf(w, "%s\n", stamp(m.At))
			for _, line := range wrap(text, bubble) {
				fmt.Fprintf(w, "  %s\n", line)
			}
			continue
		}
		meta := fmt.Sprintf("%s  %s", stamp(m.At), client.StatusMark(m.Status))
		switch m.Status {
		case message.Delivered:
			meta += " " + m.DeliveredAt.Local().Format("15:04:05")
		case message.Enqueued:
			meta += " " + m.SubmittedAt.Local().Format("15:04:05")
		case message.Sending:
			if m.Attempts > 0 {
				meta += fmt.Sprintf(" (%d attempts)", m.Attempts)
			}
		case message.Error:
			if m.LastError != "" {
				meta += ": " + clean(m.LastError)
			}
		}
		lines := append(wrap(meta, bubble), wrap(text, bubble)...)
		block := 0
		for _, l := range lines {
			block = max(block, uniseg.StringWidth(l))
		}
		indent := strings.Repeat(" ", max(width-block-2, 0))
		for _, l := range lines {
			fmt.Fprintf(w, "%s%s\n", indent, l)
		}
	}
}

// pad right-aligns s in width columns (as a terminal counts them: 👍🏽 is two).
func pad(s string, width int) string {
	n := width - uniseg.StringWidth(s)
	if n <= 0 {
		return s
	}
	return strings.Repeat(" ", n) + s
}

// wrap splits text at line feeds and, between words, at max columns; a
// word longer than a line is split between characters as a person counts
// them, so an emoji is never cut in half.
func wrap(text string, max int) []string {
	if max < 10 {
		max = 10
	}
	var out []string
	for _, para := range strings.Split(text, "\n") {
		line, cols := "", 0
		for i, word := range strings.Split(para, " ") {
			ww := uniseg.StringWidth(word)
			if i > 0 && cols+1+ww <= max {
				line += " " + word
				cols += 1 + ww
				continue
			}
			if i > 0 {
				out = append(out, line)
			}
			for ww > max {
				head, rest := cut(word, max)
				out = append(out, head)
				word, ww = rest, uniseg.StringWidth(rest)
			}
			line, cols = word, ww
		}
		out = append(out, line)
	}
	return out
}

// cut returns the longest start of s that is at most max columns, and the
// rest, splitting between grapheme clusters.
func cut(s string, max int) (string, string) {
	cols, end := 0, 0
	g := uniseg.NewGraphemes(s)
	for g.Next() {
		if cols+g.Width() > max && end > 0 {
			break
		}
		cols += g.Width()
		_, end = g.Positions()
	}
	return s[:end], s[end:]
}

func printStatus(w io.Writer, m client.Message) {
	dir, who := "to", m.Peer
	if !m.Outgoing {
		dir = "from"
	}
	fmt.Fprintf(w, "id:         %s\n%-11s %s\n", m.ID, dir+":", who)
	fmt.Fprintf(w, "status:     %s\n", client.StatusMark(m.Status))
	if m.Outgoing {
		fmt.Fprintf(w, "sent:       %s\n", stamp(m.CreatedAt))
		if !m.SubmittedAt.IsZero() {
			fmt.Fprintf(w, "enqueued:   %s\n", stamp(m.SubmittedAt))
		}
		if !m.DeliveredAt.IsZero() {
			fmt.Fprintf(w, "delivered:  %s\n", stamp(m.DeliveredAt))
		}
		fmt.Fprintf(w, "attempts:   %d\n", m.Attempts)
		if m.LastError != "" {
			fmt.Fprintf(w, "last error: %s\n", m.LastError)
		}
	} else {
		fmt.Fprintf(w, "submitted:  %s\nreceived:   %s\n", stamp(m.SubmittedAt), stamp(m.CreatedAt))
	}
	fmt.Fprintf(w, "text:       %s\n", clean(m.Text))
}

// notifier raises a desktop notification with notify-send (which talks to
// the desktop over D-Bus) when there is a desktop session, else writes a
// line on the terminal.
type notifier struct {
	w       io.Writer
	command string // path of notify-send, or ""
}

func newNotifier(w io.Writer) *notifier {
	n := &notifier{w: w}
	desktop := os.Getenv("DBUS_SESSION_BUS_ADDRESS") != "" || os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
	if p, err := exec.LookPath("notify-send"); err == nil && desktop {
		n.command = p
	}
	return n
}

func (n *notifier) Notify(title, body string) error {
	if n.command != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, n.command, "--app-name=sealpost", title, body)
		if err := cmd.Run(); err == nil {
			return nil
		}
		// No desktop after all: fall back to the terminal.
	}
	_, err := fmt.Fprintf(n.w, "\a** %s: %s\n", clean(title), strings.ReplaceAll(clean(body), "\n", " "))
	return err
}
