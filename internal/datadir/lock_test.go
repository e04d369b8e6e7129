package datadir

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestSecondLockIsRefusedWithThePid(t *testing.T) {
	dir := t.TempDir()
	l, err := TryLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description, so a second open in
	// this same process conflicts exactly as a second sealpostd would.
	_, err = TryLock(dir)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: got %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("the refusal does not name the holder's pid %d: %v", os.Getpid(), err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := TryLock(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Release()
}

// A lock held by a process that died (kill -9) is free again: the kernel
// drops a flock with its last descriptor, whatever the file still says.
func TestLockOfADeadProcessIsFree(t *testing.T) {
	if os.Getenv("DATADIR_HOLD") != "" {
		if _, err := TryLock(os.Getenv("DATADIR_HOLD")); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		select {} // held until killed
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockOfADeadProcessIsFree$")
	cmd.Env = append(os.Environ(), "DATADIR_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "locked\n" {
		cmd.Process.Kill()
		t.Fatalf("helper did not lock: %q %v", buf, err)
	}
	_, err = TryLock(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "process "+strconv.Itoa(cmd.Process.Pid)) {
		t.Errorf("while the helper holds it: got %v, want ErrLocked naming pid %d", err, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := TryLock(dir)
	if err != nil {
		t.Fatalf("after kill -9 of the holder: %v", err)
	}
	l.Release()
}
