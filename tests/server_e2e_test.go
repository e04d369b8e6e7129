// Package tests holds end-to-end tests: the real server on loopback ports
// with real TLS and the real SQLite file, driven over HTTPS and SIP.
package tests

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sealpost/sealpost/message"
	"github.com/sealpost/sealpost/internal/server/servertest"
)

func TestOnlineDelivery(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "alice-pw")
	s.AddUser(t, "bob", "bob-pw")
	bob := s.NewDevice(t, "bob", "bob-pw")
	if code, err := bob.Register(600, false); code != 200 {
		t.Fatalf("bob register: %d %v", code, err)
	}
	tok := s.Token(t, "alice", "alice-pw")
	id := message.NewID()
	code, res, e := submit(t, s, tok, id, "bob", "hello bob 👍🏽")
	if code != http.StatusAccepted || res.Status != "enqueued" || res.ID != id {
		t.Fatalf("submit: %d %+v %+v", code, res, e)
	}
	servertest.CheckFor(t, 10*time.Second, func() error {
		if got := bob.Texts(); len(got) != 1 || got[0] != "hello bob 👍🏽" {
			return fmt.Errorf("bob has %q", got)
		}
		return nil
	})
	r := bob.Received()[0]
	if r.From != "alice" || r.ID != id || r.ContentType != "text/plain;charset=utf-8" || r.SubmittedAt == "" {
		t.Fatalf("delivered MESSAGE: %+v", r)
	}
	waitStatus(t, s, tok, id, "delivered")
}
