package auth

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/clock"
)

// TestSharedNonceKey: nodes given one nonce key accept each other's
// challenges; a node with another key refuses them.
func TestSharedNonceKey(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	key := bytes.Repeat([]byte{7}, 32)
	a := NewDigesterWithKey("localhost", clk, time.Minute, key)
	b := NewDigesterWithKey("localhost", clk, time.Minute, bytes.Clone(key))
	other := NewDigesterWithKey("localhost", clk, time.Minute, bytes.Repeat([]byte{8}, 32))
	secrets := ComputeSIPSecrets("alice", "localhost", "pw")
	lookup := func(string) (SIPSecrets, error) { return secrets, nil }
	answer := respond(t, a.Challenges(false)[0], "alice", "pw", "REGISTER", 1, "c1")
	if user, err := b.Verify("REGISTER", answer, lookup); err != nil || user != "alice" {
		t.Fatalf("node b refused node a's challenge: %q, %v", user, err)
	}
	if _, err := other.Verify("REGISTER", answer, lookup); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a node with another key: %v, want ErrBadCredentials", err)
	}
}
