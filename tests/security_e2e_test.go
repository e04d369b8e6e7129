package tests

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/loginguard"
	"github.com/sealpost/sealpost/internal/server/servertest"
)

var securityT0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// An attacker guesses carol's password over SIP digest from one address,
// thousands of times while time passes: only a few dozen guesses are
// checked, the rest get 503 with Retry-After whatever the password (the
// right one too), one log line tells of the episode, and carol's own
// device on another address registers during the attack. The same guard
// then refuses the attacker's address over HTTPS too.
func TestSIPDigestBruteForceIsBounded(t *testing.T) {
	s := servertest.Start(t, servertest.WithFakeClock(securityT0))
	s.AddUser(t, "carol", "carol-right-pw")
	s.AddUser(t, "dave", "dave-pw")
	const guesses = 2000
	attacker := dialRawSIP(t, s, "127.0.0.2")

	attacker.send(rawRegister("carol", "127.0.0.2", 1, ""))
	chal := attacker.mustRead()
	if chal.Code != 401 {
		t.Fatalf("first REGISTER: %d, want a 401 challenge", chal.Code)
	}
	challenge := chal.Header.Get("WWW-Authenticate")
	answers := map[int]int{}
	for i := 1; i <= guesses; i++ {
		if i%100 == 0 {
			// 2,000 guesses over 20 minutes of the server's time.
			s.Clock.Advance(time.Minute)
		}
		attacker.send(rawRegister("carol", "127.0.0.2", i+1, digestFor(t, challenge, "carol", fmt.Sprintf("guess-%d", i), i)))
		a := attacker.mustRead()
		answers[a.Code]++
		switch a.Code {
		case 401:
			challenge = a.Header.Get("WWW-Authenticate")
		case 503:
			if a.Header.Get("Retry-After") == "" {
				t.Fatalf("guess %d: 503 without Retry-After", i)
			}
		default:
			t.Fatalf("guess %d: %d %s", i, a.Code, a.Reason)
		}
	}
	checks := metricValue(t, s, `sealpost_login_checks_total{via="sip"}`)
	t.Logf("%d guesses over 20 minutes: answers %v, %v digest responses checked", guesses, answers, checks)
	if checks > 40 || checks < loginguard.DefaultAddressFreeFailures {
		t.Fatalf("%v of %d guesses checked, want between %d and a few dozen", checks, guesses, loginguard.DefaultAddressFreeFailures)
	}
	if limited := metricValue(t, s, `sealpost_login_limited_total{scope="address",via="sip"}`); limited != float64(answers[503]) || limited < guesses-40 {
		t.Fatalf("limited metric %v, 503 answers %d", limited, answers[503])
	}

	// While limited, the right password gets the same 503: the answer
	// reveals nothing.
	attacker.send(rawRegister("carol", "127.0.0.2", guesses+2, digestFor(t, challenge, "carol", "carol-right-pw", guesses+1)))
	if a := attacker.mustRead(); a.Code != 503 {
		t.Fatalf("right password from the limited address: %d %s, want 503 like a wrong one", a.Code, a.Reason)
	}
	// The real carol, on another address, registers during the attack.
	dev := s.NewDevice(t, "carol", "carol-right-pw")
	if code, err := dev.Register(600, false); err != nil || code != 200 {
		t.Fatalf("carol's own device during the attack: %d %v", code, err)
	}
	// Another account from the attacking address is not limited.
	attacker.send(rawRegister("dave", "127.0.0.2", guesses+3, ""))
	davesChallenge := attacker.mustRead().Header.Get("WWW-Authenticate")
	attacker.send(rawRegister("dave", "127.0.0.2", guesses+4, digestFor(t, davesChallenge, "dave", "dave-pw", 1)))
	if a := attacker.mustRead(); a.Code != 200 {
		t.Fatalf("dave from the same address: %d %s", a.Code, a.Reason)
	}
	// SIP and HTTPS share the guard: the attacker's address is limited
	// for carol over HTTPS as well.
	req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathTokens, nil)
	req.SetBasicAuth("carol", "carol-right-pw")
	res, err := httpsFrom(s, "127.0.0.2").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("HTTPS login from the SIP-guessing address: %d, want 429", res.StatusCode)
	}
	// One log line for the episode, none per guess.
	var episode, perGuess int
	for _, l := range s.Logs() {
		if strings.Contains(l, "login attempts limited") {
			episode++
		}
		if strings.Contains(l, "authentication failed") {
			perGuess++
		}
	}
	if episode != 1 || perGuess > 40 {
		t.Fatalf("%d episode log lines (want 1) and %d failure lines for %d guesses", episode, perGuess, guesses)
	}
}

// 200 concurrent wrong HTTPS logins from one address: the limit is counted
// before the password hash, so all but a handful get 429 with Retry-After
// and only that handful is checked; the real user, logging in from
// another address during the attack, gets a token.
func TestHTTPSConcurrentBruteForceIsBounded(t *testing.T) {
	s := servertest.Start(t, servertest.WithFakeClock(securityT0))
	s.AddUser(t, "carol", "carol-right-pw")
	attacker := httpsFrom(s, "127.0.0.2")
	const guesses = 200
	var mu sync.Mutex
	codes := map[int]int{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < guesses; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathTokens, nil)
			req.SetBasicAuth("carol", fmt.Sprintf("guess-%d", i))
			<-start
			res, err := attacker.Do(req)
			if err != nil {
				t.Errorf("guess %d: %v", i, err)
				return
			}
			res.Body.Close()
			if res.StatusCode == 429 && res.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
			mu.Lock()
			codes[res.StatusCode]++
			mu.Unlock()
		}(i)
	}
	close(start)
	wg.Wait()
	checks := metricValue(t, s, `sealpost_login_checks_total{via="https"}`)
	t.Logf("%d concurrent guesses: answers %v, %v passwords checked", guesses, codes, checks)
	if codes[401] != loginguard.DefaultAddressFreeFailures || codes[429] != guesses-loginguard.DefaultAddressFreeFailures {
		t.Fatalf("answers %v, want %d × 401 and the rest 429", codes, loginguard.DefaultAddressFreeFailures)
	}
	if checks != float64(loginguard.DefaultAddressFreeFailures) {
		t.Fatalf("%v passwords checked, want %d", checks, loginguard.DefaultAddressFreeFailures)
	}
	// The right password from the attacking address: 429 too, the same
	// answer as a wrong one.
	req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathTokens, nil)
	req.SetBasicAuth("carol", "carol-right-pw")
	res, err := attacker.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 429 {
		t.Fatalf("right password from the attacking address: %d, want 429", res.StatusCode)
	}
	// The real carol, from her own address: not locked out.
	if tok := s.Token(t, "carol", "carol-right-pw"); tok == "" {
		t.Fatal("no token for carol")
	}
}
