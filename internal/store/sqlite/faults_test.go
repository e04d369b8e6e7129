package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/store"
)

// quiet keeps the checkpointer's time and idle checkpoints out of a test
// that copies the files of an open store, so that the copy is what a kill
// -9 at that moment would leave: every acknowledged write in the WAL.
var quiet = Options{CheckpointTick: time.Hour, ReserveBytes: -1}

// crashedCopy submits n messages to a fresh store and returns the path of a
// copy of its database and WAL taken while it is open, as a kill -9 would
// leave them.
func crashedCopy(t *testing.T, n int) string {
	t.Helper()
	s, path := openTemp(t, quiet)
	submitN(t, s, 0, n)
	dir := t.TempDir()
	dst := filepath.Join(dir, "sealpost.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		copyFile(t, path+suffix, dst+suffix)
	}
	return dst
}

func submitN(t *testing.T, s *Store, from, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := from; i < from+n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.Submit(context.Background(), testMsg("alice", "bob", i, bytes.Repeat([]byte{byte(i)}, 100)), 0); err != nil {
				t.Error(err)
			}
		}()
		if i%32 == 31 {
			wg.Wait() // batches of several, as under load
		}
	}
	wg.Wait()
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

// readableMessages opens path without the start check, as a server before
// this check would have, and counts the messages a status query finds.
func readableMessages(t *testing.T, path string, n int) int {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "probe.db")
	copyFile(t, path, p)
	if _, err := os.Stat(path + "-wal"); err == nil {
		copyFile(t, path+"-wal", p+"-wal")
	}
	s := openAt(t, p, quiet)
	found := 0
	for i := range n {
		if _, err := s.Message(context.Background(), "alice", testMsg("alice", "bob", i, nil).ID); err == nil {
			found++
		}
	}
	return found
}

func walFrames(t *testing.T, walPath string) (frameSize, n int64) {
	t.Helper()
	b, err := os.ReadFile(walPath)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int64(binary.BigEndian.Uint32(b[8:]))
	frameSize = walFrameHeaderSize + pageSize
	return frameSize, (int64(len(b)) - walHeaderSize) / frameSize
}

func flipByte(t *testing.T, path string, off int64) {
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

// refusedAndRecovered checks that path is refused at start with a message
// saying what is wrong and what to do, and that Recover salvages at least
// want messages (and no more than n) into a store that opens and reads.
func refusedAndRecovered(t *testing.T, path string, n int, problem string, want int) {
	t.Helper()
	_, err := Open(path, Options{StartCheck: true, ReserveBytes: -1})
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open with the start check = %v; want ErrDamaged", err)
	}
	for _, s := range []string{problem, "store recover", "keep a copy"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the refusal does not say %q:\n%v", s, err)
		}
	}
	out := filepath.Join(t.TempDir(), "recovered.db")
	res, err := Recover(path, out)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	t.Logf("recover:\n%s", res)
	if res.Messages < want || res.Messages > n || res.Enqueued != res.Messages {
		t.Errorf("Recover salvaged %d messages (%d enqueued); want %d..%d, all enqueued", res.Messages, res.Enqueued, want, n)
	}
	s := openAt(t, out, Options{StartCheck: true, ReserveBytes: -1})
	ctx := context.Background()
	pending, err := s.Pending(ctx, "bob", 0, t0.Add(time.Hour), 0)
	if err != nil || len(pending) != res.Messages {
		t.Errorf("the recovered store lists %d pending (%v); want %d", len(pending), err, res.Messages)
	}
	if c, err := s.CountPending(ctx); err != nil || c != res.Messages {
		t.Errorf("the recovered store counts %d pending (%v); want %d (mailbox counts rebuilt)", c, err, res.Messages)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("the recovered store is not ready: %v", err)
	}
}

func TestWALByteFlippedMidWay(t *testing.T) {
	const n = 300
	path := crashedCopy(t, n)
	frameSize, frames := walFrames(t, path+"-wal")
	if frames < 10 {
		t.Fatalf("only %d WAL frames; the test needs more", frames)
	}
	// A byte in the page of a frame in the middle.
	flipByte(t, path+"-wal", walHeaderSize+(frames/2)*frameSize+walFrameHeaderSize+100)
	got := readableMessages(t, path, n)
	if got == n {
		t.Fatalf("SQLite still reads all %d messages: the damage did not touch them and the test shows nothing", n)
	}
	t.Logf("opened without the check, %d of %d messages would be readable", got, n)
	// Recover applies the frames after the damaged one too: it salvages
	// more than SQLite's own reading of the WAL would have kept.
	refusedAndRecovered(t, path, n, "damaged at frame", got+1)
}

