package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/internal/server/servertest"
)

// TestExpiredTextIsReplaced: when a text's validity on the device passes,
// both pages show the manual's words instead, in the conversation and in
// the contact list, without a reload.
func TestExpiredTextIsReplaced(t *testing.T) {
	srv := servertest.Start(t)
	short := func(s *client.Settings) { s.Validity = client.Duration(3 * time.Second) }
	alice := newDevice(t, srv, "alice", short)
	bob := newDevice(t, srv, "bob", short)
	online(t, alice, bob)
	a := tab(t)
	alice.open(a, "/c/bob")
	b := tab(t)
	bob.open(b, "/c/alice")
	typeAndSend(t, a, "this text lasts three seconds")
	waitFor(t, b, 30*time.Second, `document.querySelector("li.msg.in .text")?.textContent === "this text lasts three seconds"`, `document.getElementById("messages").innerText`)

	for _, c := range []struct {
		page   context.Context
		peer   string
		bubble string
		words  string
	}{{a, "bob", "li.msg.out", "Message sent"}, {b, "alice", "li.msg.in", "Message received"}} {
		waitFor(t, c.page, 60*time.Second, `document.querySelector("`+c.bubble+` .text.erased")?.textContent === "`+c.words+`"`,
			`document.getElementById("messages").innerText`)
		waitFor(t, c.page, 20*time.Second, `document.querySelector('.contact[data-peer="`+c.peer+`"] .preview.erased')?.textContent === "`+c.words+`"`,
			`document.getElementById("contacts").innerText`)
		if strings.Contains(eval[string](t, c.page, "document.body.innerText"), "three seconds") {
			t.Errorf("the expired text is still on %s's page", c.peer)
		}
	}
	screenshot(t, a, "sent")
	screenshot(t, b, "received")
}

// TestSettingsPage: validity, "persistent messages" and the text in
// notifications are saved to the profile with the core's own checks and
// are in force at once; a wrong value is explained.
func TestSettingsPage(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	ctx := tab(t)
	alice.open(ctx, "/settings")
	must(t, ctx, "change the validity",
		chromedp.SetValue(chromedp.ID("validity"), "soon"),
		chromedp.Click(chromedp.CSS(`.settings-form button[type="submit"]`)))
	waitFor(t, ctx, 20*time.Second, `document.querySelector(".settings-form .rule-error")`, `document.body.innerText`)
	if msg := eval[string](t, ctx, `document.querySelector(".settings-form .rule-error").textContent`); !strings.Contains(msg, "validity") {
		t.Errorf("refusal %q does not name the setting", msg)
	}
	must(t, ctx, "save",
		chromedp.SetValue(chromedp.ID("validity"), "24h"),
		chromedp.Click(chromedp.ID("persistent")),
		chromedp.Click(chromedp.ID("notify_text")),
		chromedp.Click(chromedp.CSS(`.settings-form button[type="submit"]`)))
	waitFor(t, ctx, 20*time.Second, `document.querySelector(".settings-form .done")`, `document.body.innerText`)
	s, err := client.LoadSettings(alice.home)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(s.Validity) != 24*time.Hour || !s.Persistent || s.NotifyText {
		t.Errorf("saved validity %s, persistent %v, notify_text %v", s.Validity, s.Persistent, s.NotifyText)
	}
	if now := alice.core.Settings(); time.Duration(now.Validity) != 24*time.Hour || !now.Persistent || now.NotifyText {
		t.Errorf("the running core still uses validity %s, persistent %v, notify_text %v", now.Validity, now.Persistent, now.NotifyText)
	}
	if !eval[bool](t, ctx, `document.getElementById("persistent").checked`) {
		t.Errorf("the page does not show persistent messages on")
	}
	screenshot(t, ctx, "saved")
}

