package interop

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// baresipModuleDirs are where Debian and a source build put the modules.
var baresipModuleDirs = []string{"/usr/lib/baresip/modules", "/usr/lib/x86_64-linux-gnu/baresip/modules", "/usr/local/lib/baresip/modules"}

// baresip drives one baresip 1.0 process for one account. Commands go to its
// ctrl_tcp module (netstrings of JSON, the only command channel that answers
// in a form a program can read); what it shows a person goes to stdout,
// which also carries its SIP trace (-s).
type baresip struct {
	*proc
	account  string
	dir      string
	outPath  string
	ctrlAddr string
}

// baresipConfig is the config file: no audio or video modules (only
// messages are exchanged), the account and contact modules, ctrl_tcp on a
// loopback port, and SIP listening on loopback only.
func baresipConfig(moduleDir string, ctrlPort int) string {
	return fmt.Sprintf(`# Written by tests/interop for one test run.
poll_method		epoll
sip_listen		127.0.0.1:0
module_path		%s
module			stdio.so
# uuid before account: sipnat=outbound needs an instance id (RFC 5626).
module_tmp		uuid.so
module_tmp		account.so
module_app		contact.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:%d
`, moduleDir, ctrlPort)
}

// baresipAccount is the accounts line a user would write for sealpostd:
// TLS, digest credentials, the server as outbound proxy with RFC 5626
// outbound (keepalives on the registered connection), no MWI subscription.
func baresipAccount(account, password, domain, sipAddr string) string {
	return fmt.Sprintf("<sip:%s@%s;transport=tls>;auth_user=%s;auth_pass=%s;outbound=\"sip:%s;transport=tls\";sipnat=outbound;mwi=no\n",
		account, domain, account, password, sipAddr)
}

func findBaresipModules() (string, error) {
	for _, d := range baresipModuleDirs {
		if _, err := os.Stat(filepath.Join(d, "ctrl_tcp.so")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no baresip module folder with ctrl_tcp.so among %v", baresipModuleDirs)
}

// startBaresip writes a fresh config folder under dir and starts baresip,
// which runs until owner ends. contacts are the accounts it can message, in
// order; the first is the current contact.
func startBaresip(t, owner *testing.T, dir string, s *serverInfo, account, password string, contacts []string) *baresip {
	t.Helper()
	modules, err := findBaresipModules()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "baresip-"+account)
	if err := os.MkdirAll(conf, 0o700); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	writeSecretFile(t, filepath.Join(conf, "config"), baresipConfig(modules, port))
	writeSecretFile(t, filepath.Join(conf, "accounts"), baresipAccount(account, password, s.Domain, s.SIPAddr))
	var cl strings.Builder
	for _, c := range contacts {
		fmt.Fprintf(&cl, "\"%s\" <sip:%s@%s>\n", c, c, s.Domain)
	}
	writeSecretFile(t, filepath.Join(conf, "contacts"), cl.String())
	if len(contacts) > 0 {
		writeSecretFile(t, filepath.Join(conf, "current_contact"), "sip:"+contacts[0]+"@"+s.Domain)
	}
	b := &baresip{account: account, dir: conf, outPath: filepath.Join(conf, "stdout.log"), ctrlAddr: fmt.Sprintf("127.0.0.1:%d", port)}
	b.proc = startProc(t, owner, "baresip", conf, nil, b.outPath, "-f", conf, "-s")
	b.proc.quit = "q" // stdio reads keys: q quits (and un-registers)
	t.Logf("baresip for %s: config and log in %s", account, conf)
	return b
}

func (b *baresip) output() string  { return readFile(b.outPath) }
func (b *baresip) trace() []sipMsg { return parseTrace(b.output()) }

// registered reports baresip's own word that the account registered.
var baresipRegOK = regexp.MustCompile(`\{\d+/TLS/v[46]\} 200 OK`)

func (b *baresip) waitRegistered(t *testing.T, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "baresip "+b.account+" to register", func() error {
		out := b.output()
		if baresipRegOK.MatchString(out) {
			return nil
		}
		if b.exited() {
			return final{fmt.Errorf("baresip exited: %v; output:\n%s", b.waitErr, tail(out, 30))}
		}
		if i := strings.Index(out, "Register: "); i >= 0 {
			// baresip gave up on this registration (it retries only much
			// later); say why, with the challenge it could not answer.
			var chal []string
			for _, r := range registerResponses(b.trace()) {
				if r.Status == 401 || r.Status == 407 {
					chal = append(r.Headers["www-authenticate"], r.Headers["proxy-authenticate"]...)
				}
			}
			return final{fmt.Errorf("baresip failed to register: %q; last challenge: %q", firstLine(out[i:]), chal)}
		}
		return fmt.Errorf("no '{1/TLS/v4} 200 OK' line yet; SIP so far:\n%s", traceTail(b.trace(), 8))
	})
}

