package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

// TestCounterMatchesTheMessageRules runs the page's counting and checking
// code (rules.js) and package message on one corpus: the same count, the
// same verdict, the same words.
func TestCounterMatchesTheMessageRules(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	ctx := tab(t)
	alice.open(ctx, "/c/bob")

	corpus := []string{
		"", "a", "Hello Bob", "line one\nline two", "\n",
		"a\r\nb",                  // CR LF is one character, but CR is a control character
		"héllo wörld ñ ç",         // precomposed accents
		"he\u0301llo we\u0308rld", // combining accents: é and ë are two code points, one character
		"👍", "👍🏽", "👋🏿 👋🏻",        // skin tones
		"👨‍👩‍👧‍👦", "👩🏽‍💻", "🧑‍🤝‍🧑", // ZWJ sequences
		"🇫🇷🇩🇪🇯🇵", "🇫🇷🇩", // flags, and a flag with a lone regional indicator
		"🏳️‍🌈", "🏴󠁧󠁢󠁥󠁮󠁧󠁿", "1️⃣", "❤️", // variation selectors, tags, keycap
		"नमस्ते", "สวัสดี", "안녕하세요", "각", "مرحبا", "日本語のテキスト",
		"tab\there", "del\x7f", "c1\u0085", "nul\x00", "esc\x1b[31m", "zero\u200bwidth", "rtl\u202eoverride",
		strings.Repeat("a", 160), strings.Repeat("a", 161),
		strings.Repeat("é", 160), strings.Repeat("e\u0301", 161),
		strings.Repeat("👍🏽", 160), strings.Repeat("👍🏽", 161),
		strings.Repeat("👨‍👩‍👧‍👦", 80), // 80 characters, 2000 bytes
		strings.Repeat("👨‍👩‍👧‍👦", 82), // 82 characters, 2050 bytes: too many bytes
		strings.Repeat("🇫🇷", 160), strings.Repeat("🇫🇷", 161),
		strings.Repeat("a\r\n", 5), strings.Repeat("x", 2049), strings.Repeat("€", 683),
	}
	corpus = append(corpus, mixedTexts(400)...)
	b, err := json.Marshal(corpus)
	if err != nil {
		t.Fatal(err)
	}
	type verdict struct {
		Count         int
		Code, Message string
	}
	got := eval[[]verdict](t, ctx, `(`+string(b)+`).map((s) => {
	  const p = SealpostRules.check(s);
	  return { Count: SealpostRules.countChars(s), Code: p ? p.code : "", Message: p ? p.message : "" };
	})`)
	if len(got) != len(corpus) {
		t.Fatalf("%d verdicts for %d texts", len(got), len(corpus))
	}
	for i, s := range corpus {
		want := verdict{Count: message.CountChars(s)}
		var re *message.RuleError
		if err := message.CheckText(s); errors.As(err, &re) {
			want.Code, want.Message = re.Code, re.Message
		} else if err != nil {
			t.Fatalf("CheckText(%q): %v", s, err)
		}
		if got[i] != want {
			t.Errorf("%+q:\n  page: %+v\n  Go:   %+v", s, got[i], want)
		}
	}
	t.Logf("%d texts counted and checked alike", len(corpus))
}

// mixedTexts returns n texts (the same each run) drawn from code points
// where grapheme rules are busy: Hangul jamo and syllables, Indic letters,
// viramas and vowel signs, prepended marks, combining marks, emoji and
// their modifiers, ZWJ, variation selectors, regional indicators, CR, LF.
func mixedTexts(n int) []string {
	pool := [][2]rune{
		{'a', 'z'}, {0x1100, 0x1112}, {0x1161, 0x1175}, {0x11A8, 0x11C2}, {0xAC00, 0xAC20},
		{0x0915, 0x0939}, {0x093E, 0x094D}, {0x0995, 0x09B9}, {0x09CD, 0x09CD}, {0x0E01, 0x0E3A},
		{0x0600, 0x0605}, {0x0300, 0x036F}, {0x1F44D, 0x1F44F}, {0x1F3FB, 0x1F3FF}, {0x1F468, 0x1F469},
		{0x200D, 0x200D}, {0xFE0F, 0xFE0F}, {0x1F1E6, 0x1F1FF}, {'\n', '\n'}, {0x2764, 0x2764},
		{0x0E40, 0x0E44}, {0x0D4E, 0x0D4E}, {0x111C2, 0x111C3},
	}
	r := rand.New(rand.NewPCG(15, 160))
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		for range 1 + r.IntN(24) {
			p := pool[r.IntN(len(pool))]
			b.WriteRune(p[0] + rune(r.IntN(int(p[1]-p[0]+1))))
		}
		out[i] = b.String()
	}
	return out
}

