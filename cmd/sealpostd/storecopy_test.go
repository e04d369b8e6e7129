package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/internal/store/postgres/pgtest"
	"github.com/sealpost/sealpost/message"
)

// TestStoreCopyToPostgres moves a SQLite deployment with messages waiting
// for an offline recipient onto PostgreSQL with store copy; the server
// started on the copy delivers every one of them when the recipient
// registers, the sender's old token still works, and the sender sees them
// delivered.
func TestStoreCopyToPostgres(t *testing.T) {
	onSQLite := servertest.WithOptions(func(o *server.Options) { o.StoreURL = "" })
	s := servertest.Start(t, onSQLite)
	s.AddUser(t, "alice", "alice-pw")
	s.AddUser(t, "bob", "bob-pw")
	tok := s.Token(t, "alice", "alice-pw")
	post := func(srv *servertest.Server, id, text string) int {
		body, _ := json.Marshal(api.SubmitRequest{ID: id, To: "bob", Text: text})
		req, _ := http.NewRequest("POST", srv.HTTPSURL+"/v1/messages", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.HTTPClient().Do(req)
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var ids, texts []string
	for i := range 5 {
		id, text := message.NewID(), fmt.Sprintf("waiting through the move %d", i)
		if code := post(s, id, text); code != http.StatusAccepted {
			t.Fatalf("submit %d: status %d", i, code)
		}
		ids, texts = append(ids, id), append(texts, text)
	}
	s.Stop(t)

	url := pgtest.NewDatabase(t)
	code, out, errs := runCmd(t, "", nil, "--data", s.DataDir, "store", "copy", "--to", url)
	if code != 0 || !strings.Contains(out, "copied 2 accounts, 1 tokens, 5 messages (5 waiting for delivery)") {
		t.Fatalf("store copy: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
	// A second copy into the same database is refused: it is not empty.
	if code, _, errs := runCmd(t, "", nil, "--data", s.DataDir, "store", "copy", "--to", url); code != 1 || !strings.Contains(errs, "already holds") {
		t.Fatalf("second store copy: exit %d, stderr %q; want exit 1 and a refusal", code, errs)
	}

	// The operator's listing reads the copy.
	code, out, errs = runCmd(t, "", nil, "--data", s.DataDir, "--store", url, "messages", "list", "--status", "enqueued")
	if code != 0 || strings.Count(out, " alice ") != 5 || !strings.Contains(out, ids[4]) {
		t.Fatalf("messages list on the copy: exit %d\n%s%s", code, out, errs)
	}

	pg := servertest.Start(t, servertest.WithOptions(func(o *server.Options) {
		o.DataDir = s.DataDir
		o.StoreURL = url
	}))
	// The old token works on the copy: a retry of a copied message is
	// answered with it, not stored again.
	if code := post(pg, ids[0], texts[0]); code != http.StatusOK {
		t.Fatalf("retry of a copied message: status %d, want 200", code)
	}
	bob := pg.NewDevice(t, "bob", "bob-pw")
	if code, err := bob.Register(600, false); err != nil || code != 200 {
		t.Fatalf("bob registers: %d %v", code, err)
	}
	servertest.CheckFor(t, 30*time.Second, func() error {
		got := bob.Texts()
		slices.Sort(got)
		want := slices.Clone(texts)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("bob has %q, want %q", got, want)
		}
		return nil
	})
	servertest.CheckFor(t, 30*time.Second, func() error {
		n, err := pg.Store().CountPending(t.Context())
		if err != nil || n != 0 {
			return fmt.Errorf("pending %d, %v", n, err)
		}
		return nil
	})
}

// TestUserCommandsOnPostgres runs the account commands on a PostgreSQL
// store (--store), as on SQLite.
func TestUserCommandsOnPostgres(t *testing.T) {
	data := t.TempDir() + "/d"
	url := pgtest.NewDatabase(t)
	env := map[string]string{"SEALPOST_STORE": url}
	if code, out, errs := runCmd(t, "alice-s3cret-pw\n", env, "--data", data, "user", "add", "alice", "--password-stdin"); code != 0 || !strings.Contains(out, "created account alice") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	if code, out, _ := runCmd(t, "", nil, "--data", data, "--store", url, "user", "list"); code != 0 || !strings.Contains(out, "alice  sip:alice@localhost") {
		t.Fatalf("list: %d %q", code, out)
	}
	// The account is in PostgreSQL, not in a SQLite file of the data folder.
	if code, out, _ := runCmd(t, "", nil, "--data", data, "user", "list"); code != 0 || strings.Contains(out, "alice") {
		t.Fatalf("list on the data folder's own store: %d %q; want no alice", code, out)
	}
	if code, out, _ := runCmd(t, "", env, "--data", data, "messages", "list"); code != 0 || !strings.HasPrefix(out, "RECEIVED") {
		t.Fatalf("messages list: %d %q", code, out)
	}
	if code, _, _ := runCmd(t, "", env, "--data", data, "user", "del", "alice"); code != 0 {
		t.Fatalf("del: %d", code)
	}
	if code, _, errs := runCmd(t, "", env, "--data", data, "user", "del", "alice"); code != 1 || !strings.Contains(errs, "no such account") {
		t.Fatalf("del twice: %d %q", code, errs)
	}
}
