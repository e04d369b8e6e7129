package tests

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server/servertest"
)

// The tests in this file run the real sealpostd binary, built once per
// test binary.
var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

func sealpostdBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the sealpostd binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sealpostd-bin-*")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sealpostd")
		out, err := exec.Command("go", "build", "-o", builtBin, "../cmd/sealpostd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// proc is a running sealpostd.
type proc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	exited chan struct{}
	// srv points servertest's clients (devices, tokens, HTTPS) at it.
	srv *servertest.Server
}

var bannerAddr = regexp.MustCompile(`^\s+(HTTPS API|SIP over TLS|admin)\s+(?:https?://)?(\S+)`)

// startBinary runs sealpostd serve on dir with kernel-chosen loopback
// ports and waits for its banner.
func startBinary(t *testing.T, bin, dir string) *proc {
	t.Helper()
	cmd := exec.Command(bin, "--data", dir, "--https", "127.0.0.1:0", "--sip", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	cmd.Env = binaryEnv(t, dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = &lockedWriter{w: p.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.kill() })
	addrs := map[string]string{}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
	}()
	timeout := time.After(60 * time.Second)
	for len(addrs) < 3 {
		select {
		case line, ok := <-lines:
			if !ok {
				<-p.exited
				t.Fatalf("sealpostd exited before its banner: %v\n%s", cmd.ProcessState, p.stderr)
			}
			if m := bannerAddr.FindStringSubmatch(line); m != nil {
				addrs[m[1]] = m[2]
			}
		case <-timeout:
			t.Fatalf("no banner from sealpostd after 60 s:\n%s", p.stderr)
		}
	}
	go func() {
		for range lines {
		}
	}()
	if _, err := os.Stat(filepath.Join(dir, "sealpost.db")); servertest.OnPostgres() && err == nil {
		t.Fatalf("sealpostd on PostgreSQL made a SQLite store in its data folder")
	}
	pem, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	p.srv = &servertest.Server{
		HTTPSURL: "https://" + addrs["HTTPS API"], SIPAddr: addrs["SIP over TLS"], AdminURL: "http://" + addrs["admin"],
		Domain: "localhost", CAFile: filepath.Join(dir, "cert.pem"), CertPool: pool, DataDir: dir,
	}
	return p
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.exited
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("sealpostd did not stop within 60 s of SIGTERM")
	}
	if !p.cmd.ProcessState.Success() {
		t.Fatalf("sealpostd after SIGTERM: %v\n%s", p.cmd.ProcessState, p.stderr)
	}
}

// runBinary runs a sealpostd command to its end.
func runBinary(t *testing.T, bin, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = binaryEnv(t, dataDirArg(args))
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestOneServerPerDataFolder: a second sealpostd on the same data folder
// refuses to start and names the process that holds it, while the account
// commands keep working beside the running server.
func TestOneServerPerDataFolder(t *testing.T) {
	bin := sealpostdBinary(t)
	dir := t.TempDir()
	first := startBinary(t, bin, dir)

	second := exec.Command(bin, "--data", dir, "--https", "127.0.0.1:0", "--sip", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	out, err := second.CombinedOutput()
	if err == nil {
		t.Fatalf("a second sealpostd on the same data folder started:\n%s", out)
	}
	want := fmt.Sprintf("process %d", first.cmd.Process.Pid)
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "in use") {
		t.Errorf("the refusal does not say the folder is in use by %s:\n%s", want, out)
	}
	if out, err := runBinary(t, bin, "carol-password-1\n", "--data", dir, "user", "add", "carol", "--password-stdin"); err != nil {
		t.Fatalf("user add beside the running server: %v\n%s", err, out)
	}
	if tok := first.srv.Token(t, "carol", "carol-password-1"); tok == "" {
		t.Fatal("no token for the account added beside the server")
	}
	first.stop(t)
	// Once it has stopped the folder is free.
	again := startBinary(t, bin, dir)
	again.stop(t)
}

// TestMain removes the binary built for these tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}