// TestComposeRefusesWhatTheRulesRefuse: 161 characters show 161/160 and
// the reason, and neither Enter nor Send sends them; the core refuses
// them too when asked directly; 160 go.
func TestComposeRefusesWhatTheRulesRefuse(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	bob := newDevice(t, srv, "bob")
	online(t, alice, bob)
	ctx := tab(t)
	alice.open(ctx, "/c/bob")

	must(t, ctx, "type 161 characters", chromedp.SendKeys(chromedp.ID("text"), strings.Repeat("a", 161)))
	type compose struct {
		Counter, Problem, Disabled, Invalid string
		Over                                bool
	}
	state := func() compose {
		return eval[compose](t, ctx, `({ Counter: document.getElementById("counter").textContent,
		  Over: document.getElementById("counter").classList.contains("over"),
		  Problem: document.getElementById("rule-error").textContent,
		  Disabled: document.getElementById("send").getAttribute("aria-disabled"),
		  Invalid: document.getElementById("text").getAttribute("aria-invalid") })`)
	}
	if s := state(); s.Counter != "161/160" || !s.Over || s.Problem != "161 characters; the limit is 160" || s.Disabled != "true" || s.Invalid != "true" {
		t.Errorf("after 161 characters: %+v", s)
	}
	pressEnter(t, ctx, false)
	must(t, ctx, "click Send", chromedp.Click(chromedp.ID("send")))
	if s := state(); s.Problem != "Not sent: 161 characters; the limit is 160" {
		t.Errorf("after Enter and Send: %+v", s)
	}
	screenshot(t, ctx, "refused")
	if n := len(eval[string](t, ctx, `document.getElementById("text").value`)); n != 161 {
		t.Errorf("the text was not kept: %d characters left", n)
	}
	// The core says the same when the page is bypassed.
	type answer struct {
		Status int
		Code   string
	}
	a := eval[answer](t, ctx, `fetch("/c/bob/send", { method: "POST", headers: { Accept: "application/json" },
	  body: new URLSearchParams({ text: "b".repeat(161) }) }).then(async (r) => ({ Status: r.status, Code: (await r.json()).error.code }))`)
	if a.Status != 422 || a.Code != message.CodeTooLong {
		t.Errorf("direct POST of 161 characters: %+v, want 422 %s", a, message.CodeTooLong)
	}
	if h, err := alice.core.Conversation(context.Background(), "bob"); err != nil || len(h) != 0 {
		t.Fatalf("something was sent: %+v, %v", h, err)
	}

	// One less: 160 characters are sent.
	must(t, ctx, "delete one", chromedp.SendKeys(chromedp.ID("text"), kb.Backspace))
	if s := state(); s.Counter != "160/160" || s.Over || s.Problem != "" || s.Disabled != "false" {
		t.Errorf("after 160 characters: %+v", s)
	}
	pressEnter(t, ctx, false)
	waitFor(t, ctx, 30*time.Second, `document.querySelector("li.msg.out")`, `document.getElementById("rule-error").textContent`)
	// Shift+Enter is a line feed, not a send.
	must(t, ctx, "line one", chromedp.SendKeys(chromedp.ID("text"), "one"))
	pressEnter(t, ctx, true)
	must(t, ctx, "line two", chromedp.SendKeys(chromedp.ID("text"), "two"))
	if v := eval[string](t, ctx, `document.getElementById("text").value`); v != "one\ntwo" {
		t.Errorf("after Shift+Enter the box holds %q", v)
	}
	if s := state(); s.Counter != "7/160" {
		t.Errorf("counter for one\\ntwo: %+v", s)
	}
}