// TestPageRecoversAfterLosingTheStream: the browser loses its connection
// to sealpost web; the page says so, reconnects by itself when the
// network is back, and shows what arrived meanwhile.
func TestPageRecoversAfterLosingTheStream(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	bob := newDevice(t, srv, "bob")
	online(t, alice, bob)
	ctx := tab(t)
	alice.open(ctx, "/c/bob")
	waitFor(t, ctx, 20*time.Second, `document.querySelector("#conn.on")`, `document.getElementById("conn").textContent`)

	// The network fails: the connection the page had (the event stream)
	// is cut, and no new one gets through.
	if n := alice.conns.setDown(true); n == 0 {
		t.Fatal("no connection to cut")
	}
	waitFor(t, ctx, 30*time.Second, `document.querySelector("#conn.lost")`, `document.getElementById("conn").textContent`)
	if _, err := bob.core.Send(context.Background(), "alice", "sent while your page was away"); err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 20*time.Second, func() error {
		h, err := alice.core.Conversation(context.Background(), "bob")
		if err != nil || len(h) != 1 {
			return errorf("alice's core has %d messages (%v)", len(h), err)
		}
		return nil
	})
	screenshot(t, ctx, "lost")
	alice.conns.setDown(false)
	waitFor(t, ctx, 60*time.Second, `document.querySelector("#conn.on") && document.querySelector("li.msg.in")?.textContent.includes("sent while your page was away")`,
		`document.getElementById("conn").textContent + " | " + document.getElementById("messages").innerText`)
	screenshot(t, ctx, "back")
}

// TestAccessible: every control has a name, status icons have their
// meaning as a label and take the keyboard focus, and text keeps at least
// 4.5:1 contrast in the light and the dark theme.
func TestAccessible(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	bob := newDevice(t, srv, "bob")
	online(t, alice, bob)
	if _, err := bob.core.Send(context.Background(), "alice", "hello there"); err != nil {
		t.Fatal(err)
	}
	ctx := tab(t)
	alice.open(ctx, "/c/bob")
	typeAndSend(t, ctx, "hi bob")
	waitFor(t, ctx, 30*time.Second, `document.querySelector('li.msg.out[data-status="delivered"]') && document.querySelector("li.msg.in")`, `document.getElementById("messages").innerText`)

	unnamed := eval[[]string](t, ctx, `[...document.querySelectorAll("input, textarea, button, select, a[href]")]
	  .filter((el) => !el.hidden && !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
	  .map((el) => el.outerHTML)`)
	if len(unnamed) > 0 {
		t.Errorf("controls without a name: %q", unnamed)
	}
	icons := eval[[]string](t, ctx, `[...document.querySelectorAll(".status")].filter((s) => s.getAttribute("role") !== "img" || !s.getAttribute("aria-label") || s.tabIndex !== 0).map((s) => s.outerHTML)`)
	if len(icons) > 0 {
		t.Errorf("status icons without a label or keyboard focus: %q", icons)
	}
	// The compose box is reachable from the keyboard and focused first.
	if id := eval[string](t, ctx, `document.activeElement.id`); id != "text" {
		t.Errorf("focus on %q, want the compose box", id)
	}

	const contrast = `(() => {
	  const lum = (c) => { const [r, g, b] = c.match(/[\d.]+/g).slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
	    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
	  const bg = (el) => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor; if (!/rgba\(.*, 0\)$/.test(c) && c !== "transparent") return c; } return "rgb(255, 255, 255)"; };
	  const bad = [];
	  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
	  for (let n; (n = walker.nextNode()); ) {
	    const el = n.parentElement;
	    if (!n.textContent.trim() || !el.checkVisibility() || el.closest("[aria-disabled=true], .visually-hidden, [hidden]")) continue;
	    const a = lum(getComputedStyle(el).color), b = lum(bg(el));
	    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
	    if (ratio < 4.5) bad.push(el.className + " '" + n.textContent.trim().slice(0, 20) + "' " + ratio.toFixed(2));
	  }
	  return bad;
	})()`
	for _, scheme := range []string{"light", "dark"} {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		if err != nil {
			t.Fatal(err)
		}
		if bad := eval[[]string](t, ctx, contrast); len(bad) > 0 {
			t.Errorf("%s theme: text below 4.5:1: %q", scheme, bad)
		}
		screenshot(t, ctx, scheme)
	}
}

