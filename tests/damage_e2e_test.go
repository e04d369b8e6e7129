package tests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

// storeWithMessages makes a data folder whose real sealpostd accepted n
// messages for bob (offline) and was then stopped: by kill -9 (the WAL
// stays) or by SIGTERM (all of it in the database file).
func storeWithMessages(t *testing.T, bin string, n int, kill bool) (dir string) {
	t.Helper()
	dir = t.TempDir()
	for _, u := range []string{"alice", "bob"} {
		if out, err := runBinary(t, bin, u+"-password-1\n", "--data", dir, "user", "add", u, "--password-stdin"); err != nil {
			t.Fatalf("user add %s: %v\n%s", u, err, out)
		}
	}
	p := startBinary(t, bin, dir)
	tok := p.srv.Token(t, "alice", "alice-password-1")
	for i := range n {
		if code, _, e := submit(t, p.srv, tok, message.NewID(), "bob", fmt.Sprintf("message %d", i)); code != 202 {
			t.Fatalf("submit %d: %d %v", i, code, e)
		}
	}
	if kill {
		p.kill()
		if _, err := os.Stat(filepath.Join(dir, "sealpost.db-wal")); err != nil {
			t.Fatalf("kill -9 left no WAL: %v", err)
		}
	} else {
		p.stop(t)
	}
	return dir
}

// refusesToStart runs serve on dir and expects it to exit at once with a
// message that says what is wrong and what to do.
func refusesToStart(t *testing.T, bin, dir, what string) {
	t.Helper()
	cmd := exec.Command(bin, "--data", dir, "--https", "127.0.0.1:0", "--sip", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("sealpostd started on a damaged store:\n%s", out)
	}
	if err == nil {
		t.Fatalf("sealpostd exited 0 on a damaged store:\n%s", out)
	}
	for _, want := range []string{what, "store recover", "keep a copy"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	if out, err := runBinary(t, bin, "", "--data", dir, "store", "check"); err == nil || !strings.Contains(out, "is damaged") {
		t.Errorf("store check on a damaged store: %v\n%s", err, out)
	}
}

var salvaged = regexp.MustCompile(`salvaged (\d+) messages`)

// recoverAndServe runs store recover, puts the new store in place, starts
// the server and checks that bob receives every message salvaged.
func recoverAndServe(t *testing.T, bin, dir string, atLeast, atMost int) {
	t.Helper()
	out, err := runBinary(t, bin, "", "--data", dir, "store", "recover", filepath.Join(dir, "recovered.db"))
	if err != nil {
		t.Fatalf("store recover: %v\n%s", err, out)
	}
	t.Logf("store recover:\n%s", out)
	m := salvaged.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("store recover does not say how many messages it salvaged:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	if n < atLeast || n > atMost {
		t.Fatalf("salvaged %d messages; want %d..%d", n, atLeast, atMost)
	}
	aside := t.TempDir()
	for _, f := range []string{"sealpost.db", "sealpost.db-wal", "sealpost.db-shm"} {
		if err := os.Rename(filepath.Join(dir, f), filepath.Join(aside, f)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(dir, "recovered.db"), filepath.Join(dir, "sealpost.db")); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, bin, dir)
	waitReady(t, p.srv, 200)
	bob := p.srv.NewDevice(t, "bob", "bob-password-1")
	mustRegister(t, bob, false)
	servertest.CheckFor(t, 30*time.Second, func() error {
		if got := len(bob.Received()); got != n {
			return fmt.Errorf("bob has %d of the %d salvaged messages", got, n)
		}
		return nil
	})
	p.stop(t)
}

func waitReady(t *testing.T, s *servertest.Server, want int) {
	t.Helper()
	servertest.CheckFor(t, 30*time.Second, func() error {
		res, err := http.Get(s.AdminURL + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != want {
			return fmt.Errorf("/readyz %d, want %d", res.StatusCode, want)
		}
		return nil
	})
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// messageLeaf returns the offset of a table b-tree leaf page in the middle
// of those holding bob's messages.
func messageLeaf(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int64(binary.BigEndian.Uint16(b[16:]))
	var leaves []int64
	for off := pageSize; off+pageSize <= int64(len(b)); off += pageSize {
		page := b[off : off+pageSize]
		if page[0] == 0x0d && bytes.Contains(page, []byte("alice")) && bytes.Contains(page, []byte("bob")) {
			leaves = append(leaves, off)
		}
	}
	if len(leaves) < 3 {
		t.Fatalf("messages on %d leaf pages; the test needs several", len(leaves))
	}
	return leaves[len(leaves)/2]
}

func TestDamagedWALRefusedAndRecovered(t *testing.T) {
	embeddedStoreOnly(t)
	bin := sealpostdBinary(t)
	const n = 300
	dir := storeWithMessages(t, bin, n, true)
	wal := filepath.Join(dir, "sealpost.db-wal")
	b, err := os.ReadFile(wal)
	if err != nil {
		t.Fatal(err)
	}
	frameSize := int64(24 + binary.BigEndian.Uint32(b[8:]))
	frames := (int64(len(b)) - 32) / frameSize
	flip(t, wal, 32+(frames/2)*frameSize+24+100)
	refusesToStart(t, bin, dir, "write-ahead log")
	// Recover steps over the damaged frame and applies the later ones:
	// more than half of the messages come back (SQLite alone would keep
	// those before the damaged frame, about half).
	recoverAndServe(t, bin, dir, n/2+1, n)
}

func TestDamagedDatabaseRefusedAndRecovered(t *testing.T) {
	embeddedStoreOnly(t)
	bin := sealpostdBinary(t)
	const n = 400
	dir := storeWithMessages(t, bin, n, false)
	db := filepath.Join(dir, "sealpost.db")
	flip(t, db, messageLeaf(t, db))
	refusesToStart(t, bin, dir, "damaged")
	recoverAndServe(t, bin, dir, n/2, n-1)
}

// TestDamageWhileServingMakesUnready: a page that goes bad under a running
// server makes /readyz fail at the first read that meets it, logged once.
func TestDamageWhileServingMakesUnready(t *testing.T) {
	embeddedStoreOnly(t)
	bin := sealpostdBinary(t)
	const n = 400
	dir := storeWithMessages(t, bin, n, false)
	p := startBinary(t, bin, dir)
	waitReady(t, p.srv, 200)
	db := filepath.Join(dir, "sealpost.db")
	flip(t, db, messageLeaf(t, db))
	// bob's registration makes the server list his messages, through the
	// damaged page.
	mustRegister(t, p.srv.NewDevice(t, "bob", "bob-password-1"), false)
	waitReady(t, p.srv, 503)
	p.kill()
	log := p.stderr.String()
	if got := strings.Count(log, "store read failed"); got != 1 {
		t.Errorf("%d log lines say a store read failed; want 1:\n%s", got, log)
	}
	refusesToStart(t, bin, dir, "damaged")
}
