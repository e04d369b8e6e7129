package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

// History tells the truth without a run: messages delivered while alice
// was not online are Enqueued on her device until one batch request
// (POST /v1/messages/status) brings their real status.
func TestBatchStatusRefreshWithoutRun(t *testing.T) {
	srv := servertest.Start(t)
	alice := login(t, srv, "alice")
	srv.AddUser(t, "bob", "bob-password-long")
	alice.open(nil, nil)
	ctx := context.Background()
	var ids []string
	for i := 0; i < 3; i++ {
		m, err := alice.core.Send(ctx, "bob", fmt.Sprintf("message %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.core.AttemptOnce(ctx); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	for _, id := range ids {
		if m, _ := alice.core.Message(ctx, id); m.Status != message.Enqueued {
			t.Fatalf("%s: %s before bob comes online", id, m.Status)
		}
	}
	bob := srv.NewDevice(t, "bob", "bob-password-long")
	if code, err := bob.Register(600, false); err != nil || code != 200 {
		t.Fatalf("bob registers: %d %v", code, err)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if n := len(bob.Texts()); n != 3 {
			return fmt.Errorf("bob has %d messages", n)
		}
		return nil
	})
	// Nothing reached alice's device: no run, no report.
	if m, _ := alice.core.Message(ctx, ids[0]); m.Status != message.Enqueued {
		t.Fatalf("status %s without a refresh", m.Status)
	}
	if alice.core.RunActive() {
		t.Fatal("a run is active")
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if _, err := alice.core.RefreshStatuses(ctx, "bob"); err != nil {
			return err
		}
		for _, id := range ids {
			if m, _ := alice.core.Message(ctx, id); m.Status != message.Delivered || m.DeliveredAt.IsZero() {
				return fmt.Errorf("%s: %s", id, m.Status)
			}
		}
		return nil
	})
	// A unique start of an id names the message.
	if m, err := alice.core.Message(ctx, ids[0][:8]); err != nil || m.ID != ids[0] {
		t.Fatalf("prefix %s: %v %v", ids[0][:8], m.ID, err)
	}
}

// The endpoint answers only for the caller's own messages, in the order
// asked, and refuses an empty, oversized or malformed list.
func TestBatchStatusEndpoint(t *testing.T) {
	srv := servertest.Start(t)
	srv.AddUser(t, "alice", "alice-password-long")
	srv.AddUser(t, "bob", "bob-password-long")
	aliceTok := srv.Token(t, "alice", "alice-password-long")
	bobTok := srv.Token(t, "bob", "bob-password-long")
	id := message.NewID()
	body, _ := json.Marshal(api.SubmitRequest{ID: id, To: "bob", Text: "hi"})
	if code, _ := call(t, srv, aliceTok, "POST", api.PathMessages, body, nil); code != 202 {
		t.Fatalf("submit: %d", code)
	}
	other := message.NewID()
	ask := func(tok string, ids ...string) (int, api.StatusResponse) {
		b, _ := json.Marshal(api.StatusRequest{IDs: ids})
		var res api.StatusResponse
		code, _ := call(t, srv, tok, "POST", api.PathMessageStatus, b, &res)
		return code, res
	}
	code, res := ask(aliceTok, strings.ToUpper(id), other)
	if code != 200 || len(res.Messages) != 1 || res.Messages[0].ID != id || res.Messages[0].Status != "enqueued" ||
		len(res.Unknown) != 1 || res.Unknown[0] != other {
		t.Fatalf("alice asks: %d %+v", code, res)
	}
	// bob is the recipient, not the sender: to him the id is unknown.
	if code, res := ask(bobTok, id); code != 200 || len(res.Messages) != 0 || len(res.Unknown) != 1 {
		t.Fatalf("bob asks for alice's message: %d %+v", code, res)
	}
	tooMany := make([]string, api.MaxStatusIDs+1)
	for i := range tooMany {
		tooMany[i] = message.NewID()
	}
	for name, ids := range map[string][]string{"empty": {}, "too many": tooMany, "not an id": {id, "5f0c"}} {
		if code, _ := ask(aliceTok, ids...); code != 400 {
			t.Errorf("%s: %d, want 400", name, code)
		}
	}
	if code, _ := ask("spt_wrong", id); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
}