// TestDaySeparators: a message the server accepted yesterday (its clock
// is set a day back) sits under "Yesterday", one sent now under "Today",
// in the order the core gives.
func TestDaySeparators(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(time.Now().AddDate(0, 0, -1)))
	alice := newDevice(t, srv, "alice")
	bob := newDevice(t, srv, "bob")
	online(t, alice, bob)
	if _, err := bob.core.Send(context.Background(), "alice", "see you tomorrow"); err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 20*time.Second, func() error {
		if h, _ := alice.core.Conversation(context.Background(), "bob"); len(h) != 1 {
			return errorf("alice has %d messages", len(h))
		}
		return nil
	})
	ctx := tab(t)
	alice.open(ctx, "/c/bob")
	typeAndSend(t, ctx, "good morning")
	waitFor(t, ctx, 30*time.Second, `document.querySelector("li.msg.out")`, `document.getElementById("messages").innerText`)
	got := eval[[]string](t, ctx, `[...document.querySelectorAll("#messages > li")].map((li) =>
	  li.classList.contains("day") ? "day:" + li.textContent : li.querySelector(".text").textContent)`)
	want := []string{"day:Yesterday", "see you tomorrow", "day:Today", "good morning"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("conversation %q, want %q", got, want)
	}
	screenshot(t, ctx, "days")
}

// TestSendErrorNotifies: a message that waited its whole queue lifetime
// (12 h by default, 2 s here) without the server accepting it turns Error,
// says why, and raises the "Send error" notification.
func TestSendErrorNotifies(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice", func(s *client.Settings) { s.QueueLifetime = client.Duration(2 * time.Second) })
	online(t, alice)
	ctx := tab(t)
	grantNotifications(t, ctx, alice.origin())
	recordNotifications(t, ctx)
	alice.open(ctx, "/c/bob")
	srv.Stop(t)
	typeAndSend(t, ctx, "this will not go")
	waitFor(t, ctx, 60*time.Second, `document.querySelector('li.msg.out[data-status="error"] .why')`, `document.getElementById("messages").innerText`)
	why := eval[string](t, ctx, `document.querySelector("li.msg.out .why p").textContent`)
	if !strings.Contains(why, "not accepted by the server within 2s") {
		t.Errorf("reason %q", why)
	}
	waitFor(t, ctx, 20*time.Second, `window.__notes.some((n) => n.title === "Send error")`, `JSON.stringify(window.__notes.map((n) => n.title))`)
	screenshot(t, ctx, "send-error")
}

// TestStartConversation: the contacts page's field opens a conversation
// with an account name (lower-cased as the core does), and says what is
// wrong with a name that cannot be one.
func TestStartConversation(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	ctx := tab(t)
	alice.open(ctx, "/")
	must(t, ctx, "a bad name", chromedp.SendKeys(chromedp.ID("start-peer"), "bob smith"))
	pressEnter(t, ctx, false)
	waitFor(t, ctx, 20*time.Second, `document.getElementById("start-error")`, `document.body.innerText`)
	if msg := eval[string](t, ctx, `document.getElementById("start-error").textContent`); !strings.Contains(msg, "invalid account name") {
		t.Errorf("refusal: %q", msg)
	}
	if v := eval[string](t, ctx, `document.getElementById("start-peer").value`); v != "bob smith" {
		t.Errorf("the field lost what was typed: %q", v)
	}
	screenshot(t, ctx, "refused")
	must(t, ctx, "a good name", chromedp.SetValue(chromedp.ID("start-peer"), " Bob "))
	must(t, ctx, "focus", chromedp.Focus(chromedp.ID("start-peer")))
	pressEnter(t, ctx, false)
	waitFor(t, ctx, 20*time.Second, `location.pathname === "/c/bob" && document.getElementById("text") === document.activeElement`, `location.pathname`)
}