// ctrlReply is ctrl_tcp's answer to a command.
type ctrlReply struct {
	Response bool   `json:"response"`
	OK       bool   `json:"ok"`
	Data     string `json:"data"`
	Token    string `json:"token"`
}

// command sends one command to ctrl_tcp and returns its answer. ctrl_tcp
// also pushes events on the connection; they are skipped.
func (b *baresip) command(cmd, params string) (ctrlReply, error) {
	conn, err := net.DialTimeout("tcp", b.ctrlAddr, 5*time.Second)
	if err != nil {
		return ctrlReply{}, fmt.Errorf("baresip ctrl_tcp at %s: %w", b.ctrlAddr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	token := fmt.Sprintf("t%d", time.Now().UnixNano())
	body, _ := json.Marshal(map[string]string{"command": cmd, "params": params, "token": token})
	if _, err := fmt.Fprintf(conn, "%d:%s,", len(body), body); err != nil {
		return ctrlReply{}, fmt.Errorf("baresip ctrl_tcp write: %w", err)
	}
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		// Netstrings: LEN ":" JSON ",".
		for {
			i := strings.IndexByte(string(buf), ':')
			if i < 0 {
				break
			}
			n, err := strconv.Atoi(string(buf[:i]))
			if err != nil {
				return ctrlReply{}, fmt.Errorf("baresip ctrl_tcp sent a bad netstring %q", buf)
			}
			if len(buf) < i+1+n+1 {
				break
			}
			var r ctrlReply
			if err := json.Unmarshal(buf[i+1:i+1+n], &r); err != nil {
				return ctrlReply{}, fmt.Errorf("baresip ctrl_tcp sent bad JSON %q: %w", buf[i+1:i+1+n], err)
			}
			buf = buf[i+1+n+1:]
			if r.Response && r.Token == token {
				if !r.OK {
					return r, fmt.Errorf("baresip refused %s %q: %s", cmd, params, r.Data)
				}
				return r, nil
			}
		}
		n, err := conn.Read(tmp)
		if err != nil {
			return ctrlReply{}, fmt.Errorf("baresip ctrl_tcp read after %s: %w", cmd, err)
		}
		buf = append(buf, tmp[:n]...)
	}
}

// message sends text to peer: it makes peer the current contact (the
// contact module's "message" command writes to the current contact).
func (b *baresip) message(peer, domain, text string) error {
	want := "<sip:" + peer + "@" + domain + ">"
	r, err := b.command("contacts", "")
	if err != nil {
		return err
	}
	current := ""
	for _, l := range strings.Split(r.Data, "\n") {
		if strings.HasPrefix(l, "> ") {
			current = l
		}
	}
	for i := 0; !strings.Contains(current, want); i++ {
		if i > 10 {
			return fmt.Errorf("baresip has no contact %s (current: %q)", want, current)
		}
		r, err := b.command("contact_next", "")
		if err != nil {
			return err
		}
		current = r.Data
	}
	_, err = b.command("message", text)
	return err
}

// stays reports whether baresip shows this account registered ("OK" in
// reginfo).
func (b *baresip) reginfo() (string, error) {
	r, err := b.command("reginfo", "")
	return ansiEscape.ReplaceAllString(r.Data, ""), err
}

// shown is how baresip shows an incoming message: `sip:FROM@DOMAIN: "TEXT"`.
func baresipShown(fromAOR, text string) string {
	return fromAOR + ": \"" + text + "\""
}

func (b *baresip) waitShown(t *testing.T, timeout time.Duration, fromAOR, text string) {
	t.Helper()
	want := baresipShown(fromAOR, text)
	waitFor(t, timeout, "baresip "+b.account+" to show "+want, func() error {
		if strings.Contains(b.output(), want) {
			return nil
		}
		return fmt.Errorf("not shown; SIP MESSAGEs received so far:\n%s", traceTail(receivedMessages(b.trace(), b.account), 6))
	})
}

// dump logs what the test saw of this client, for a failure report.
func (b *baresip) dump(t *testing.T) {
	t.Helper()
	t.Logf("baresip %s SIP trace (last messages):\n%s\nbaresip output (last lines):\n%s", b.account, traceTail(b.trace(), 16), tail(b.output(), 40))
}