func call(t *testing.T, srv *servertest.Server, tok, method, path string, body []byte, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.HTTPSURL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := srv.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(res.Body)
	if out != nil && res.StatusCode/100 == 2 {
		if err := json.Unmarshal(buf.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, buf.String())
		}
	}
	return res.StatusCode, buf.String()
}

// passwd changes the password on the server (the old one no longer logs
// in), keeps this device logged in with a new token, and revokes the
// other devices' tokens; logout revokes this device's token.
func TestPasswdAndLogout(t *testing.T) {
	srv := servertest.Start(t)
	alice := login(t, srv, "alice") // password "pw-alice-secret"
	srv.AddUser(t, "bob", "bob-password-long")
	otherDevice := srv.Token(t, "alice", "pw-alice-secret")
	alice.open(fastSettings(), nil)
	ctx := context.Background()
	if err := alice.core.ChangePassword(ctx, "wrong", "a-new-long-password"); err == nil || !strings.Contains(err.Error(), "current password") {
		t.Fatalf("wrong current password: %v", err)
	}
	if err := alice.core.ChangePassword(ctx, "pw-alice-secret", "a-new-long-password"); err != nil {
		t.Fatal(err)
	}
	if code, _ := call(t, srv, otherDevice, "GET", api.PathMessages+"/"+message.NewID(), nil, nil); code != 401 {
		t.Errorf("the other device's token after passwd: %d, want 401", code)
	}
	srv.Token(t, "alice", "a-new-long-password") // fails the test if refused
	// This device goes on: it sends, and it registers over SIP with the
	// new secrets.
	alice.run()
	online(t, alice)
	m, err := alice.core.Send(ctx, "bob", "after passwd")
	if err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if got, _ := alice.core.Message(ctx, m.ID); got.Status != message.Enqueued {
			return fmt.Errorf("status %s", got.Status)
		}
		return nil
	})
	alice.stop()
	if err := alice.core.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.core.Send(ctx, "bob", "after logout"); !errors.Is(err, client.ErrLoggedOut) {
		t.Fatalf("send after logout: %v", err)
	}
	if n := len(alice.history("bob")); n != 1 {
		t.Fatalf("history after logout: %d messages, want 1", n)
	}
}

// A revoked token makes a message Error at once; after logging in again,
// resend sends it as a new message. forget deletes a conversation.
func TestResendAndForget(t *testing.T) {
	srv := servertest.Start(t)
	alice := login(t, srv, "alice")
	srv.AddUser(t, "bob", "bob-password-long")
	alice.open(nil, nil)
	ctx := context.Background()
	if err := srv.Server.SetPassword(ctx, "alice", "pw-alice-secret"); err != nil { // revokes alice's token
		t.Fatal(err)
	}
	m, err := alice.core.Send(ctx, "bob", "will fail")
	if err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 15*time.Second, func() error {
		if err := alice.core.AttemptOnce(ctx); err != nil {
			return err
		}
		got, _ := alice.core.Message(ctx, m.ID)
		if got.Status != message.Error || got.Attempts != 1 || !strings.Contains(got.LastError, "run sealpost login") {
			return fmt.Errorf("status %s after %d attempt(s): %q", got.Status, got.Attempts, got.LastError)
		}
		return nil
	})
	alice.core.Close()
	if err := client.Login(ctx, client.LoginOptions{Home: alice.home, Server: srv.HTTPSURL, Account: "alice", Password: "pw-alice-secret",
		CAFile: srv.CAFile, SIPAddr: srv.SIPAddr, Domain: srv.Domain}); err != nil {
		t.Fatal(err)
	}
	alice.open(nil, nil)
	again, err := alice.core.Resend(ctx, m.ID[:8])
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == m.ID || again.Text != "will fail" {
		t.Fatalf("resent as %+v", again)
	}
	if err := alice.core.AttemptOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := alice.core.Message(ctx, again.ID); got.Status != message.Enqueued {
		t.Fatalf("resent message: %s (%s)", got.Status, got.LastError)
	}
	if _, err := alice.core.Resend(ctx, again.ID); err == nil {
		t.Fatal("resend of an Enqueued message accepted")
	}
	n, err := alice.core.Forget(ctx, "BOB")
	if err != nil || n != 2 || len(alice.history("bob")) != 0 {
		t.Fatalf("forget: %d, %v; history %d", n, err, len(alice.history("bob")))
	}
}
