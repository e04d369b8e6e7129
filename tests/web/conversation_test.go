package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

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
	must(t, ctx, "type", chromedp.SendKeys(chromedp.ID("text"), text), chromedp.SendKeys(chromedp.ID("text"), kb.Enter))
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
	screenshot(t, ctx, "delivered")

	h, err := bob.core.Conversation(context.Background(), "alice")
	if err != nil || len(h) != 1 || h[0].Text != "Hello Bob 👋🏽" {
		t.Fatalf("bob has %+v, %v", h, err)
	}
	b2, _ := json.Marshal(seq)
	t.Logf("statuses shown: %s", b2)
	_ = fmt.Sprint
}
