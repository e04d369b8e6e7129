package client

import (
	"context"
	"testing"
	"time"
)

// TestLastMessagesAndReadMarks: the preview of each conversation is the
// message History shows last (a received message by the server's time),
// an erased one reads as the manual's words, Conversation leaves unread
// messages unread and MarkRead reads them.
func TestLastMessagesAndReadMarks(t *testing.T) {
	r := newRig(t, func(s *Settings) { s.Validity = Duration(time.Hour) })
	ctx := context.Background()
	c := r.c
	if _, err := c.Send(ctx, "bob", "to bob, first"); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(time.Minute)
	if _, err := c.Send(ctx, "bob", "to bob, second"); err != nil {
		t.Fatal(err)
	}
	// Received after alice's second message, but submitted before it: it
	// is not the last one.
	if _, err := c.db.addIncoming(ctx, "0b0e6f5e-6d0b-4d7e-9a55-9b1a2d3c4e5f", "bob", "from bob, early", r.clk.Now().Add(-30*time.Second), r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.db.addIncoming(ctx, "1b0e6f5e-6d0b-4d7e-9a55-9b1a2d3c4e5f", "carol", "from carol", r.clk.Now(), r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	last, err := c.LastMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 2 || last["bob"].Text != "to bob, second" || last["carol"].Text != "from carol" {
		t.Fatalf("last messages %+v", last)
	}
	conv, err := c.Conversation(ctx, "BOB")
	if err != nil || len(conv) != 3 || conv[1].Text != "from bob, early" {
		t.Fatalf("conversation %+v, %v", conv, err)
	}
	unread := func(peer string) int {
		cs, err := c.Contacts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, ct := range cs {
			if ct.Name == peer {
				return ct.Unread
			}
		}
		return -1
	}
	if n := unread("bob"); n != 1 {
		t.Fatalf("Conversation marked it read: %d unread", n)
	}
	if err := c.MarkRead(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if n, m := unread("bob"), unread("carol"); n != 0 || m != 1 {
		t.Fatalf("after MarkRead(bob): bob %d, carol %d unread", n, m)
	}

	// Carol's message erased at the end of its validity: the preview says so.
	r.clk.Advance(2 * time.Hour)
	if last, err = c.LastMessages(ctx); err != nil {
		t.Fatal(err)
	}
	if m := last["carol"]; !m.Erased || m.Text != PlaceholderReceived {
		t.Fatalf("carol's preview after expiry: %+v", m)
	}
}