// TestMessageTextIsInert: a text made of markup is shown as text, live
// and after a reload, in the conversation, the contact list and the
// notification; nothing in it runs.
func TestMessageTextIsInert(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	bob := newDevice(t, srv, "bob")
	online(t, alice, bob)
	ctx := tab(t)
	grantNotifications(t, ctx, bob.origin())
	recordNotifications(t, ctx)
	bob.open(ctx, "/c/alice")

	xss := `<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script></li></ol><b onclick=alert(1)>"'&amp;`
	if _, err := alice.core.Send(context.Background(), "bob", xss); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		waitFor(t, ctx, 30*time.Second, `document.querySelector("li.msg.in") && document.querySelector('.contact[data-peer="alice"] .preview')`, `document.body.innerText`)
		type page struct {
			Text, Preview string
			Elements      int
			Pwned         any
		}
		p := eval[page](t, ctx, `({ Text: document.querySelector("li.msg.in .text").textContent,
		  Preview: document.querySelector('.contact[data-peer="alice"] .preview').textContent,
		  Elements: document.querySelectorAll("#messages img, #messages script, #messages b, #contacts img, #contacts script, #contacts b").length,
		  Pwned: window.__pwned ?? null })`)
		if p.Text != xss || p.Preview != xss || p.Elements != 0 || p.Pwned != nil {
			t.Errorf("%s: %+v", when, p)
		}
	}
	check("live")
	notes := eval[[]string](t, ctx, `window.__notes.map((n) => n.body)`)
	if len(notes) != 1 || notes[0] != xss {
		t.Errorf("notification bodies %q", notes)
	}
	screenshot(t, ctx, "live")
	must(t, ctx, "reload", chromedp.Reload())
	check("after a reload")
	screenshot(t, ctx, "reloaded")
}

// TestServerDownThenBack: with the server stopped, the page says the
// device is not registered and a message stays Sending, saying why; once
// the server is back it goes Enqueued and Delivered without a reload.
func TestServerDownThenBack(t *testing.T) {
	srv := servertest.Start(t)
	alice := newDevice(t, srv, "alice")
	bob := newDevice(t, srv, "bob")
	online(t, alice, bob)
	ctx := tab(t)
	alice.open(ctx, "/c/bob")
	waitFor(t, ctx, 20*time.Second, `document.querySelector("#conn.on")`, `document.getElementById("conn").textContent`)
	eval[bool](t, ctx, watchStatuses)

	srv.Stop(t)
	waitFor(t, ctx, 30*time.Second, `document.querySelector("#conn.off")`, `document.getElementById("conn").textContent`)
	typeAndSend(t, ctx, "are you there?")
	waitFor(t, ctx, 30*time.Second, `document.querySelector('li.msg.out[data-status="sending"] .pending')`, `document.getElementById("messages").innerText`)
	pending := eval[string](t, ctx, `document.querySelector("li.msg.out .pending").textContent`)
	if !strings.Contains(pending, "failed") {
		t.Errorf("pending note %q does not say the attempt failed", pending)
	}
	label := eval[string](t, ctx, `document.querySelector("li.msg.out .status").getAttribute("aria-label")`)
	if !strings.HasPrefix(label, "Sending message: ") {
		t.Errorf("status label %q", label)
	}
	screenshot(t, ctx, "sending")

	srv.Restart(t)
	waitFor(t, ctx, 60*time.Second, `document.querySelector('li.msg.out[data-status="delivered"]')`, `JSON.stringify(window.__statuses)`)
	waitFor(t, ctx, 30*time.Second, `document.querySelector("#conn.on")`, `document.getElementById("conn").textContent`)
	seq := eval[map[string][]string](t, ctx, "window.__statuses")
	for id, got := range seq {
		if strings.Join(got, ",") != "sending,enqueued,delivered" {
			t.Errorf("bubble %s showed %v, want sending, enqueued, delivered", id, got)
		}
	}
	if len(seq) != 1 {
		t.Errorf("bubbles: %v", seq)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("li.msg .pending").length`); n != 0 {
		t.Errorf("a delivered bubble still says an attempt failed")
	}
	screenshot(t, ctx, "delivered")
	_ = fmt.Sprint
}
