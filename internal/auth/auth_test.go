package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/icholy/digest"

	"github.com/sealpost/sealpost/internal/clock"
)

func TestPasswordHash(t *testing.T) {
	h := HashPassword("correct horse")
	if !CheckPassword(h, "correct horse") {
		t.Fatal("right password refused")
	}
	if CheckPassword(h, "wrong") || CheckPassword("", "correct horse") || CheckPassword("garbage", "x") {
		t.Fatal("wrong password accepted")
	}
	if HashPassword("correct horse") == h {
		t.Fatal("hashes are not salted")
	}
}

func TestTokens(t *testing.T) {
	a, ha := NewToken()
	b, _ := NewToken()
	if a == b || string(HashToken(a)) != string(ha) {
		t.Fatal("tokens not unique or hash mismatch")
	}
}

// respond computes a client's Authorization value for a challenge.
func respond(t *testing.T, chal, user, password, method string, nc int, cnonce string) string {
	t.Helper()
	c, err := digest.ParseChallenge(chal)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(c, digest.Options{Method: method, URI: "sip:localhost", Username: user, Password: password, Count: nc, Cnonce: cnonce})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}

func TestDigest(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	d := NewDigester("localhost", clk, 5*time.Minute)
	secrets := map[string]SIPSecrets{"alice": ComputeSIPSecrets("alice", "localhost", "pw")}
	lookup := func(u string) (SIPSecrets, error) {
		s, ok := secrets[u]
		if !ok {
			return SIPSecrets{}, errors.New("no such account")
		}
		return s, nil
	}
	chals := d.Challenges(false)
	if len(chals) != 2 {
		t.Fatalf("challenges: %q", chals)
	}
	for i, alg := range []string{"SHA-256", "MD5"} {
		c, _ := digest.ParseChallenge(chals[i])
		if c.Algorithm != alg || !c.SupportsQOP("auth") || c.Realm != "localhost" {
			t.Fatalf("challenge %d: %+v", i, c)
		}
		t.Run(alg, func(t *testing.T) {
			ch := d.Challenges(false)[i] // a fresh nonce per algorithm
			auth := respond(t, ch, "alice", "pw", "REGISTER", 1, "cn-"+alg)
			if user, err := d.Verify("REGISTER", auth, lookup); err != nil || user != "alice" {
				t.Fatalf("verify: %q %v", user, err)
			}
			// The same nc again is a replay.
			if _, err := d.Verify("REGISTER", auth, lookup); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("replay: %v", err)
			}
			// A higher nc on the same nonce is fine.
			if _, err := d.Verify("REGISTER", respond(t, ch, "alice", "pw", "REGISTER", 2, "cn2-"+alg), lookup); err != nil {
				t.Fatalf("nc=2: %v", err)
			}
		})
	}
	t.Run("refusals", func(t *testing.T) {
		ch := d.Challenges(false)[0]
		cases := map[string]string{
			"wrong password":  respond(t, ch, "alice", "nope", "REGISTER", 1, "a"),
			"unknown account": respond(t, ch, "mallory", "pw", "REGISTER", 1, "b"),
			"other method":    respond(t, ch, "alice", "pw", "INVITE", 1, "c"),
			"foreign nonce":   respond(t, NewDigester("localhost", clk, time.Minute).Challenges(false)[0], "alice", "pw", "REGISTER", 1, "d"),
			"other realm":     respond(t, `Digest realm="elsewhere", nonce="x", qop="auth", algorithm=MD5`, "alice", "pw", "REGISTER", 1, "e"),
		}
		for name, auth := range cases {
			if _, err := d.Verify("REGISTER", auth, lookup); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("%s: %v", name, err)
			}
		}
		if _, err := d.Verify("REGISTER", "", lookup); !errors.Is(err, ErrNoCredentials) {
			t.Errorf("no credentials: %v", err)
		}
	})
	t.Run("stale nonce", func(t *testing.T) {
		ch := d.Challenges(false)[0]
		clk.Advance(5*time.Minute + time.Second)
		_, err := d.Verify("REGISTER", respond(t, ch, "alice", "pw", "REGISTER", 1, "s"), lookup)
		if !errors.Is(err, ErrStaleNonce) {
			t.Fatalf("old nonce: %v", err)
		}
		// A stale nonce with a wrong password is still just wrong.
		_, err = d.Verify("REGISTER", respond(t, ch, "alice", "nope", "REGISTER", 1, "s2"), lookup)
		if !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("old nonce, wrong password: %v", err)
		}
		if c, _ := digest.ParseChallenge(d.Challenges(true)[0]); !c.Stale {
			t.Fatal("stale challenge not marked stale")
		}
	})
}

func TestSIPSecretsRoundTrip(t *testing.T) {
	s := ComputeSIPSecrets("alice", "localhost", "pw")
	back, err := UnmarshalSIPSecrets(s.Marshal())
	if err != nil || back != s {
		t.Fatalf("%+v %v", back, err)
	}
	if _, err := UnmarshalSIPSecrets([]byte("short")); err == nil {
		t.Fatal("malformed secrets accepted")
	}
}
