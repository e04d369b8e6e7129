package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/server/servertest"
)

// TestUserDelDisconnectsTheRegisteredDevice: `sealpostd user del` runs in
// another process than the server; it deletes the account in the store
// and tells the running server through the data folder's control socket,
// which ends the device's registration (it is no longer counted), closes
// its connection and logs it. A message waiting for the account fails
// with a report to its sender. Asked before the deletion, the server
// refuses.
func TestUserDelDisconnectsTheRegisteredDevice(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "eve", "eve-password-12")
	s.AddUser(t, "bob", "bob-password-12")
	eve := s.NewDevice(t, "eve", "eve-password-12")
	mustRegister(t, eve, false)
	bob := s.NewDevice(t, "bob", "bob-password-12")
	mustRegister(t, bob, true) // with delivery reports
	if _, online := s.Registrar().Lookup("eve"); !online {
		t.Fatal("eve not online")
	}
	// A message waiting for eve: her device refuses it for now.
	eve.AnswerNext(500, 500, 500, 500, 500, 500, 500, 500)
	const waiting = "2c4f1e0a-7b3d-4e5f-8a9b-0c1d2e3f4a5b"
	if code, _, _ := submit(t, s, s.Token(t, "bob", "bob-password-12"), waiting, "eve", "for eve"); code != 202 {
		t.Fatalf("submit: %d", code)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if m, err := s.Store().Message(context.Background(), "bob", waiting); err != nil || m.Attempts == 0 {
			return fmt.Errorf("not attempted yet: %+v %v", m, err)
		}
		return nil
	})

	// What the user del command opens: the same data folder, not started.
	cli, err := server.New(server.Options{DataDir: s.DataDir, StoreURL: s.StoreURL})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	devices, _, err := cli.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(devices) != 2 || devices[1].Account != "eve" || !devices[1].Online || devices[1].LastRegistered.IsZero() {
		t.Fatalf("devices before: %+v", devices)
	}
	if _, err := cli.DisconnectDeleted(ctx, "eve", nil); err == nil || !strings.Contains(err.Error(), "still exists") {
		t.Fatalf("disconnecting an existing account: %v", err)
	}
	failed, err := cli.DeleteUser(ctx, "eve")
	if err != nil || len(failed) != 1 || failed[0].ID != waiting || failed[0].From != "bob" {
		t.Fatalf("DeleteUser: failed %v, %v", failed, err)
	}
	online, err := cli.DisconnectDeleted(ctx, "eve", failed)
	if err != nil || !online {
		t.Fatalf("disconnect: online %v, %v", online, err)
	}
	if _, still := s.Registrar().Lookup("eve"); still || s.Registrar().Len() != 1 {
		t.Fatalf("eve still registered (%d bindings)", s.Registrar().Len())
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		for _, l := range s.Logs() {
			if strings.Contains(l, "device offline") && strings.Contains(l, "account=eve") && strings.Contains(l, `reason="account deleted"`) {
				return nil
			}
		}
		return errors.New("no device offline line for eve")
	})
	// The device cannot come back: its connection is closed (an error) or,
	// on a new one, its account is gone (401/403).
	if code, _ := eve.Register(600, false); code >= 200 && code < 300 {
		t.Fatalf("eve registered again after user del: %d", code)
	}
	// Bob is untouched, and his device gets the failure report of the
	// message that waited for eve.
	if _, online := s.Registrar().Lookup("bob"); !online {
		t.Fatal("bob went offline")
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		for _, r := range bob.Reports() {
			if r.MessageID == waiting && r.Status == api.IMDNFailed {
				return nil
			}
		}
		return fmt.Errorf("bob's reports: %+v", bob.Reports())
	})
	devices, _, err = cli.Devices()
	if err != nil || len(devices) != 1 || devices[0].Account != "bob" {
		t.Fatalf("devices after: %+v %v", devices, err)
	}

	// With no server running, there is no one to tell.
	s.Stop(t)
	if _, err := cli.DisconnectDeleted(ctx, "bob", nil); !errors.Is(err, server.ErrNotRunning) {
		t.Fatalf("no server: %v", err)
	}
}