func TestWALTailCut(t *testing.T) {
	const n = 300
	path := crashedCopy(t, n)
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path+"-wal", fi.Size()-4096); err != nil {
		t.Fatal(err)
	}
	if got := readableMessages(t, path, n); got == n {
		t.Fatalf("SQLite still reads all %d messages after the cut; the test shows nothing", n)
	}
	refusedAndRecovered(t, path, n, "cut short", n-32)

	// Without its index the same WAL is taken as torn by a stop: the start
	// goes on with what is intact.
	os.Remove(path + "-shm")
	if r, err := Check(path); err != nil || len(r.Problems) != 0 {
		t.Errorf("Check of a short WAL without its index = %v, %v; want it taken as torn", r.Problems, err)
	}
}

// A commit frame torn at the end of the WAL, as a kill -9 between the two
// writes of a frame leaves it, is not damage: that transaction was never
// acknowledged (its fsync had not run), its index (-shm) says so, and the
// start goes on with everything before it.
func TestWALTornCommitFrameIsNotDamage(t *testing.T) {
	const n = 100
	path := crashedCopy(t, n)
	wal, err := os.ReadFile(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	frameSize, frames := walFrames(t, path+"-wal")
	// The header of a further commit frame of this generation (salts
	// copied from the last frame), then half its page.
	last := wal[walHeaderSize+(frames-1)*frameSize:]
	torn := make([]byte, walFrameHeaderSize+frameSize/2)
	binary.BigEndian.PutUint32(torn[0:], 2) // page 2
	binary.BigEndian.PutUint32(torn[4:], 9) // a commit frame: the database's size in pages
	copy(torn[8:16], last[8:16])
	f, err := os.OpenFile(path+"-wal", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(torn)
	f.Close()
	if r, err := Check(path); err != nil || len(r.Problems) != 0 {
		t.Fatalf("Check of a WAL torn mid-transaction = %v, %v; want no damage", r.Problems, err)
	}
	s := openAt(t, path, Options{StartCheck: true, ReserveBytes: -1})
	if c, err := s.CountPending(context.Background()); err != nil || c != n {
		t.Fatalf("after the torn tail: %d pending (%v); want %d", c, err, n)
	}
}

// damagedDatabase makes a store of n messages, closes it (so that all of it
// is in the database file), and returns its path and the page size.
func closedStore(t *testing.T, n int) (string, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sealpost.db")
	s, err := Open(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	submitN(t, s, 0, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var pageSize int64
	if err := db.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	return path, pageSize
}

// tableLeaves returns the page numbers (from 1) of the table b-tree leaf
// pages holding message rows: leaf pages (type 0x0D) whose cells carry the
// sender "alice".
func tableLeaves(t *testing.T, path string, pageSize int64) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for p := int64(1); p*pageSize <= int64(len(b)); p++ {
		page := b[(p-1)*pageSize : p*pageSize]
		hdr := page
		if p == 1 {
			hdr = page[100:]
		}
		if hdr[0] == 0x0d && bytes.Contains(page, []byte("alice")) && bytes.Contains(page, []byte("bob")) {
			out = append(out, p)
		}
	}
	return out
}

func TestDatabasePageHeaderFlipped(t *testing.T) {
	const n = 400
	path, pageSize := closedStore(t, n)
	leaves := tableLeaves(t, path, pageSize)
	if len(leaves) < 3 {
		t.Fatalf("messages on %d leaf pages; the test needs several", len(leaves))
	}
	victim := leaves[len(leaves)/2]
	flipByte(t, path, (victim-1)*pageSize) // the page type byte
	refusedAndRecovered(t, path, n, "", n/len(leaves))
}

func TestDatabaseRowByteFlipped(t *testing.T) {
	const n = 400
	path, pageSize := closedStore(t, n)
	leaves := tableLeaves(t, path, pageSize)
	victim := leaves[len(leaves)/2]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := b[(victim-1)*pageSize : victim*pageSize]
	// The first cell: its payload size and rowid varints, then the record
	// header: its size, the serial type of seq (the rowid alias, stored
	// as NULL), then that of from_acct (a text). Make from_acct NULL, as
	// a bit gone bad in the row would: the row no longer reads as written.
	cell := int64(binary.BigEndian.Uint16(page[8:]))
	off := cell
	for range 2 { // skip the two varints
		for page[off]&0x80 != 0 {
			off++
		}
		off++
	}
	off += 2 // the record header size and seq's serial type
	b[(victim-1)*pageSize+off] = 0
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	refusedAndRecovered(t, path, n, "", n-n/len(leaves)-1)
}

// TestReadErrorMakesUnready: a store opened on damage it was not checked
// for (as when a page goes bad while serving) reports the first read that
// meets it once in the log, counts every one, and is not ready from then on.
func TestReadErrorMakesUnready(t *testing.T) {
	const n = 400
	path, pageSize := closedStore(t, n)
	leaves := tableLeaves(t, path, pageSize)
	flipByte(t, path, (leaves[len(leaves)/2]-1)*pageSize)
	var logs syncBuffer
	var failures int
	var mu sync.Mutex
	s := openAt(t, path, Options{ReserveBytes: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		OnReadFailure: func() { mu.Lock(); failures++; mu.Unlock() }})
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ready before any read met the damage: %v", err)
	}
	for range 3 {
		if _, err := s.Pending(ctx, "bob", 0, t0.Add(time.Hour), 0); err == nil {
			t.Fatal("listing every pending message read through a damaged page without an error")
		}
	}
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("Ping after a read met damage = %v; want not ready", err)
	}
	if got := strings.Count(logs.String(), "store read failed"); got != 1 {
		t.Errorf("%d log lines about the read failure; want 1:\n%s", got, logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if failures < 3 {
		t.Errorf("%d read failures counted; want at least 3", failures)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)
var _ = store.ErrNotFound

// TestWALBoundedAcrossShortLives: processes that each make a few hundred
// writes and end without closing the store (as kill -9 does) leave a WAL no
// longer than one life's writes, because Open checkpoints and truncates it.
func TestWALBoundedAcrossShortLives(t *testing.T) {
	if dir := os.Getenv("SEALPOST_SHORT_LIFE"); dir != "" {
		s, err := Open(filepath.Join(dir, "sealpost.db"), Options{StartCheck: true, CheckpointTick: time.Hour, ReserveBytes: -1})
		if err != nil {
			t.Fatal(err)
		}
		var from int
		fmt.Sscan(os.Getenv("SEALPOST_SHORT_LIFE_FROM"), &from)
		submitN(t, s, from, 300)
		os.Exit(0) // no Close: the WAL stays as a crash leaves it
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "sealpost.db")
	var sizes []int64
	const lives = 8
	for life := range lives {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWALBoundedAcrossShortLives$")
		cmd.Env = append(os.Environ(), "SEALPOST_SHORT_LIFE="+dir, fmt.Sprintf("SEALPOST_SHORT_LIFE_FROM=%d", life*300))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("life %d: %v\n%s", life, err, out)
		}
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatalf("life %d left no WAL (the test needs lives that end without closing): %v", life, err)
		}
		sizes = append(sizes, fi.Size())
	}
	t.Logf("WAL size after each life: %v", sizes)
	for i, sz := range sizes {
		if sz > 2*sizes[0] {
			t.Errorf("after life %d the WAL is %d bytes, more than twice the first life's %d: it grows across lives", i+1, sz, sizes[0])
		}
	}
	s := openAt(t, path, Options{StartCheck: true, ReserveBytes: -1})
	if c, err := s.CountPending(context.Background()); err != nil || c != lives*300 {
		t.Fatalf("%d messages pending after %d lives (%v); want %d", c, lives, err, lives*300)
	}
}

// TestWALTruncatedWhenIdle: once the writer has been idle for a tick, the
// checkpointer copies the WAL into the database file and truncates it, with
// no write count reached.
func TestWALTruncatedWhenIdle(t *testing.T) {
	s, path := openTemp(t, Options{CheckpointTick: 20 * time.Millisecond, ReserveBytes: -1})
	submitN(t, s, 0, 50)
	checkFor(t, "the WAL to be truncated after the writes stop", func() bool {
		fi, err := os.Stat(path + "-wal")
		return err == nil && fi.Size() == 0
	})
	if c, err := s.CountPending(context.Background()); err != nil || c != 50 {
		t.Fatalf("%d pending after the idle checkpoint (%v); want 50", c, err)
	}
}
