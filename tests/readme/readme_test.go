// Package readme runs the README's walk-through, so that it cannot rot:
// every shell block the line "<!-- readme-test -->" precedes runs, in file
// order, in one bash, in a copy of the repository, against the real
// binaries the walk-through itself builds. README.md ("The README test")
// documents the convention.
package readme

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	markRun        = "<!-- readme-test -->"
	markBackground = "<!-- readme-test: background -->"
)

// block is one marked shell block of the README.
type block struct {
	line       int // of the opening fence
	text       string
	background bool
}

// markedBlocks returns the README's marked blocks. A mark must be followed
// (after blank lines) by a ```sh block; anything else is an error, so a
// mark cannot silently stop working.
func markedBlocks(r io.Reader) ([]block, error) {
	sc := bufio.NewScanner(r)
	var (
		out     []block
		pending string // the mark waiting for its block
		cur     *block
		n       int
	)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur != nil && trimmed == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case trimmed == markRun || trimmed == markBackground:
			pending = trimmed
		case pending != "" && trimmed == "":
		case pending != "" && (trimmed == "```sh" || trimmed == "```bash"):
			cur = &block{line: n, background: pending == markBackground}
			pending = ""
		case pending != "":
			return nil, fmt.Errorf("README line %d: %s is followed by %q, not a ```sh block", n, pending, trimmed)
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("README line %d: the block never ends", cur.line)
	}
	return out, sc.Err()
}

func TestMarkedBlocks(t *testing.T) {
	in := "a\n" + markRun + "\n\n```sh\necho one\n```\n```sh\nnot marked\n```\n" + markBackground + "\n```sh\nrun\n```\n"
	got, err := markedBlocks(strings.NewReader(in))
	if err != nil || len(got) != 2 || got[0].text != "echo one\n" || got[0].background || !got[1].background || got[1].text != "run\n" {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := markedBlocks(strings.NewReader(markRun + "\ntext\n")); err == nil {
		t.Fatal("a mark before prose accepted")
	}
}

// TestREADMEWalkthrough runs the README's marked blocks as a user would,
// with free ports in place of 8443, 5061 and 9090 (set through the
// SEALPOST_* variables and written into the URLs, as the README says).
func TestREADMEWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	for _, tool := range []string{"bash", "curl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the walk-through needs %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.Open(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := markedBlocks(readme)
	readme.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The walk-through's landmarks: losing a mark by accident fails here.
	all := ""
	for _, b := range blocks {
		all += b.text
	}
	for _, want := range []string{"go build -o . ./cmd/sealpostd ./cmd/sealpost", "./sealpostd &", "user add alice", "/v1/messages", " login ", " run", "send bob", "history alice"} {
		if !strings.Contains(all, want) {
			t.Fatalf("no marked README block contains %q", want)
		}
	}

	work := t.TempDir()
	copyRepository(t, root, work)
	https, sip, admin := freePort(t), freePort(t), freePort(t)

	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, b := range blocks {
		text := strings.NewReplacer("localhost:8443", "localhost:"+https, "127.0.0.1:9090", "127.0.0.1:"+admin).Replace(b.text)
		fmt.Fprintf(&script, "echo \"### README line %d at $(date +%%T)\"\n", b.line)
		if b.background {
			fmt.Fprintf(&script, "( %s\n) > background-%d.log 2>&1 &\n", text, i)
		} else {
			script.WriteString(text)
		}
	}
	script.WriteString("echo '### walk-through done'\n")

	out, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = work
	// HOME is the walk-through's own; Go keeps using this machine's module
	// and build caches.
	goenv, err := exec.Command("go", "env", "GOMODCACHE", "GOCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	gov := strings.Split(strings.TrimSpace(string(goenv)), "\n")
	if len(gov) != 3 {
		t.Fatalf("go env: %q", goenv)
	}
	cmd.Env = append(os.Environ(), "GOMODCACHE="+gov[0], "GOCACHE="+gov[1], "GOPATH="+gov[2],
		"SEALPOST_HTTPS=:"+https, "SEALPOST_SIP=:"+sip, "SEALPOST_ADMIN=127.0.0.1:"+admin,
		"HOME="+filepath.Join(work, "home"), "SEALPOST_HOME=", "XDG_CONFIG_HOME=", "DISPLAY=", "DBUS_SESSION_BUS_ADDRESS=/dev/null")
	// A file, not a pipe: the server and bob's run keep their stdout open
	// after the script ends.
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that the background processes it starts
	// (the server, bob's run) are stopped with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
	runErr := cmd.Wait()
	// Stop what the walk-through left running: SIGTERM is what Ctrl-C in
	// their terminals would do.
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	stopped = true

	printed, _ := os.ReadFile(out.Name())
	logs := ""
	for i, b := range blocks {
		if b.background {
			l, _ := os.ReadFile(filepath.Join(work, "background-"+strconv.Itoa(i)+".log"))
			logs += fmt.Sprintf("\n--- background block of README line %d:\n%s", b.line, l)
		}
	}
	if runErr != nil || !strings.Contains(string(printed), "### walk-through done") {
		t.Fatalf("the README walk-through failed (%v); its output, the last README line shown is where:\n%s%s", runErr, printed, logs)
	}
	t.Logf("the walk-through's output:\n%s%s", printed, logs)
	for _, want := range []string{`"status":"enqueued"`, "created account alice (sip:alice@localhost)", "Delivered"} {
		if !strings.Contains(string(printed), want) {
			t.Errorf("the walk-through's output lacks %q:\n%s%s", want, printed, logs)
		}
	}
}

// copyRepository copies the files git knows (tracked, and new ones not
// ignored) from root to dst: a fresh clone, including uncommitted work.
func copyRepository(t *testing.T, root, dst string) {
	t.Helper()
	list, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		src := filepath.Join(root, name)
		st, err := os.Lstat(src)
		if err != nil || !st.Mode().IsRegular() {
			continue // deleted in the work tree, or not a plain file
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