// TestLogLinesNameIdsNeverText: a message's life is in the log as
// structured info lines (accepted, delivered; device online and offline),
// by id and accounts, and its text is in no line.
func TestLogLinesNameIdsNeverText(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "alice-password")
	s.AddUser(t, "bob", "bob-password")
	bob := s.NewDevice(t, "bob", "bob-password")
	mustRegister(t, bob, false)
	token := s.Token(t, "alice", "alice-password")
	const id, text = "0b8e4f0e-8a57-4d0c-9a57-0c7f3b1e2d11", "a text that must never be logged"
	if code, _, _ := submit(t, s, token, id, "bob", text); code != 202 {
		t.Fatalf("submit: %d", code)
	}
	waitStatus(t, s, token, id, "delivered")
	if code, _ := bob.Register(0, false); code != 200 {
		t.Fatalf("unregister: %d", code)
	}
	want := []string{
		`msg="message accepted" part=queue id=` + id + ` from=alice to=bob`,
		`msg="message delivered" part=queue id=` + id + ` from=alice to=bob`,
		`msg="device registered" part=sip account=bob`,
		`msg="device offline" account=bob`,
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		logs := strings.Join(s.Logs(), "\n")
		for _, w := range want {
			if !strings.Contains(logs, w) {
				return errors.New("no line with " + w)
			}
		}
		return nil
	})
	for _, l := range s.Logs() {
		if strings.Contains(l, "never be logged") {
			t.Fatalf("the text reached the log: %s", l)
		}
	}
}

// TestBackupRestoreKeepsTheMessages: a backup taken while the server runs
// (as `sealpostd backup FILE` does, from another Server on the folder),
// restored into a new data folder with the master key and the domain
// record beside it, starts a server that delivers the waiting messages.
func TestBackupRestoreKeepsTheMessages(t *testing.T) {
	if servertest.OnPostgres() {
		t.Skip("backup copies the embedded SQLite store")
	}
	s := servertest.Start(t)
	s.AddUser(t, "alice", "alice-password")
	s.AddUser(t, "bob", "bob-password")
	token := s.Token(t, "alice", "alice-password")
	ids := []string{"1d9a7c52-0e4b-4bde-9a57-3c1f2e4d5a01", "1d9a7c52-0e4b-4bde-9a57-3c1f2e4d5a02"}
	for i, id := range ids {
		if code, _, _ := submit(t, s, token, id, "bob", fmt.Sprintf("kept %d", i)); code != 202 {
			t.Fatalf("submit: %d", code)
		}
	}
	cli, err := server.New(server.Options{DataDir: s.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "sealpost-backup.db")
	if err := cli.Backup(context.Background(), backup); err != nil {
		t.Fatal(err)
	}
	if err := cli.Backup(context.Background(), backup); err == nil {
		t.Fatal("an existing backup was overwritten")
	}
	cli.Close()
	if st, err := os.Stat(backup); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", st, err)
	}
	// A message after the backup is not in it.
	if code, _, _ := submit(t, s, token, "1d9a7c52-0e4b-4bde-9a57-3c1f2e4d5a03", "bob", "too late"); code != 202 {
		t.Fatalf("submit: %d", code)
	}
	s.Stop(t)

	// Restore, as README says: the backup as DATA/sealpost.db, the master
	// key and domain record from their own backup.
	restored := filepath.Join(t.TempDir(), "restored")
	if err := os.Mkdir(restored, 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, backup, filepath.Join(restored, "sealpost.db"))
	copyFile(t, filepath.Join(s.DataDir, "master.key"), filepath.Join(restored, "master.key"))
	copyFile(t, filepath.Join(s.DataDir, server.DomainFile), filepath.Join(restored, server.DomainFile))
	r := servertest.Start(t, servertest.WithOptions(func(o *server.Options) { o.DataDir = restored }))
	bob := r.NewDevice(t, "bob", "bob-password")
	mustRegister(t, bob, false)
	servertest.CheckFor(t, 20*time.Second, func() error {
		// In submission order, as the Sealpost client shows them: two
		// MESSAGEs read together may reach the device's handler in
		// either order.
		if got := strings.Join(inSubmissionOrder(t, bob), ","); got != "kept 0,kept 1" {
			return fmt.Errorf("bob got %q", got)
		}
		return nil
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
