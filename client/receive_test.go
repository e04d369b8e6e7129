package client

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/message"
)

// sipMessage builds a MESSAGE as the server sends it.
func sipMessage(t *testing.T, from, id, contentType, body string, submitted time.Time) *sip.Request {
	t.Helper()
	raw := fmt.Sprintf("MESSAGE sip:alice@127.0.0.1:5555;transport=tls SIP/2.0\r\n"+
		"Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-%s\r\n"+
		"From: <sip:%s@localhost>;tag=abc\r\n"+
		"To: <sip:alice@localhost>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: 1 MESSAGE\r\n"+
		"Max-Forwards: 70\r\n"+
		"Content-Type: %s\r\n"+
		"%s: %s\r\n"+
		"%s: %s\r\n"+
		"Content-Length: %d\r\n\r\n%s",
		id, from, id, contentType, api.HeaderMessageID, id, api.HeaderSubmittedAt,
		submitted.UTC().Format(time.RFC3339Nano), len(body), body)
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return msg.(*sip.Request)
}

func TestReceiveStoresOnceAndNotifies(t *testing.T) {
	r := newRig(t, nil)
	id := message.NewID()
	req := sipMessage(t, "bob", id, "text/plain;charset=utf-8", "hello alice", t0.Add(-time.Minute))
	for i := 0; i < 2; i++ {
		if code, reason := r.c.handleSIP(req); code != 200 {
			t.Fatalf("answer %d %s", code, reason)
		}
	}
	h, err := r.c.History(context.Background(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 1 || h[0].Text != "hello alice" || h[0].Outgoing || !h[0].At.Equal(t0.Add(-time.Minute)) {
		t.Fatalf("history after a repeated delivery: %+v", h)
	}
	r.notes.mu.Lock()
	got := r.notes.full
	r.notes.mu.Unlock()
	if len(got) != 1 || got[0] != "bob: hello alice" {
		t.Fatalf("notifications %q, want who and what", got)
	}
	waitFor(t, func() bool { return len(r.eventsOf(EventReceived)) == 1 })
	if e := r.eventsOf(EventReceived)[0]; e.Text != "hello alice" || e.Peer != "bob" || e.ID != id {
		t.Fatalf("received event %+v does not carry the text", e)
	}
}

// notify_text false: the notification says who, not what.
func TestNotificationCanHideTheText(t *testing.T) {
	r := newRig(t, func(s *Settings) { s.NotifyText = false })
	if code, _ := r.c.handleSIP(sipMessage(t, "bob", message.NewID(), "text/plain", "a secret", t0)); code != 200 {
		t.Fatal(code)
	}
	r.notes.mu.Lock()
	got := r.notes.full
	r.notes.mu.Unlock()
	if len(got) != 1 || got[0] != "bob: New message" {
		t.Fatalf("notifications %q", got)
	}
}

func TestReceiveRefusesWhatItCannotStore(t *testing.T) {
	r := newRig(t, nil)
	bad := sipMessage(t, "bob", "not-a-uuid", "text/plain;charset=utf-8", "x", t0)
	if code, _ := r.c.handleSIP(bad); code != 400 {
		t.Fatalf("a bad id got %d", code)
	}
	r.c.db.close() // the store fails: the server must keep the message
	ok := sipMessage(t, "bob", message.NewID(), "text/plain;charset=utf-8", "x", t0)
	if code, _ := r.c.handleSIP(ok); code != 500 {
		t.Fatalf("answered %d without storing", code)
	}
}

func TestReportsMoveStatus(t *testing.T) {
	r := newRig(t, nil)
	r.srv.answer = enqueued(r.clk)
	delivered := r.send("bob", "one")
	failed := r.send("bob", "two")
	for _, tc := range []struct {
		m      Message
		status string
		want   message.Status
	}{{delivered, api.IMDNDelivered, message.Delivered}, {failed, api.IMDNFailed, message.Error}} {
		body, _ := api.MarshalIMDN(api.IMDN{MessageID: tc.m.ID, DateTime: r.clk.Now(), Recipient: "sip:bob@localhost", Status: tc.status})
		if code, _ := r.c.handleSIP(sipMessage(t, "bob", message.NewID(), api.ContentTypeIMDN, string(body), t0)); code != 200 {
			t.Fatalf("report answered %d", code)
		}
		if s := r.status(tc.m.ID).Status; s != tc.want {
			t.Fatalf("after a %s report: %s", tc.status, s)
		}
	}
	// A report for an unknown id is answered and ignored.
	body, _ := api.MarshalIMDN(api.IMDN{MessageID: message.NewID(), DateTime: r.clk.Now(), Status: api.IMDNDelivered})
	if code, _ := r.c.handleSIP(sipMessage(t, "bob", message.NewID(), api.ContentTypeIMDN, string(body), t0)); code != 200 {
		t.Fatalf("unknown report answered %d", code)
	}
}

func TestReportOvertakingTheAnswerPassesThroughEnqueued(t *testing.T) {
	r := newRig(t, nil)
	m := r.send("bob", "hi") // the server is unavailable: still Sending
	if err := r.c.applyReport(context.Background(), m.ID, message.Delivered, r.clk.Now(), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		var got []message.Status
		for _, e := range r.eventsOf(EventStatus) {
			if e.ID == m.ID {
				got = append(got, e.Status)
			}
		}
		return fmt.Sprint(got) == fmt.Sprint([]message.Status{message.Sending, message.Enqueued, message.Delivered})
	})
	if rows, _ := r.c.db.sending(context.Background()); len(rows) != 0 {
		t.Fatal("a delivered message stayed in the outbox")
	}
}

func TestValidityErasesTextForGood(t *testing.T) {
	r := newRig(t, nil)
	r.srv.answer = enqueued(r.clk)
	const secretOut = "outgoing-secret-7f3a"
	const secretIn = "incoming-secret-91bc"
	r.send("bob", secretOut)
	if code, _ := r.c.handleSIP(sipMessage(t, "bob", message.NewID(), "text/plain;charset=utf-8", secretIn, t0)); code != 200 {
		t.Fatal(code)
	}
	r.clk.Advance(72*time.Hour - time.Second)
	h := history(t, r.c, "bob")
	if h[0].Text != secretOut || h[1].Text != secretIn {
		t.Fatalf("texts gone before their validity: %+v", h)
	}
	r.clk.Advance(time.Second)
	// The sweeper's timer fires on the fake clock; wait for its work.
	waitFor(t, func() bool { return len(r.eventsOf(EventErased)) == 1 })
	h = history(t, r.c, "bob")
	if h[0].Text != PlaceholderSent || !h[0].Erased || h[1].Text != PlaceholderReceived || !h[1].Erased {
		t.Fatalf("after 72 h: %+v", h)
	}
	// Not just hidden: no byte of either text is left in the files.
	for _, name := range []string{storeFile, storeFile + "-wal"} {
		b, err := os.ReadFile(filepath.Join(r.home, name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, secret := range []string{secretOut, secretIn} {
			if bytes.Contains(b, []byte(secret)) {
				t.Fatalf("%s still holds %q", name, secret)
			}
		}
	}
}

func TestPersistentKeepsTexts(t *testing.T) {
	r := newRig(t, func(s *Settings) { s.Persistent = true })
	r.srv.answer = enqueued(r.clk)
	r.send("bob", "keep me")
	r.clk.Advance(365 * 24 * time.Hour)
	h := history(t, r.c, "bob")
	if h[0].Text != "keep me" || h[0].Erased {
		t.Fatalf("persistent lost the text: %+v", h)
	}
}

func TestValidityWaitsForTheOutbox(t *testing.T) {
	r := newRig(t, func(s *Settings) { s.Validity = Duration(time.Hour); s.QueueLifetime = Duration(2 * time.Hour) })
	m := r.send("bob", "still sending")
	r.advance(90*time.Minute, 30*time.Minute)
	if row := r.status(m.ID); row.Erased || row.Text != "still sending" {
		t.Fatalf("text erased while the message waits to be sent: %+v", row)
	}
	r.advance(31*time.Minute, 30*time.Minute) // leaves the queue as Error
	waitFor(t, func() bool { return r.status(m.ID).Erased })
}

func history(t *testing.T, c *Core, peer string) []Message {
	t.Helper()
	h, err := c.History(context.Background(), peer)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestContactsNewestFirstWithUnread(t *testing.T) {
	r := newRig(t, nil)
	r.srv.answer = enqueued(r.clk)
	r.send("carol", "old")
	r.clk.Advance(time.Minute)
	for i := 0; i < 2; i++ {
		r.c.handleSIP(sipMessage(t, "bob", message.NewID(), "text/plain", "new", r.clk.Now()))
	}
	cs, err := r.c.Contacts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Name != "bob" || cs[0].Unread != 2 || cs[1].Name != "carol" || cs[1].Unread != 0 {
		t.Fatalf("contacts %+v", cs)
	}
	history(t, r.c, "bob")
	cs, _ = r.c.Contacts(context.Background())
	if cs[0].Unread != 0 {
		t.Fatalf("history did not mark read: %+v", cs)
	}
}

func TestStoreFilesArePrivate(t *testing.T) {
	r := newRig(t, nil)
	r.send("bob", "x")
	fi, err := os.Stat(r.home)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("profile folder mode %v", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(r.home)
	for _, e := range entries {
		fi, _ := e.Info()
		if !strings.HasSuffix(e.Name(), ".sock") && fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v", e.Name(), fi.Mode().Perm())
		}
	}
}

// TestApplySettingsTakesEffectAtOnce: a shorter validity applied to a
// running core erases a text now past it, without a restart, and is saved.
func TestApplySettingsTakesEffectAtOnce(t *testing.T) {
	r := newRig(t, func(s *Settings) { s.Validity = Duration(72 * time.Hour) })
	r.srv.answer = enqueued(r.clk)
	m := r.send("bob", "short-lived")
	r.clk.Advance(2 * time.Hour)
	if row := r.status(m.ID); row.Erased {
		t.Fatalf("erased before its validity: %+v", row)
	}
	s := r.c.Settings()
	s.Validity = Duration(time.Hour)
	if err := r.c.ApplySettings(s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return r.status(m.ID).Erased })
	saved, err := LoadSettings(r.home)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(saved.Validity) != time.Hour {
		t.Fatalf("saved validity %s", saved.Validity)
	}
	s.Validity = 0
	if err := r.c.ApplySettings(s); err == nil {
		t.Fatal("a zero validity was applied")
	}
	if time.Duration(r.c.Settings().Validity) != time.Hour {
		t.Fatalf("a refused setting changed the one in force: %s", r.c.Settings().Validity)
	}
}
