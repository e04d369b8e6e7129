package interop

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// proc is one client process. Its standard input is a pipe the test keeps
// open for the life of the process: both clients read commands from it, and
// baresip prints incoming messages only while it is open.
type proc struct {
	name  string
	quit  string // the command that makes it quit
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu      sync.Mutex
	stopped bool // guarded by mu
	done    chan struct{}
	waitErr error // set before done is closed
}

// startProc starts name with args in dir, stdout and stderr going to
// outPath. The process is stopped when owner (the test that runs all the
// checks, which outlives each check) ends, if it still runs.
func startProc(t, owner *testing.T, name, dir string, env []string, outPath string, args ...string) *proc {
	t.Helper()
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatalf("creating %s output file: %v", name, err)
	}
	defer out.Close() // the child holds its own copy
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	dieWithTest(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("stdin pipe for %s: %v", name, err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, quit: "quit", cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	owner.Cleanup(func() { p.stop(owner, 5*time.Second) })
	return p
}

// send writes one command line to the process.
func (p *proc) send(line string) error {
	if p.exited() {
		return fmt.Errorf("%s has exited (%v); cannot send %q", p.name, p.waitErr, line)
	}
	_, err := io.WriteString(p.stdin, line+"\n")
	return err
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to quit, waits up to timeout for it to exit, then
// kills it (this one process, by its pid).
func (p *proc) stop(t *testing.T, timeout time.Duration) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	if !p.exited() {
		_ = p.send(p.quit)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Logf("%s (pid %d) did not exit within %v of %q; killing it", p.name, p.cmd.Process.Pid, timeout, p.quit)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	_ = p.stdin.Close()
}

// waitFor polls cond every 50 ms until it returns nil, and fails the test
// with what was waited for and cond's last error when timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(timeout, cond); err != nil {
		t.Fatalf("waiting (up to %v) for %s: %v", timeout, what, err)
	}
}

// final wraps an error after which waiting is pointless (the client gave
// up), so that waitFor fails at once.
type final struct{ error }

// poll is waitFor without the test: it returns cond's last error.
func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var f final
		if errors.As(err, &f) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readFile returns a log's text so far; a log not yet created is empty.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return ""
	}
	return string(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a loopback TCP port nobody listens on right now, for a
// client's control socket (baresip takes a fixed port in its config).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeSecretFile writes a file that holds a password, readable by its
// owner only.
func writeSecretFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
}
