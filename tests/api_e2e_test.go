package tests

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/loginguard"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

func TestIdempotentResubmission(t *testing.T) {
	s, tok := newPair(t)
	id := message.NewID()
	code, first, _ := submit(t, s, tok, id, "bob", "only once")
	if code != 202 {
		t.Fatalf("first: %d", code)
	}
	for i := 0; i < 3; i++ {
		code, again, _ := submit(t, s, tok, id, "bob", "only once")
		if code != 200 || again.ID != id || again.Status != "enqueued" || !again.SubmittedAt.Equal(first.SubmittedAt) {
			t.Fatalf("resubmission %d: %d %+v", i, code, again)
		}
	}
	// The same id from another sender is another message.
	bobTok := s.Token(t, "bob", "bob-pw")
	if code, _, _ := submit(t, s, bobTok, id, "alice", "same id, other sender"); code != 202 {
		t.Fatalf("same id from bob: %d", code)
	}
	bob := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, bob, false)
	waitStatus(t, s, tok, id, "delivered")
	if got := bob.Texts(); len(got) != 1 {
		t.Fatalf("bob got %d copies: %q", len(got), got)
	}
	// After delivery, a retry still answers 200 with the final status.
	if code, again, _ := submit(t, s, tok, id, "bob", "only once"); code != 200 || again.Status != "delivered" {
		t.Fatalf("resubmission after delivery: %d %+v", code, again)
	}
}

func TestAPIRefusals(t *testing.T) {
	s, tok := newPair(t, servertest.WithOptions(func(o *server.Options) { o.MaxPending = 3 }))
	s.AddUser(t, "carol", "carol-pw")

	t.Run("wrong password", func(t *testing.T) {
		for _, cred := range []string{"alice:wrong", "nobody:whatever", "alice"} {
			req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathTokens, nil)
			req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
			res, err := s.HTTPClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 401 {
				t.Fatalf("%q: %d, want 401", cred, res.StatusCode)
			}
		}
		code, e := apiCall(t, s, "POST", api.PathTokens, "", nil, nil)
		if code != 401 || e.Code != api.CodeUnauthorized {
			t.Fatalf("no credentials: %d %+v", code, e)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		for _, bad := range []string{"", "spt_forged", tok + "x"} {
			code, _, e := submit(t, s, bad, message.NewID(), "bob", "hi")
			if code != 401 || e.Code != api.CodeUnauthorized {
				t.Fatalf("token %q: %d %+v", bad, code, e)
			}
		}
	})
	t.Run("revoked token", func(t *testing.T) {
		tmp := s.Token(t, "alice", "alice-pw")
		if code, _ := apiCall(t, s, "DELETE", api.PathTokens, tmp, nil, nil); code != 204 {
			t.Fatalf("revoke: %d", code)
		}
		if code, _, e := submit(t, s, tmp, message.NewID(), "bob", "hi"); code != 401 {
			t.Fatalf("revoked token: %d %+v", code, e)
		}
	})
	t.Run("another account's message", func(t *testing.T) {
		id := message.NewID()
		submit(t, s, tok, id, "bob", "private")
		carolTok := s.Token(t, "carol", "carol-pw")
		code, e := apiCall(t, s, "GET", api.PathMessages+"/"+id, carolTok, nil, nil)
		if code != 404 || e.Code != api.CodeNotFound {
			t.Fatalf("carol reads alice's message: %d %+v", code, e)
		}
		code, e = apiCall(t, s, "GET", api.PathMessages+"/"+message.NewID(), tok, nil, nil)
		if code != 404 || e.Code != api.CodeNotFound {
			t.Fatalf("unknown id: %d %+v", code, e)
		}
	})
	t.Run("message rules", func(t *testing.T) {
		cases := []struct {
			name, text string
			status     int
			code       string
		}{
			{"empty", "", 422, message.CodeEmpty},
			{"161 characters", strings.Repeat("a", 161), 422, message.CodeTooLong},
			{"161 emoji", strings.Repeat("👍🏽", 161), 422, message.CodeTooLong},
			{"too many bytes", strings.Repeat("👨‍👩‍👧‍👦", 100), 422, message.CodeTooManyBytes},
			{"control character", "bell\x07", 422, message.CodeControlChar},
			{"carriage return", "a\r\nb", 422, message.CodeControlChar},
		}
		for _, c := range cases {
			code, _, e := submit(t, s, tok, message.NewID(), "carol", c.text)
			if code != c.status || e.Code != c.code {
				t.Errorf("%s: %d %+v, want %d %s", c.name, code, e, c.status, c.code)
			}
		}
		if code, _, _ := submit(t, s, tok, message.NewID(), "carol", strings.Repeat("👍🏽", 160)); code != 202 {
			t.Errorf("160 emoji: %d, want 202", code)
		}
		if code, _, _ := submit(t, s, tok, message.NewID(), "carol", "line one\nline two"); code != 202 {
			t.Errorf("line feed: %d, want 202", code)
		}
		// JSON encoders replace invalid UTF-8, so send the raw bytes.
		raw := []byte(`{"id":"` + message.NewID() + `","to":"carol","text":"a` + "\xff" + `b"}`)
		if code := postRaw(t, s, tok, raw); code != 422 {
			t.Errorf("invalid UTF-8: %d, want 422", code)
		}
	})
	t.Run("bad ids and bodies", func(t *testing.T) {
		code, _, e := submit(t, s, tok, "not-a-uuid", "bob", "hi")
		if code != 400 || e.Code != message.CodeInvalidID {
			t.Fatalf("bad id: %d %+v", code, e)
		}
		code, _, e = submit(t, s, tok, "", "bob", "hi")
		if code != 400 || e.Code != message.CodeInvalidID {
			t.Fatalf("no id: %d %+v", code, e)
		}
		code, e = apiCall(t, s, "POST", api.PathMessages, tok, map[string]any{"id": message.NewID(), "to": "bob", "text": "x", "cc": "carol"}, nil)
		if code != 400 || e.Code != api.CodeBadRequest {
			t.Fatalf("unknown field: %d %+v", code, e)
		}
		if code := postRaw(t, s, tok, bytes.Repeat([]byte("x"), 64<<10)); code != 413 {
			t.Fatalf("64 KiB body: %d, want 413", code)
		}
	})
	t.Run("unknown recipient", func(t *testing.T) {
		for _, to := range []string{"nobody", "Not A Name"} {
			code, _, e := submit(t, s, tok, message.NewID(), to, "hi")
			if code != 404 || e.Code != api.CodeUnknownRecipient {
				t.Fatalf("to %q: %d %+v", to, code, e)
			}
		}
	})
	t.Run("mailbox full", func(t *testing.T) {
		s.AddUser(t, "dave", "dave-pw")
		for i := 0; i < 3; i++ {
			if code, _, _ := submit(t, s, tok, message.NewID(), "dave", fmt.Sprint(i)); code != 202 {
				t.Fatalf("message %d: %d", i, code)
			}
		}
		code, _, e := submit(t, s, tok, message.NewID(), "dave", "one too many")
		if code != 429 || e.Code != api.CodeMailboxFull {
			t.Fatalf("fourth message: %d %+v", code, e)
		}
	})
}

