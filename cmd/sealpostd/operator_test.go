package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/internal/server/servertest"
)

// TestUserListAndDelBesideARunningServer: the commands run beside a
// server on the same data folder, as an operator runs them: user list
// shows who is online and since when; user del disconnects the device.
func TestUserListAndDelBesideARunningServer(t *testing.T) {
	if servertest.OnPostgres() {
		t.Skip("the commands here use the data folder's SQLite store")
	}
	s := servertest.Start(t)
	s.AddUser(t, "alice", "alice-password")
	s.AddUser(t, "bob", "bob-password")
	alice := s.NewDevice(t, "alice", "alice-password")
	if code, err := alice.Register(600, false); code != 200 {
		t.Fatalf("register: %d %v", code, err)
	}
	code, out, errs := runCmd(t, "", nil, "--data", s.DataDir, "user", "list")
	if code != 0 {
		t.Fatalf("user list: %d %q", code, errs)
	}
	if !regexp.MustCompile(`(?m)^alice\s+sip:alice@localhost\s+\S+\s+20\d\d-\S+Z\s+yes$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^bob\s+sip:bob@localhost\s+\S+\s+-\s+no$`).MatchString(out) ||
		!strings.Contains(out, "registrations since the server started") {
		t.Fatalf("user list:\n%s", out)
	}
	code, out, errs = runCmd(t, "", nil, "--data", s.DataDir, "user", "del", "alice")
	if code != 0 || !strings.Contains(out, "its registered device is disconnected") {
		t.Fatalf("user del: %d %q %q", code, out, errs)
	}
	if _, online := s.Registrar().Lookup("alice"); online {
		t.Fatal("alice still registered after user del")
	}
	s.Stop(t)
	code, out, _ = runCmd(t, "", nil, "--data", s.DataDir, "user", "list")
	if code != 0 || !strings.Contains(out, "no server is running") {
		t.Fatalf("user list without a server: %d %q", code, out)
	}
}
