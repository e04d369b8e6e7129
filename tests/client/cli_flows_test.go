package client_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server/servertest"
)

var idPattern = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// The client as a person uses it without a run: names in any case, send
// returning once queued, status by the start of the printed id, history
// that asks the server where messages stand, one profile per account, and
// send with the server down returning at once.
func TestCommandLineWithoutRun(t *testing.T) {
	bin := sealpostBinary(t)
	srv := servertest.Start(t)
	srv.AddUser(t, "alice", "alice-password")
	srv.AddUser(t, "bob", "bob-password")
	srv.AddUser(t, "dave", "dave-password")
	alice := cli{t, bin, filepath.Join(t.TempDir(), "alice")}
	login := func(c cli, account, pw string, extra ...string) (string, string, int) {
		return c.sealpost(pw+"\n", append([]string{"login", "--server", srv.HTTPSURL, "--account", account,
			"--ca", srv.CAFile, "--sip", srv.SIPAddr, "--password-stdin"}, extra...)...)
	}
	out, errOut, code := login(alice, "ALICE", "alice-password")
	if code != 0 || !strings.Contains(out, "logged in as alice") {
		t.Fatalf("login ALICE: %d %s %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(alice.home, "settings.json")); err != nil {
		t.Fatalf("settings.json after login: %v", err)
	}

	// send without --wait and without a run: queued on the server, and
	// the id it prints (or its start) works with status.
	out, errOut, code = alice.sealpost("", "send", "BOB", "Hello Bob 👋")
	if code != 0 || !strings.Contains(out, "Enqueued") {
		t.Fatalf("send: %d\n%s\n%s", code, out, errOut)
	}
	id := idPattern.FindString(out)
	if id == "" {
		t.Fatalf("send printed no full id:\n%s", out)
	}
	out, errOut, code = alice.sealpost("", "status", id[:6])
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "to:         bob") {
		t.Fatalf("status %s: %d\n%s\n%s", id[:6], code, out, errOut)
	}

	// --wait's exit codes: 3 when neither Delivered nor Error by the
	// timeout (bob is offline: it stays queued), 1 for an Error.
	out, errOut, code = alice.sealpost("", "send", "bob", "waiting for bob", "--wait", "--timeout", "1s")
	if code != 3 || !strings.Contains(out, "Enqueued") || !strings.Contains(errOut, "stays queued") {
		t.Fatalf("send --wait to an offline recipient: exit %d\n%s\n%s", code, out, errOut)
	}
	_, errOut, code = alice.sealpost("", "send", "nobody", "hello?", "--wait")
	if code != 1 || !strings.Contains(errOut, "unknown_recipient") {
		t.Fatalf("send --wait to an unknown account: exit %d %q", code, errOut)
	}

	// bob's phone takes it; alice's history (no run) asks the server.
	bob := srv.NewDevice(t, "bob", "bob-password")
	if code, err := bob.Register(600, false); err != nil || code != 200 {
		t.Fatalf("bob registers: %d %v", code, err)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		out, errOut, code := alice.sealpost("", "history", "bob", "--width", "80")
		if code != 0 || !strings.Contains(out, "Delivered") {
			return fmt.Errorf("history: %d\n%s\n%s", code, out, errOut)
		}
		return nil
	})

	// One profile, one account.
	_, errOut, code = login(alice, "dave", "dave-password")
	if code != 1 || !strings.Contains(errOut, "belongs to another account (alice)") || !strings.Contains(errOut, "--force") {
		t.Fatalf("login as dave on alice's profile: %d %q", code, errOut)
	}
	if out, _, _ := alice.sealpost("", "contacts"); !strings.Contains(out, "bob ") {
		t.Fatalf("a refused login changed the profile: %s", out)
	}
	if out, errOut, code := login(alice, "dave", "dave-password", "--force"); code != 0 {
		t.Fatalf("login --force: %d %s %s", code, out, errOut)
	}
	if out, _, _ := alice.sealpost("", "contacts"); !strings.Contains(out, "no conversations") {
		t.Fatalf("dave sees alice's conversations:\n%s", out)
	}

	// passwd: the new password logs in, the old one no longer does.
	out, errOut, code = alice.sealpost("dave-password\nanother-dave-password\n", "passwd", "--password-stdin")
	if code != 0 || !strings.Contains(out, "password changed for dave") {
		t.Fatalf("passwd: %d\n%s\n%s", code, out, errOut)
	}
	srv.Token(t, "dave", "another-dave-password")
	out, errOut, code = alice.sealpost("", "send", "bob", "from dave")
	if code != 0 || !strings.Contains(out, "Enqueued") {
		t.Fatalf("send after passwd: %d\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code := alice.sealpost("", "forget", "Bob"); code != 0 || !strings.Contains(out, "1 message(s) deleted") {
		t.Fatalf("forget: %d\n%s\n%s", code, out, errOut)
	}
	// logout: the token is revoked, sending says to log in.
	if out, errOut, code := alice.sealpost("", "logout"); code != 0 || !strings.Contains(out, "logged out dave") {
		t.Fatalf("logout: %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code := alice.sealpost("", "send", "bob", "after logout"); code != 1 || !strings.Contains(errOut, "run sealpost login") {
		t.Fatalf("send after logout: %d %q", code, errOut)
	}
	if out, errOut, code := login(alice, "dave", "another-dave-password"); code != 0 {
		t.Fatalf("login after logout: %d %s %s", code, out, errOut)
	}

	// With the server down, send returns once the message is in the
	// outbox, after one attempt, not after a round.
	srv.Stop(t)
	out, errOut, code = alice.sealpost("", "send", "bob", "are you there?")
	if code != 0 || !strings.Contains(out, "Sending") || !strings.Contains(out, "queued in the outbox") {
		t.Fatalf("send with the server down: %d\n%s\n%s", code, out, errOut)
	}
	id = idPattern.FindString(out)
	out, _, _ = alice.sealpost("", "status", id)
	if !strings.Contains(out, "status:     Sending") || !strings.Contains(out, "attempts:   1\n") {
		t.Fatalf("after send with the server down:\n%s", out)
	}
}
