package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sealpost/sealpost/client"

	"github.com/sealpost/sealpost/internal/server/servertest"
)

// watchStatuses records, in the page, every status the bubbles of the
// conversation show, in order, by id (window.__statuses).
const watchStatuses = `(() => {
  window.__statuses = {};
  const seen = (el) => {
    if (!el || !el.dataset || !el.dataset.id || !el.dataset.status) return;
    const l = (window.__statuses[el.dataset.id] ||= []);
    if (l[l.length - 1] !== el.dataset.status) l.push(el.dataset.status);
  };
  document.querySelectorAll("li.msg").forEach(seen);
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) seen(n);
  }).observe(document.getElementById("scroller"), { childList: true, subtree: true });
  return true;
})()`

// typeAndSend types text into the compose box like a person and presses
// Enter.
func typeAndSend(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	must(t, ctx, "type", chromedp.SendKeys(chromedp.ID("text"), text))
	pressEnter(t, ctx, false)
}

// TestSendShowsEachStatusLive: alice writes to bob in her browser; the
// bubble appears on the right and goes Sending → Enqueued → Delivered
// without a reload, each with the manual's meaning in its label.
func TestSendShowsEachStatusLive(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	bob := newDevice(t, srv, "bob")
	online(t, alice, bob)

	ctx := tab(t)
	alice.open(ctx, "/c/bob")
	if loc := eval[string](t, ctx, "location.href"); strings.Contains(loc, "token") {
		t.Fatalf("the token is still in the address bar: %s", loc)
	}
	waitFor(t, ctx, 20*time.Second, `document.querySelector("#conn.on")`, `document.getElementById("conn").textContent`)
	eval[bool](t, ctx, watchStatuses)

	typeAndSend(t, ctx, "Hello Bob 👋🏽")
	waitFor(t, ctx, 30*time.Second, `document.querySelector('li.msg.out[data-status="delivered"]')`,
		`JSON.stringify(window.__statuses)`)
	seq := eval[map[string][]string](t, ctx, "window.__statuses")
	if len(seq) != 1 {
		t.Fatalf("bubbles seen: %v, want one", seq)
	}
	for id, got := range seq {
		if strings.Join(got, ",") != "sending,enqueued,delivered" {
			t.Errorf("bubble %s showed %v, want sending, enqueued, delivered in that order", id, got)
		}
	}
	type bubble struct {
		Text, Label, Side string
		Left, Right, Mid  float64
	}
	b := eval[bubble](t, ctx, `(() => {
	  const li = document.querySelector("li.msg.out"), r = li.querySelector(".bubble").getBoundingClientRect();
	  const box = document.getElementById("messages").getBoundingClientRect();
	  return { Text: li.querySelector(".text").textContent, Label: li.querySelector(".status").getAttribute("aria-label"),
	    Side: getComputedStyle(li).justifyContent, Left: r.left, Right: r.right, Mid: box.left + box.width / 2 };
	})()`)
	if b.Text != "Hello Bob 👋🏽" {
		t.Errorf("bubble text %q", b.Text)
	}
	if !strings.HasPrefix(b.Label, "Message delivered: ") || !strings.Contains(b.Label, "delivered to the recipient's device") {
		t.Errorf("status label %q does not say the manual's meaning", b.Label)
	}
	if b.Left < b.Mid {
		t.Errorf("outgoing bubble is not on the right: left %.0f, middle of the conversation %.0f", b.Left, b.Mid)
	}
	if v := eval[string](t, ctx, `document.getElementById("text").value`); v != "" {
		t.Errorf("compose box not emptied after sending: %q", v)
	}
	// The contact list now has bob, with the last message.
	waitFor(t, ctx, 20*time.Second, `document.querySelector('.contact[data-peer="bob"] .preview')?.textContent === "You: Hello Bob 👋🏽"`,
		`document.getElementById("contacts").innerHTML`)
	screenshot(t, ctx, "delivered")

	h, err := bob.core.Conversation(context.Background(), "alice")
	if err != nil || len(h) != 1 || h[0].Text != "Hello Bob 👋🏽" {
		t.Fatalf("bob has %+v, %v", h, err)
	}
	b2, _ := json.Marshal(seq)
	t.Logf("statuses shown: %s", b2)
	_ = fmt.Sprint
}

