package tests

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

// smallFS mounts a tmpfs of size bytes for the test and unmounts it at the
// end. It skips the test, saying why, where mounting is not allowed (not
// root, or in a container without CAP_SYS_ADMIN); CI runs as root.
func smallFS(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a small tmpfs for the full-disk test (needs root or CAP_SYS_ADMIN; CI runs as root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes path until the file system is full and returns how many
// bytes it took.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{1 << 20, 4096, 512} {
		buf := make([]byte, chunk)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("filling %s: %v", path, err)
			}
		}
	}
	return n
}

func adminGet(t *testing.T, s *servertest.Server, path string) (int, string) {
	t.Helper()
	res, err := http.Get(s.AdminURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func metric(t *testing.T, s *servertest.Server, name string) float64 {
	t.Helper()
	_, body := adminGet(t, s, "/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no metric %s", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func countLogs(s *servertest.Server, substr string) int {
	n := 0
	for _, l := range s.Logs() {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// TestFullDisk: on a full disk submissions get 503 (nothing accepted),
// /readyz is not ready, the log has one line when writes start failing; a
// token can still be had and a stored message is still delivered (the
// reserve's space); when space is freed the server recovers by itself,
// without a restart, and says so once.
func TestFullDisk(t *testing.T) {
	embeddedStoreOnly(t)
	mnt := smallFS(t, 48<<20)
	s, tok := newPair(t, hourlySweep, servertest.WithOptions(func(o *server.Options) {
		o.DataDir = filepath.Join(mnt, "data")
	}))
	before := message.NewID()
	if code, _, e := submit(t, s, tok, before, "bob", "stored before the disk filled"); code != 202 {
		t.Fatalf("submit before filling: %d %v", code, e)
	}

	filler := filepath.Join(mnt, "filler")
	t.Logf("filled the disk with %d bytes", fill(t, filler))

	// Submissions fail from the first write that meets the full disk on.
	var lost []string
	servertest.CheckFor(t, 20*time.Second, func() error {
		id := message.NewID()
		code, _, e := submit(t, s, tok, id, "bob", "on a full disk")
		switch code {
		case 503:
			if e.Code != "store_unavailable" {
				t.Fatalf("503 with code %q", e.Code)
			}
			lost = append(lost, id)
			return nil
		case 202:
			return fmt.Errorf("a submission was still accepted (the WAL had room)")
		}
		t.Fatalf("submission on a full disk: %d %v", code, e)
		return nil
	})
	for range 5 {
		id := message.NewID()
		if code, _, _ := submit(t, s, tok, id, "bob", "still full"); code != 503 {
			t.Fatalf("submission while writes fail: %d; want 503", code)
		}
		lost = append(lost, id)
	}
	if code, body := adminGet(t, s, "/readyz"); code != 503 {
		t.Fatalf("/readyz on a full disk: %d %s; want 503", code, body)
	}
	if n := metric(t, s, "sealpost_store_write_failures_total"); n < 6 {
		t.Errorf("sealpost_store_write_failures_total = %v; want every failed write counted (at least 6)", n)
	}
	// Reads and what the reserve is kept for still work.
	if code, st := status(t, s, tok, before); code != 200 || st.Status != "enqueued" {
		t.Fatalf("status of a stored message on a full disk: %d %q", code, st.Status)
	}
	tok2 := s.Token(t, "alice", "alice-pw")
	if tok2 == "" {
		t.Fatal("no token on a full disk")
	}
	bob := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, bob, false)
	waitStatus(t, s, tok, before, "delivered")
	if code, _ := adminGet(t, s, "/readyz"); code != 503 {
		t.Fatalf("/readyz %d while the disk is still full (the reserve's space is not room)", code)
	}

	// A restart on the full disk serves what it can: not ready, no
	// submission, but tokens and status queries.
	s.Restart(t)
	if code, body := adminGet(t, s, "/readyz"); code != 503 {
		t.Fatalf("/readyz after a restart on a full disk: %d %s; want 503", code, body)
	}
	tok2 = s.Token(t, "alice", "alice-pw")
	if code, st := status(t, s, tok2, before); code != 200 || st.Status != "delivered" {
		t.Fatalf("status after a restart on a full disk: %d %q", code, st.Status)
	}
	id := message.NewID()
	if code, _, _ := submit(t, s, tok2, id, "bob", "after a restart, still full"); code != 503 {
		t.Fatalf("submission after a restart on a full disk: %d; want 503", code)
	}
	lost = append(lost, id)
	mustRegister(t, s.NewDevice(t, "bob", "bob-pw"), false)

	// Space returns: the server notices by itself (its write probe).
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 30*time.Second, func() error {
		if code, body := adminGet(t, s, "/readyz"); code != 200 {
			return fmt.Errorf("/readyz %d %s", code, strings.TrimSpace(body))
		}
		return nil
	})
	after := message.NewID()
	if code, _, e := submit(t, s, tok2, after, "bob", "after the disk was freed"); code != 202 {
		t.Fatalf("submit after space returned: %d %v", code, e)
	}
	waitStatus(t, s, tok, after, "delivered")
	for _, id := range lost {
		if code, _ := status(t, s, tok, id); code != 404 {
			t.Errorf("message %s answered 503 exists (%d): something refused was stored", id, code)
		}
	}
	// One line when writes start failing in each life (two lives), and
	// one when they work again.
	if n := countLogs(s, "store writes are failing"); n != 2 {
		t.Errorf("%d log lines say writes are failing; want 2 (once per life)", n)
	}
	if n := countLogs(s, "store writes work again"); n != 1 {
		t.Errorf("%d log lines say writes work again; want 1", n)
	}
	if n := countLogs(s, "level=ERROR"); n != 2 {
		t.Errorf("%d ERROR lines; want only the store's two:\n%s", n, strings.Join(s.Logs(), "\n"))
	}
	if _, err := os.Stat(filepath.Join(mnt, "data", "sealpost.db-reserve")); err != nil {
		t.Errorf("the disk reserve was not made again: %v", err)
	}
}
