package web_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/internal/server/servertest"
)

// TestWebCommand runs the real `sealpost web`: it prints an address on
// 127.0.0.1 with a token, opens the browser (a stand-in xdg-open) on a
// private page that leads there, serves the page, runs the client (a
// message sent to it arrives and is printed as an event), and stops
// cleanly on Ctrl-C, taking the private page with it.
func TestWebCommand(t *testing.T) {
	srv := servertest.Start(t)
	bob := newDevice(t, srv, "bob")
	srv.AddUser(t, "alice", "pw-alice-secret")
	home := filepath.Join(t.TempDir(), "alice")
	err := client.Login(context.Background(), client.LoginOptions{
		Home: home, Server: srv.HTTPSURL, Account: "alice", Password: "pw-alice-secret",
		CAFile: srv.CAFile, SIPAddr: srv.SIPAddr, Domain: srv.Domain,
	})
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "sealpost")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/sealpost/sealpost/cmd/sealpost").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// A stand-in for xdg-open that keeps a copy of what it was asked to
	// open.
	tools := t.TempDir()
	opened := filepath.Join(tools, "opened.html")
	script := "#!/bin/sh\ncp \"$1\" " + opened + "\nstat -c %a \"$1\" > " + opened + ".mode\n"
	if err := os.WriteFile(filepath.Join(tools, "xdg-open"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--home", home, "web")
	cmd.Env = append(os.Environ(), "DISPLAY=:0", "WAYLAND_DISPLAY=", "PATH="+tools+string(os.PathListSeparator)+os.Getenv("PATH"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
	})
	var mu sync.Mutex
	var lines []string
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
		io.Copy(io.Discard, stdout)
	}()
	printed := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(lines, "\n")
	}
	addr := regexp.MustCompile(`open (http://127\.0\.0\.1:[0-9]+/\?token=[A-Za-z0-9_-]{40,})\n`)
	var url string
	servertest.CheckFor(t, 30*time.Second, func() error {
		if m := addr.FindStringSubmatch(printed() + "\n"); m != nil {
			url = m[1]
			return nil
		}
		return fmt.Errorf("no address printed yet: %q (stderr %q)", printed(), stderr.String())
	})
	// The browser was given a page (0600, in the profile) that leads to
	// the address, not the address itself on its command line.
	servertest.CheckFor(t, 20*time.Second, func() error {
		b, err := os.ReadFile(opened)
		if err != nil || !strings.Contains(string(b), `url=`+url+`"`) {
			return errorf("opened page %q (%v)", b, err)
		}
		mode, _ := os.ReadFile(opened + ".mode")
		if strings.TrimSpace(string(mode)) != "600" {
			return errorf("opened page mode %q", mode)
		}
		return nil
	})
	res, err := httpClient().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 {
		t.Fatalf("the printed address: %d, cookies %v", res.StatusCode, res.Cookies())
	}
	req, _ := http.NewRequest("GET", strings.Split(url, "?")[0], nil)
	req.AddCookie(res.Cookies()[0])
	res, err = httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(page), `data-account="alice"`) {
		t.Fatalf("the page: %d %.200s", res.StatusCode, page)
	}

	// The client runs: alice is registered and receives.
	m, err := bob.core.Send(context.Background(), "alice", "are you on the web?")
	if err != nil {
		t.Fatal(err)
	}
	servertest.CheckFor(t, 30*time.Second, func() error {
		out := printed()
		if !strings.Contains(out, "online: registered as alice@localhost") || !strings.Contains(out, m.ID) {
			return fmt.Errorf("registration and the received message not printed: %q", out)
		}
		return nil
	})
	if strings.Contains(stderr.String(), "token=") {
		t.Errorf("the token is on stderr: %q", stderr.String())
	}

	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after Ctrl-C: %v (stderr %q)", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after Ctrl-C")
	}
	if _, err := os.Stat(filepath.Join(home, "web-open.html")); !os.IsNotExist(err) {
		t.Errorf("the page with the token outlived sealpost web: %v", err)
	}
}