// TestReceiveShowsUnreadAndNotifies: bob's page is open on his contacts
// in a window he is not looking at; alice's message shows alice first
// with one unread message and its text, and raises a notification whose
// click opens the conversation, where the message is on the left.
func TestReceiveShowsUnreadAndNotifies(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	bob := newDevice(t, srv, "bob")
	carol := newDevice(t, srv, "carol", func(s *client.Settings) { s.NotifyText = false })
	online(t, alice, bob, carol)
	if _, err := carol.core.Send(context.Background(), "bob", "an older conversation"); err != nil {
		t.Fatal(err)
	}

	ctx := tab(t)
	grantNotifications(t, ctx, bob.origin())
	recordNotifications(t, ctx)
	bob.open(ctx, "/")
	waitFor(t, ctx, 20*time.Second, `document.querySelector('.contact[data-peer="carol"]')`, `document.getElementById("contacts").innerText`)

	if _, err := alice.core.Send(context.Background(), "bob", "Hi Bob, lunch at 12?"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, 30*time.Second, `document.querySelector('.contact[data-peer="alice"] .unread')`, `document.getElementById("contacts").innerText`)
	type contact struct{ Name, Unread, Preview string }
	cs := eval[[]contact](t, ctx, `[...document.querySelectorAll(".contact")].map((c) => ({
	  Name: c.dataset.peer, Unread: c.querySelector(".unread")?.textContent || "", Preview: c.querySelector(".preview")?.textContent || "" }))`)
	if len(cs) != 2 || cs[0].Name != "alice" || cs[1].Name != "carol" {
		t.Fatalf("contacts %+v: want alice (newest) then carol", cs)
	}
	if cs[0].Unread != "1 unread" || cs[0].Preview != "Hi Bob, lunch at 12?" {
		t.Errorf("alice's entry: %+v, want 1 unread and the text", cs[0])
	}
	waitFor(t, ctx, 20*time.Second, `window.__notes.length > 0`, `JSON.stringify(window.__notes)`)
	type note struct{ Title, Body string }
	notes := eval[[]note](t, ctx, `window.__notes.map((n) => ({ Title: n.title, Body: n.body }))`)
	if len(notes) != 1 || notes[0].Title != "New message from alice" || notes[0].Body != "Hi Bob, lunch at 12?" {
		t.Fatalf("notifications %+v", notes)
	}
	screenshot(t, ctx, "unread")

	// With notify_text off a notification says who, not what.
	carolTab := tab(t)
	grantNotifications(t, carolTab, carol.origin())
	recordNotifications(t, carolTab)
	carol.open(carolTab, "/")
	if s := carol.core.Settings(); s.NotifyText {
		t.Fatal("carol's device shows texts in notifications")
	}
	if _, err := alice.core.Send(context.Background(), "carol", "a private matter"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, carolTab, 30*time.Second, `window.__notes.length > 0`, `document.getElementById("contacts").innerText`)
	if got := eval[[]note](t, carolTab, `window.__notes.map((n) => ({ Title: n.title, Body: n.body }))`); len(got) != 1 || got[0] != (note{"New message from alice", ""}) {
		t.Errorf("carol's notifications %+v, want who without the text", got)
	}

	// A click on the notification opens the conversation.
	eval[bool](t, ctx, `(window.__notes[0].n.onclick(), true)`)
	waitFor(t, ctx, 20*time.Second, `location.pathname === "/c/alice" && document.querySelector("li.msg.in") && window.SealpostRules`, `location.pathname`)
	type bubble struct {
		Text       string
		Left, Mid  float64
		HasStatus  bool
		Separators []string
	}
	b := eval[bubble](t, ctx, `(() => {
	  const li = document.querySelector("li.msg.in"), r = li.querySelector(".bubble").getBoundingClientRect();
	  const box = document.getElementById("messages").getBoundingClientRect();
	  return { Text: li.querySelector(".text").textContent, Left: r.left, Mid: box.left + box.width / 2,
	    HasStatus: !!li.querySelector(".status"), Separators: [...document.querySelectorAll("li.day")].map((d) => d.textContent) };
	})()`)
	if b.Text != "Hi Bob, lunch at 12?" || b.Left >= b.Mid || b.HasStatus {
		t.Errorf("incoming bubble %+v: want the text, on the left, without a status icon", b)
	}
	if len(b.Separators) != 1 || b.Separators[0] != "Today" {
		t.Errorf("date separators %v, want one: Today", b.Separators)
	}
	// Opening the conversation read it.
	servertest.CheckFor(t, 10*time.Second, func() error {
		cs, err := bob.core.Contacts(context.Background())
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Name == "alice" && c.Unread != 0 {
				return fmt.Errorf("alice still has %d unread", c.Unread)
			}
		}
		return nil
	})
	waitFor(t, ctx, 10*time.Second, `!document.querySelector('.contact[data-peer="alice"] .unread')`, `document.getElementById("contacts").innerText`)
	screenshot(t, ctx, "opened")
}

// TestErrorShowsWhyAndRetries: a message the server refuses (no such
// account yet) shows Error with the server's reason and a Retry button;
// once the account exists, Retry sends the text again as a new message
// (Core.Resend) and the failed one stays as it was.
func TestErrorShowsWhyAndRetries(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	online(t, alice)
	ctx := tab(t)
	alice.open(ctx, "/c/zed")
	eval[bool](t, ctx, watchStatuses)
	typeAndSend(t, ctx, "welcome aboard, zed")
	waitFor(t, ctx, 30*time.Second, `document.querySelector('li.msg.out[data-status="error"] .why')`, `document.getElementById("messages").innerText`)
	type failed struct{ Why, Label, Button string }
	f := eval[failed](t, ctx, `(() => { const li = document.querySelector('li.msg.out[data-status="error"]');
	  return { Why: li.querySelector(".why p").textContent, Label: li.querySelector(".status").getAttribute("aria-label"),
	    Button: li.querySelector(".retry button").textContent }; })()`)
	if !strings.HasPrefix(f.Why, "Not delivered: the server refused it (404") || !strings.HasPrefix(f.Label, "Error sending message: ") || f.Button != "Retry" {
		t.Fatalf("failed bubble: %+v", f)
	}
	screenshot(t, ctx, "error")

	srv.AddUser(t, "zed", "pw-zed-secret")
	must(t, ctx, "click Retry", chromedp.Click(chromedp.CSS(`li.msg.out[data-status="error"] .retry button`)))
	waitFor(t, ctx, 30*time.Second, `document.querySelector('li.msg.out[data-status="enqueued"]')`, `JSON.stringify(window.__statuses)`)
	type bubble struct{ Text, Status string }
	bs := eval[[]bubble](t, ctx, `[...document.querySelectorAll("li.msg")].map((li) => ({ Text: li.querySelector(".text").textContent, Status: li.dataset.status }))`)
	if len(bs) != 2 || bs[0] != (bubble{"welcome aboard, zed", "error"}) || bs[1] != (bubble{"welcome aboard, zed", "enqueued"}) {
		t.Fatalf("after Retry: %+v, want the failed one and a new one Enqueued", bs)
	}
	screenshot(t, ctx, "retried")
}
