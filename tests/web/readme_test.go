package web_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server/servertest"
)

// TestConversationScreen draws the README's picture: a conversation with
// messages both ways, Delivered and Enqueued, a date separator, and a
// contact list with unread counts. With SEALPOST_WEB_SCREENSHOT=FILE it
// writes the PNG there too (docs/sealpost-web.png is made so).
func TestConversationScreen(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	bob := newDevice(t, srv, "bob")
	carol := newDevice(t, srv, "carol")
	online(t, alice, bob, carol)
	bg := context.Background()
	send := func(from *device, to, text string) string {
		t.Helper()
		m, err := from.core.Send(bg, to, text)
		if err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	delivered := func(d *device, id string) {
		t.Helper()
		servertest.CheckFor(t, 20*time.Second, func() error {
			m, err := d.core.Message(bg, id)
			if err != nil {
				return err
			}
			if m.Status != "delivered" {
				return errorf("%s is %s", id, m.Status)
			}
			return nil
		})
	}
	delivered(carol, send(carol, "alice", "Are you coming to the review at 3?"))
	delivered(bob, send(bob, "alice", "Hi Alice! Still on for lunch today?"))
	delivered(alice, send(alice, "bob", "Yes! 12:30 at the usual place 🍜"))
	delivered(bob, send(bob, "alice", "Perfect 👍🏽 I'll book a table."))
	delivered(carol, send(carol, "alice", "Slides are in the shared folder."))

	ctx := tab(t)
	alice.open(ctx, "/c/bob")
	waitFor(t, ctx, 20*time.Second, `document.querySelectorAll("li.msg").length === 3 && document.querySelector("#conn.on")`, `document.getElementById("messages").innerText`)
	bob.stop() // offline: the next message waits on the server
	typeAndSend(t, ctx, "Running 5 minutes late, sorry!")
	waitFor(t, ctx, 30*time.Second, `document.querySelector('li.msg.out[data-status="enqueued"]')`, `document.getElementById("messages").innerText`)
	waitFor(t, ctx, 20*time.Second, `document.querySelector('.contact[data-peer="carol"] .unread')?.textContent === "2 unread" && document.querySelector('.contact[data-peer="bob"] .preview')?.textContent === "You: Running 5 minutes late, sorry!"`,
		`document.getElementById("contacts").innerText`)
	type row struct{ Side, Status, Text string }
	rows := eval[[]row](t, ctx, `[...document.querySelectorAll("li.msg")].map((li) => ({ Side: li.classList.contains("out") ? "right" : "left",
	  Status: li.dataset.status || "", Text: li.querySelector(".text").textContent }))`)
	want := []row{
		{"left", "", "Hi Alice! Still on for lunch today?"},
		{"right", "delivered", "Yes! 12:30 at the usual place 🍜"},
		{"left", "", "Perfect 👍🏽 I'll book a table."},
		{"right", "enqueued", "Running 5 minutes late, sorry!"},
	}
	if len(rows) != len(want) {
		t.Fatalf("conversation %+v", rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("message %d: %+v, want %+v", i, rows[i], want[i])
		}
	}
	png := screenshot(t, ctx, "conversation")
	if out := os.Getenv("SEALPOST_WEB_SCREENSHOT"); out != "" {
		b, err := os.ReadFile(png)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("README screenshot: %s", out)
	}
}
