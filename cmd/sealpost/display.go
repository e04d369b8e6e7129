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

// printHistory shows a conversation the way the manual draws it: the
// contact's messages on the left, yours on the right with their status mark.
func printHistory(w io.Writer, me, peer string, h []client.Message, width int) {
	if len(h) == 0 {
		fmt.Fprintf(w, "no messages with %s\n", peer)
		return
	}
	fmt.Fprintf(w, "%s%s\n", peer, pad(me, width-uniseg.StringWidth(peer)))
	for _, m := range h {
		text := clean(m.Text)
		if m.Erased {
			text = "[" + m.Text + "]"
		}
		if !m.Outgoing {
			fmt.Fprintf(w, "%s\n", stamp(m.At))
			for _, line := range wrap(text, width*2/3) {
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
				meta += ": " + m.LastError
			}
		}
		fmt.Fprintln(w, pad(meta, width))
		for _, line := range wrap(text, width*2/3) {
			fmt.Fprintln(w, pad(line+"  ", width))
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

// wrap splits text at line feeds and at max columns, between characters
// as a person counts them, so an emoji is never cut in half.
func wrap(text string, max int) []string {
	if max < 10 {
		max = 10
	}
	var out []string
	for _, para := range strings.Split(text, "\n") {
		line, cols := "", 0
		g := uniseg.NewGraphemes(para)
		for g.Next() {
			cw := g.Width()
			if cols+cw > max {
				out = append(out, line)
				line, cols = "", 0
			}
			line += g.Str()
			cols += cw
		}
		out = append(out, line)
	}
	return out
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
	_, err := fmt.Fprintf(n.w, "\a** %s: %s\n", title, body)
	return err
}
