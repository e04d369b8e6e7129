package client_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server/servertest"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// sealpostBinary builds cmd/sealpost once per test run.
func sealpostBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sealpost-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "sealpost")
		out, err := exec.Command("go", "build", "-o", binary, "github.com/sealpost/sealpost/cmd/sealpost").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary != "" {
		os.RemoveAll(filepath.Dir(binary))
	}
	os.Exit(code)
}

type cli struct {
	t    *testing.T
	bin  string
	home string
}

// sealpost runs one command with stdin and returns stdout, stderr and the
// exit code.
func (c cli) sealpost(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"--home", c.home}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS=", "DISPLAY=", "WAYLAND_DISPLAY=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("sealpost %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// start runs `sealpost run --json` in the background and returns its event
// lines as they come.
func (c cli) start(args ...string) *runner {
	c.t.Helper()
	cmd := exec.Command(c.bin, append([]string{"--home", c.home, "run", "--json"}, args...)...)
	cmd.Env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS=", "DISPLAY=", "WAYLAND_DISPLAY=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	r := &runner{cmd: cmd}
	cmd.Stderr = &r.stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e map[string]any
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				r.mu.Lock()
				r.bad = append(r.bad, sc.Text())
				r.mu.Unlock()
				continue
			}
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		}
	}()
	c.t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	return r
}

type runner struct {
	cmd    *exec.Cmd
	stderr syncBuffer
	mu     sync.Mutex
	events []map[string]any // guarded by mu
	bad    []string         // lines that were not JSON; guarded by mu
}

func (r *runner) has(kind, field, value string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e["event"] == kind && (field == "" || e[field] == value) {
			return true
		}
	}
	return false
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)

// TestCommandLine follows docs/client-readme-section.md: two accounts on
// one machine, each with its own --home.
func TestCommandLine(t *testing.T) {
	bin := sealpostBinary(t)
	srv := servertest.Start(t)
	srv.AddUser(t, "alice", "alice-password")
	srv.AddUser(t, "bob", "bob-password")
	dir := t.TempDir()
	alice := cli{t, bin, filepath.Join(dir, "alice")}
	bob := cli{t, bin, filepath.Join(dir, "bob")}

	for _, p := range []struct {
		c        cli
		name, pw string
	}{{alice, "alice", "alice-password"}, {bob, "bob", "bob-password"}} {
		out, errOut, code := p.c.sealpost(p.pw+"\n", "login", "--server", srv.HTTPSURL, "--account", p.name,
			"--ca", srv.CAFile, "--sip", srv.SIPAddr, "--password-stdin")
		if code != 0 {
			t.Fatalf("login %s: %d %s %s", p.name, code, out, errOut)
		}
		fi, err := os.Stat(filepath.Join(p.c.home, "profile.json"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("profile.json: %v %v", err, fi.Mode())
		}
		b, _ := os.ReadFile(filepath.Join(p.c.home, "profile.json"))
		if strings.Contains(string(b), p.pw) {
			t.Fatal("the profile holds the password")
		}
	}

	// A text over the limit is refused with the reason, before any network.
	_, errOut, code := alice.sealpost("", "send", "bob", strings.Repeat("x", 171))
	if code != 1 || !strings.Contains(errOut, "171 characters; the limit is 160") {
		t.Fatalf("171 characters: exit %d, %q", code, errOut)
	}

	// bob is online; alice sends without a run of her own and waits.
	bobRun := bob.start()
	servertest.CheckFor(t, 15*time.Second, func() error {
		if !bobRun.has("online", "", "") {
			return fmt.Errorf("bob's run is not online: %s", bobRun.stderr.String())
		}
		return nil
	})
	out, errOut, code := alice.sealpost("", "send", "bob", "Hello Bob 👋", "--wait", "--timeout", "30s")
	if code != 0 || !strings.Contains(out, "Sending") || !strings.Contains(out, "Enqueued") || !strings.Contains(out, "Delivered") {
		t.Fatalf("send --wait: exit %d\n%s\n%s", code, out, errOut)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if !bobRun.has("received", "peer", "alice") {
			return fmt.Errorf("bob's run printed no received event")
		}
		return nil
	})

	// Now alice runs too: her send is handed to her run.
	aliceRun := alice.start()
	servertest.CheckFor(t, 15*time.Second, func() error {
		if !aliceRun.has("online", "", "") {
			return fmt.Errorf("alice's run is not online")
		}
		return nil
	})
	out, errOut, code = alice.sealpost("", "send", "bob", "second, via run", "--wait", "--timeout", "30s")
	if code != 0 || !strings.Contains(out, "Delivered") {
		t.Fatalf("send via run: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = bob.sealpost("", "send", "alice", "Hi Alice")
	servertest.CheckFor(t, 10*time.Second, func() error {
		if !aliceRun.has("received", "peer", "bob") {
			return fmt.Errorf("alice's run printed no received event")
		}
		return nil
	})

	out, errOut, code = bob.sealpost("", "history", "alice", "--width", "60")
	if code != 0 {
		t.Fatalf("history: %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var left, right []string
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "  ") && strings.TrimSpace(l) != "" && !strings.HasPrefix(strings.TrimSpace(l), "20") {
			if strings.HasPrefix(l, "   ") {
				right = append(right, strings.TrimSpace(l))
			} else {
				left = append(left, strings.TrimSpace(l))
			}
		}
	}
	if fmt.Sprint(left) != fmt.Sprint([]string{"Hello Bob 👋", "second, via run"}) || len(right) == 0 || right[len(right)-1] != "Hi Alice" {
		t.Fatalf("history (left %q, right %q):\n%s", left, right, out)
	}
	if !strings.Contains(out, "Delivered") && !strings.Contains(out, "Enqueued") {
		t.Fatalf("history shows no status mark:\n%s", out)
	}

	out, _, code = bob.sealpost("", "contacts")
	if code != 0 || !strings.HasPrefix(out, "alice") {
		t.Fatalf("contacts: %s", out)
	}
	aliceRun.mu.Lock()
	bad := aliceRun.bad
	aliceRun.mu.Unlock()
	if len(bad) != 0 {
		t.Fatalf("run --json printed lines that are not JSON: %q", bad)
	}
	// A received event carries the text (the user's own stream); no
	// other event does.
	if !aliceRun.has("received", "text", "Hi Alice") {
		t.Fatal("alice's received event does not carry the text")
	}
	for _, r := range []*runner{aliceRun, bobRun} {
		r.mu.Lock()
		for _, e := range r.events {
			b, _ := json.Marshal(e)
			if e["event"] != "received" && (strings.Contains(string(b), "Hello Bob") || strings.Contains(string(b), "Hi Alice")) {
				t.Errorf("a %v event carries message text: %s", e["event"], b)
			}
		}
		r.mu.Unlock()
	}
}

func TestCommandLineWrongCA(t *testing.T) {
	bin := sealpostBinary(t)
	srv := servertest.Start(t)
	srv.AddUser(t, "alice", "alice-password")
	alice := cli{t, bin, filepath.Join(t.TempDir(), "alice")}
	_, errOut, code := alice.sealpost("alice-password\n", "login", "--server", srv.HTTPSURL, "--account", "alice",
		"--ca", writeOtherCA(t), "--sip", srv.SIPAddr, "--password-stdin")
	if code != 1 || !strings.Contains(errOut, "is not trusted") {
		t.Fatalf("wrong CA: exit %d, %q", code, errOut)
	}
}
