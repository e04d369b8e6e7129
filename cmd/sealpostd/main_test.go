package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRunsFromNothing builds the real binary, starts it in an empty folder,
// checks what it created and printed, and stops it with SIGTERM.
func TestRunsFromNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sealpostd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	// start starts the binary and reads its banner up to the line that
	// starts with last; first is the banner's first line.
	var httpsAddr string
	start := func(first, last string) (*exec.Cmd, string, *syncBuffer) {
		cmd := exec.Command(bin, "--https", "127.0.0.1:0", "--sip", "127.0.0.1:0")
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "SEALPOST_ADMIN=127.0.0.1:0")
		stdout, _ := cmd.StdoutPipe()
		stderr := &syncBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		sc := bufio.NewScanner(stdout)
		var admin string
		var printed []string
		for sc.Scan() {
			line := sc.Text()
			printed = append(printed, line)
			if m := regexp.MustCompile(`admin\s+http://(\S+)`).FindStringSubmatch(line); m != nil {
				admin = m[1]
			}
			if m := regexp.MustCompile(`HTTPS API\s+https://(\S+)`).FindStringSubmatch(line); m != nil {
				httpsAddr = m[1]
			}
			if strings.HasPrefix(line, last) {
				break
			}
		}
		if len(printed) == 0 || !strings.HasPrefix(printed[0], first) {
			t.Fatalf("banner does not start with %q:\n%s", first, strings.Join(printed, "\n"))
		}
		if admin == "" {
			t.Fatalf("no admin address printed:\n%s\nstderr: %s", strings.Join(printed, "\n"), stderr.String())
		}
		go io.Copy(io.Discard, stdout)
		return cmd, admin, stderr
	}
	cmd, admin, stderr := start("sealpostd started for the first time", "  curl")
	res, err := http.Get("http://" + admin + "/readyz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", res, err)
	}
	res.Body.Close()

	data := filepath.Join(work, "sealpost-data")
	modes := map[string]os.FileMode{"master.key": 0o600, "key.pem": 0o600, "sealpost.db": 0o600, "cert.pem": 0o644}
	for name, want := range modes {
		st, err := os.Stat(filepath.Join(data, name))
		if err != nil {
			t.Fatalf("%s not created: %v", name, err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	if st, _ := os.Stat(data); st.Mode().Perm() != 0o700 {
		t.Errorf("data folder: mode %v, want 0700", st.Mode().Perm())
	}
	key1, _ := os.ReadFile(filepath.Join(data, "master.key"))
	cert1, _ := os.ReadFile(filepath.Join(data, "cert.pem"))

	stop := func(cmd *exec.Cmd, stderr *syncBuffer) {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no exit 30 s after SIGTERM")
		}
	}
	// SIGHUP: the server stays up and serves the certificate now in the
	// files to new connections.
	os.Remove(filepath.Join(data, "cert.pem"))
	writeSelfSigned(t, filepath.Join(data, "cert.pem"), filepath.Join(data, "key.pem"))
	renewed, _ := os.ReadFile(filepath.Join(data, "cert.pem"))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(renewed)
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := tls.Dial("tcp", httpsAddr, &tls.Config{InsecureSkipVerify: true}) // comparing bytes, not trusting
		if err != nil {
			t.Fatalf("after SIGHUP: %v\n%s", err, stderr)
		}
		served := c.ConnectionState().PeerCertificates[0].Raw
		c.Close()
		if bytes.Equal(served, block.Bytes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after SIGHUP the old certificate is still served\n%s", stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "reloaded TLS certificate"); {
		if time.Now().After(deadline) {
			t.Fatalf("the reload was not logged:\n%s", stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cert1 = renewed
	stop(cmd, stderr)

	// A restart reuses the key and certificate, and its banner counts the
	// accounts instead of showing how to make the first.
	if code, out, errs := runCmd(t, "a-long-enough-password\n", nil, "--data", data, "user", "add", "alice", "--password-stdin"); code != 0 {
		t.Fatalf("user add: %d %q %q", code, out, errs)
	}
	cmd, _, stderr = start("sealpostd restarted", "  accounts      1 ")
	stop(cmd, stderr)
	key2, _ := os.ReadFile(filepath.Join(data, "master.key"))
	cert2, _ := os.ReadFile(filepath.Join(data, "cert.pem"))
	if !bytes.Equal(key1, key2) || !bytes.Equal(cert1, cert2) {
		t.Fatal("restart replaced the master key or certificate")
	}
}

func runCmd(t *testing.T, stdin string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestUserCommands(t *testing.T) {
	data := t.TempDir() + "/d"
	code, out, errs := runCmd(t, "alice-s3cret-pw\n", nil, "user", "add", "alice", "--data", data, "--password-stdin")
	if code != 0 || !strings.Contains(out, "created account alice (sip:alice@localhost)") || strings.Contains(out, "s3cret") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	code, out, _ = runCmd(t, "", nil, "--data", data, "user", "add", "bob")
	if code != 0 || !regexp.MustCompile(`password: [A-Za-z0-9]{20}\n`).MatchString(out) {
		t.Fatalf("add with generated password: %d %q", code, out)
	}
	if code, _, errs = runCmd(t, "another-password\n", nil, "--data", data, "user", "add", "alice", "--password-stdin"); code != 1 || !strings.Contains(errs, `account "alice" already exists`) {
		t.Fatalf("duplicate: %d %q", code, errs)
	}
	if code, _, errs = runCmd(t, "another-password\n", nil, "--data", data, "user", "add", "Bad Name", "--password-stdin"); code != 1 || !strings.Contains(errs, "invalid account name") {
		t.Fatalf("bad name: %d %q", code, errs)
	}
	if code, _, errs = runCmd(t, "", nil, "--data", data, "user", "add", "carol", "--password-stdin"); code != 1 || !strings.Contains(errs, "no password") {
		t.Fatalf("empty stdin: %d %q", code, errs)
	}
	code, out, _ = runCmd(t, "", nil, "--data", data, "user", "list")
	if code != 0 || !strings.Contains(out, "alice  sip:alice@localhost") || !strings.Contains(out, "bob") {
		t.Fatalf("list: %d %q", code, out)
	}
	if code, out, _ = runCmd(t, "a-new-password\n", nil, "--data", data, "user", "passwd", "alice", "--password-stdin"); code != 0 || !strings.Contains(out, "tokens are revoked") {
		t.Fatalf("passwd: %d %q", code, out)
	}
	if code, _, errs = runCmd(t, "a-new-password\n", nil, "--data", data, "user", "passwd", "nobody", "--password-stdin"); code != 1 || !strings.Contains(errs, "no such account") {
		t.Fatalf("passwd unknown: %d %q", code, errs)
	}
	if code, _, _ = runCmd(t, "", nil, "--data", data, "user", "del", "bob"); code != 0 {
		t.Fatalf("del: %d", code)
	}
	if code, _, errs = runCmd(t, "", nil, "--data", data, "user", "del", "bob"); code != 1 || !strings.Contains(errs, "no such account") {
		t.Fatalf("del twice: %d %q", code, errs)
	}
	if code, out, _ = runCmd(t, "", nil, "--data", data, "messages", "list"); code != 0 || !strings.HasPrefix(out, "RECEIVED") {
		t.Fatalf("messages list: %d %q", code, out)
	}
	if code, _, errs = runCmd(t, "", nil, "--data", data, "frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
}

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sealpostd.conf")
	os.WriteFile(file, []byte("# comment\ndomain = from-file.example\nretries = 7\nmax-pending = 9\n"), 0o600)
	var c config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.bind(fs)
	if err := fs.Parse([]string{"--retries", "3"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SEALPOST_MAX_PENDING": "11"}
	if err := c.applyEnvAndFile(fs, file, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.Retries != 3 || c.MaxPending != 11 || c.Domain != "from-file.example" || c.HTTPS != ":8443" {
		t.Fatalf("flag > env > file > default broken: %+v", c)
	}
	os.WriteFile(file, []byte("colour = blue\n"), 0o600)
	if err := c.applyEnvAndFile(fs, file, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), `unknown setting "colour"`) {
		t.Fatalf("unknown setting: %v", err)
	}
}

// TestConfigExampleCoversEverySetting keeps the generated example in step
// with the settings table.
func TestConfigExampleCoversEverySetting(t *testing.T) {
	var c config
	var b bytes.Buffer
	c.writeExample(&b)
	for _, s := range c.settings() {
		if !strings.Contains(b.String(), "# "+s.name+" = ") {
			t.Errorf("example lacks %s", s.name)
		}
	}
}

// writeSelfSigned writes a new self-signed certificate for localhost and
// its key, as a renewal would.
func writeSelfSigned(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "renewed"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is the child's stderr, written by exec's copier while the test
// reads it.
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
