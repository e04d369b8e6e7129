package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// linphonec drives linphonec 5.1 (the console Linphone) for one account.
// Commands go to its standard input; what it shows a person goes to stdout
// (outPath) and its log at level 6, with the SIP trace, to logPath. Each run
// has its own pair of files.
type linphonec struct {
	*proc
	account, password string
	home              string // HOME: linphonec keeps its database under it
	rcPath            string
	outPath, logPath  string
	run               int
	srv               *serverInfo
	keepalive         time.Duration
	owner             *testing.T // each run lasts until this test ends at most
}

// linphonecRC is the configuration a user would give linphonec for
// sealpostd: TLS only, the server as proxy and route, certificates
// verified against the server's CA, digest credentials for the realm (the
// domain). keepalive_period is short so that a test sees keepalives.
func linphonecRC(s *serverInfo, account, password string, keepalive time.Duration) string {
	return fmt.Sprintf(`# Written by tests/interop for one run: linphonec rewrites it on exit.
[sip]
sip_port=0
sip_tcp_port=0
sip_tls_port=-1
use_ipv6=0
default_proxy=0
verify_server_certs=1
verify_server_cn=1
root_ca=%[1]s
keepalive_period=%[2]d

[proxy_0]
reg_proxy=<sip:%[3]s;transport=tls>
reg_route=<sip:%[3]s;transport=tls>
reg_identity=sip:%[4]s@%[5]s
reg_expires=600
reg_sendregister=1
publish=0

[auth_info_0]
username=%[4]s
userid=%[4]s
passwd=%[6]s
realm=%[5]s
domain=%[5]s
`, s.CAFile, keepalive.Milliseconds(), s.SIPAddr, account, s.Domain, password)
}

// newLinphonec prepares a profile folder; start runs the program, for no
// longer than t.
func newLinphonec(t *testing.T, dir string, s *serverInfo, account, password string) *linphonec {
	t.Helper()
	home := filepath.Join(dir, "linphonec-"+account)
	// linphonec opens its message database here and exits early without it.
	if err := os.MkdirAll(filepath.Join(home, ".local", "share", "linphone"), 0o700); err != nil {
		t.Fatal(err)
	}
	return &linphonec{account: account, password: password, home: home, rcPath: filepath.Join(home, "linphonerc"), srv: s, keepalive: time.Second, owner: t}
}

// start renders a fresh configuration (the last run rewrote it) and starts
// linphonec.
func (l *linphonec) start(t *testing.T) {
	t.Helper()
	l.run++
	writeSecretFile(t, l.rcPath, linphonecRC(l.srv, l.account, l.password, l.keepalive))
	l.outPath = filepath.Join(l.home, fmt.Sprintf("stdout-%d.log", l.run))
	l.logPath = filepath.Join(l.home, fmt.Sprintf("linphone-%d.log", l.run))
	l.proc = startProc(t, l.owner, "linphonec", l.home, []string{"HOME=" + l.home}, l.outPath,
		"-c", l.rcPath, "-d", "6", "-l", l.logPath)
	t.Logf("linphonec for %s (run %d): config and logs in %s", l.account, l.run, l.home)
}

func (l *linphonec) output() string  { return readFile(l.outPath) }
func (l *linphonec) log() string     { return readFile(l.logPath) }
func (l *linphonec) trace() []sipMsg { return parseTrace(reassembleReads(l.log())) }

var linphoneRegOK = regexp.MustCompile(`moving from state \[LinphoneRegistration\w+\] to \[LinphoneRegistrationOk\]`)

// waitRegistered waits for the account to reach LinphoneRegistrationOk in
// this run, then checks that "status register" says so too.
func (l *linphonec) waitRegistered(t *testing.T, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "linphonec "+l.account+" to register", func() error {
		log := l.log()
		if linphoneRegOK.MatchString(log) {
			return nil
		}
		if l.exited() {
			return fmt.Errorf("linphonec exited: %v; output:\n%s\nlog:\n%s", l.waitErr, tail(l.output(), 10), tail(log, 20))
		}
		if i := strings.LastIndex(log, "SSL handshake failed"); i >= 0 {
			return fmt.Errorf("TLS handshake failed: %s", firstLine(log[i:]))
		}
		return fmt.Errorf("not registered yet; SIP so far:\n%s", traceTail(parseTrace(log), 8))
	})
	l.waitStatus(t, timeout, "registered, identity=sip:"+l.account+"@"+l.srv.Domain)
}

// waitStatus sends "status register" until linphonec prints want.
func (l *linphonec) waitStatus(t *testing.T, timeout time.Duration, want string) {
	t.Helper()
	before := strings.Count(l.output(), want)
	if err := l.send("status register"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, timeout, "linphonec to print "+want, func() error {
		out := l.output()
		if strings.Count(out, want) > before {
			return nil
		}
		return fmt.Errorf("output so far:\n%s", tail(out, 6))
	})
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// chat sends text to peer, as a user types it.
func (l *linphonec) chat(peer, text string) error {
	return l.send("chat sip:" + peer + "@" + l.srv.Domain + " " + text)
}

// linphonecShown is how linphonec shows an incoming message.
func linphonecShown(fromAOR, text string) string {
	return "Message received from " + fromAOR + ": " + text
}

func (l *linphonec) waitShown(t *testing.T, timeout time.Duration, fromAOR, text string) {
	t.Helper()
	want := linphonecShown(fromAOR, text)
	waitFor(t, timeout, "linphonec "+l.account+" to show "+want, func() error {
		if strings.Contains(l.output(), want) {
			return nil
		}
		return fmt.Errorf("not shown; SIP MESSAGEs received so far:\n%s", traceTail(receivedMessages(l.trace(), l.account), 6))
	})
}

// keepalivesSent counts the RFC 5626 CRLF keepalives linphonec logged.
func (l *linphonec) keepalivesSent() int {
	return strings.Count(l.log(), "keep alive sent to [TLS://"+l.srv.SIPAddr+"]")
}

func (l *linphonec) dump(t *testing.T) {
	t.Helper()
	if l.proc == nil {
		return
	}
	t.Logf("linphonec %s run %d SIP trace (last messages):\n%s\nlinphonec output (last lines):\n%s", l.account, l.run, traceTail(l.trace(), 16), tail(l.output(), 20))
}
