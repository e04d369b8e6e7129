package tests

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

func TestCRLFKeepaliveAnswered(t *testing.T) {
	s := servertest.Start(t)
	conn, err := tls.Dial("tcp", s.SIPAddr, s.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 3; i++ {
		if _, err := conn.Write([]byte("\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "\r\n" {
			t.Fatalf("pong %d: %q %v", i, buf, err)
		}
	}
}

func TestUnregisterAndConnectionClose(t *testing.T) {
	s, tok := newPair(t)
	bob := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, bob, false)
	if code, _ := bob.Register(0, false); code != 200 {
		t.Fatalf("un-REGISTER: %d", code)
	}
	if _, ok := s.Registrar().Lookup("bob"); ok {
		t.Fatal("binding survived Expires: 0")
	}
	id := message.NewID()
	submit(t, s, tok, id, "bob", "while unregistered")
	if _, st := status(t, s, tok, id); st.Status != "enqueued" {
		t.Fatalf("delivered to an unregistered device: %+v", st)
	}
	mustRegister(t, bob, false)
	waitStatus(t, s, tok, id, "delivered")

	bob.Close()
	servertest.CheckFor(t, 10*time.Second, func() error {
		if _, ok := s.Registrar().Lookup("bob"); ok {
			return fmt.Errorf("binding survived its connection")
		}
		return nil
	})
}

func TestNewRegistrationReplacesOldDevice(t *testing.T) {
	s, tok := newPair(t)
	phone := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, phone, false)
	laptop := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, laptop, false)
	id := message.NewID()
	submit(t, s, tok, id, "bob", "to the newest device")
	waitStatus(t, s, tok, id, "delivered")
	if len(laptop.Texts()) != 1 || len(phone.Texts()) != 0 {
		t.Fatalf("laptop %q, phone %q", laptop.Texts(), phone.Texts())
	}
	// The old device's connection closing does not unbind the new one.
	phone.Close()
	id2 := message.NewID()
	submit(t, s, tok, id2, "bob", "still the laptop")
	waitStatus(t, s, tok, id2, "delivered")
	if len(laptop.Texts()) != 2 {
		t.Fatalf("laptop %q", laptop.Texts())
	}
}

func TestMetricsAndHealth(t *testing.T) {
	s, tok := newPair(t)
	bob := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, bob, false)
	id := message.NewID()
	submit(t, s, tok, id, "bob", "counted")
	submit(t, s, tok, message.NewID(), "nobody", "refused")
	alice := s.NewDevice(t, "alice", "alice-pw")
	mustRegister(t, alice, false)
	if code, _ := alice.Send("bob", "bell\x07"); code != 488 {
		t.Fatalf("control character over SIP: %d", code)
	}
	waitStatus(t, s, tok, id, "delivered")
	get := func(path string) (int, string) {
		res, err := http.Get(s.AdminURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	// The status turns delivered when the mark is stored; the queue counts
	// the delivery after that, so the counters are polled, not read once.
	var body string
	servertest.CheckFor(t, 20*time.Second, func() error {
		_, body = get("/metrics")
		for _, want := range []string{
			`sealpost_messages_accepted_total{via="https"} 1`,
			`sealpost_messages_delivered_total 1`,
			`sealpost_messages_expired_total 0`,
			`sealpost_messages_refused_total{reason="unknown_recipient"} 1`,
			`sealpost_messages_refused_total{reason="text_control_character"} 1`,
			`sealpost_messages_pending 0`,
			`sealpost_registered_devices 2`,
			`sealpost_delivery_duration_seconds_count 1`,
		} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("metrics lack %q", want)
			}
		}
		return nil
	})
	// The store's group commits and fsyncs are counted (how many depends
	// on how the writes fell into batches).
	for _, name := range []string{"sealpost_store_commit_writes_count", "sealpost_store_fsync_duration_seconds_count"} {
		if !regexp.MustCompile(`(?m)^` + name + ` [1-9]`).MatchString(body) {
			t.Errorf("metrics lack a non-zero %s", name)
		}
	}
}

// TestShutdownLosesNothingAccepted stops the server while senders are
// submitting: every message answered 202 must be there after a restart.
func TestShutdownLosesNothingAccepted(t *testing.T) {
	s, tok := newPair(t)
	var mu sync.Mutex
	var accepted []string
	var wg sync.WaitGroup
	client := s.HTTPClient()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				id := message.NewID()
				body := fmt.Sprintf(`{"id":%q,"to":"bob","text":"n %d"}`, id, i)
				req, _ := http.NewRequest("POST", s.HTTPSURL+"/v1/messages", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				res, err := client.Do(req)
				if err != nil {
					return // the server is going away
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == 202 {
					mu.Lock()
					accepted = append(accepted, id)
					mu.Unlock()
				}
			}
		}()
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(accepted) < 50 {
			return fmt.Errorf("%d accepted so far", len(accepted))
		}
		return nil
	})
	s.Stop(t)
	wg.Wait()
	s.Restart(t)
	for _, id := range accepted {
		if _, err := s.Store().Message(t.Context(), "alice", id); err != nil {
			t.Fatalf("accepted message %s lost: %v", id, err)
		}
	}
	t.Logf("%d messages accepted before the shutdown, all stored", len(accepted))
}

// TestStalledHandshakesDoNotLockOutOthers: a host that opens many TCP
// connections to the SIP port and never starts TLS must not keep a device
// from another address from connecting.
func TestStalledHandshakesDoNotLockOutOthers(t *testing.T) {
	s, _ := newPair(t)
	attacker := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	for i := 0; i < 100; i++ {
		c, err := attacker.Dial("tcp", s.SIPAddr)
		if err != nil {
			t.Fatalf("attacker connection %d: %v", i, err)
		}
		defer c.Close()
	}
	start := time.Now()
	bob := s.NewDevice(t, "bob", "bob-pw")
	mustRegister(t, bob, false)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a device waited %v behind stalled handshakes", d)
	}
}