func TestRegisterRefusals(t *testing.T) {
	s, _ := newPair(t)
	alice := s.NewDevice(t, "alice", "alice-pw")
	if code, _ := alice.RegisterAs("bob", 600, false); code != 403 {
		t.Fatalf("alice registers bob's AOR: %d, want 403", code)
	}
	wrong := s.NewDevice(t, "alice", "wrong")
	if code, _ := wrong.Register(600, false); code != 401 {
		t.Fatalf("wrong password: %d, want 401", code)
	}
	ghost := s.NewDevice(t, "ghost", "whatever")
	if code, _ := ghost.Register(600, false); code != 401 {
		t.Fatalf("unknown account: %d, want 401", code)
	}
	if code, _ := alice.Register(30, false); code != 423 {
		t.Fatalf("expires 30 s: %d, want 423 Interval Too Brief", code)
	}
	if _, ok := s.Registrar().Lookup("alice"); ok {
		t.Fatal("a refused registration left a binding")
	}
}

func TestIDCaseAndConflict(t *testing.T) {
	s, tok := newPair(t)
	s.AddUser(t, "carol", "carol-pw")
	id := message.NewID()
	if code, _, _ := submit(t, s, tok, id, "bob", "first"); code != 202 {
		t.Fatalf("submit: %d", code)
	}
	upper := strings.ToUpper(id)
	if code, res, _ := submit(t, s, tok, upper, "bob", "first"); code != 200 || res.ID != id {
		t.Fatalf("same id in upper case: %d %+v, want 200 for the same message", code, res)
	}
	if code, st := status(t, s, tok, upper); code != 200 || st.ID != id {
		t.Fatalf("status by upper-case id: %d %+v", code, st)
	}
	code, _, e := submit(t, s, tok, id, "carol", "reused for carol")
	if code != 409 || e.Code != api.CodeIDConflict {
		t.Fatalf("id reused for another recipient: %d %+v", code, e)
	}
	if n, _ := s.Store().CountPending(t.Context()); n != 1 {
		t.Fatalf("%d pending, want 1", n)
	}
}

func TestLoneSurrogateRefused(t *testing.T) {
	s, tok := newPair(t)
	raw := `{"id":"` + message.NewID() + `","to":"bob","text":"a\ud800b"}`
	if code := postRaw(t, s, tok, []byte(raw)); code != 422 {
		t.Fatalf("lone surrogate: %d, want 422", code)
	}
	// A real U+FFFD, spelled out or escaped, is a character like any other.
	for _, text := range []string{"a\uFFFDb", `a\ufffdb`} {
		raw := `{"id":"` + message.NewID() + `","to":"bob","text":"` + text + `"}`
		if code := postRaw(t, s, tok, []byte(raw)); code != 202 {
			t.Fatalf("U+FFFD as %q: %d, want 202", text, code)
		}
	}
}

func TestLoginFailuresRateLimited(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s, _ := newPair(t, servertest.WithFakeClock(t0))
	login := func(pw string) (int, api.Error) {
		req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathTokens, nil)
		req.SetBasicAuth("alice", pw)
		res, err := s.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var eb api.ErrorBody
		json.NewDecoder(res.Body).Decode(&eb)
		return res.StatusCode, eb.Error
	}
	// One address guessing one account: a few free failures, then even
	// the right password is refused unchecked (429) until the spacing has
	// passed (internal/loginguard; no lock of the account itself).
	for i := 0; i < loginguard.DefaultAddressFreeFailures; i++ {
		if code, _ := login("guess"); code != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, code)
		}
	}
	if code, e := login("alice-pw"); code != 429 || e.Code != api.CodeRateLimited {
		t.Fatalf("after %d failures, even the right password: %d %+v, want 429 rate_limited", loginguard.DefaultAddressFreeFailures, code, e)
	}
	s.Clock.Advance(10 * time.Minute)
	if code, _ := login("alice-pw"); code != 201 {
		t.Fatalf("after the window: %d, want 201", code)
	}
}
