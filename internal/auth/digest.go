package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/icholy/digest"

	"github.com/sealpost/sealpost/internal/clock"
)

// SIPSecrets are the digest HA1 values of an account: H(name:realm:password)
// for MD5 and for SHA-256 (RFC 8760). The server cannot verify SIP digest
// responses from an argon2id hash, so it keeps these instead, sealed by the
// master key in the store. They depend on the realm: after changing
// --domain every password must be set again.
type SIPSecrets struct {
	MD5    string // hex
	SHA256 string // hex
}

// ComputeSIPSecrets derives the HA1 values of an account.
func ComputeSIPSecrets(name, realm, password string) SIPSecrets {
	m := md5.Sum([]byte(name + ":" + realm + ":" + password))
	s := sha256.Sum256([]byte(name + ":" + realm + ":" + password))
	return SIPSecrets{MD5: hex.EncodeToString(m[:]), SHA256: hex.EncodeToString(s[:])}
}

// Marshal encodes the secrets for sealing.
func (s SIPSecrets) Marshal() []byte { return []byte(s.MD5 + ":" + s.SHA256) }

// UnmarshalSIPSecrets decodes what Marshal produced.
func UnmarshalSIPSecrets(b []byte) (SIPSecrets, error) {
	md, sha, ok := strings.Cut(string(b), ":")
	if !ok || len(md) != 32 || len(sha) != 64 {
		return SIPSecrets{}, errors.New("auth: malformed SIP secrets")
	}
	return SIPSecrets{MD5: md, SHA256: sha}, nil
}

// Digest verification errors.
var (
	// ErrNoCredentials: the request carries no Authorization header; answer
	// with a challenge.
	ErrNoCredentials = errors.New("no digest credentials")
	// ErrStaleNonce: the response was computed correctly for a nonce that
	// has expired; answer with a fresh challenge marked stale=true
	// (RFC 3261 §22.4) so the client retries without asking its user.
	ErrStaleNonce = errors.New("stale nonce")
	// ErrBadCredentials: wrong user, password, realm, or a malformed or
	// replayed response.
	ErrBadCredentials = errors.New("bad digest credentials")
)

// Digester issues SIP digest challenges and verifies responses. Nonces are
// stateless (a timestamp and random bytes authenticated with an HMAC), so any
// node that shares the key can verify them; the nonce-count of each nonce is
// remembered while the nonce is fresh, to refuse replays.
type Digester struct {
	realm    string
	key      []byte
	clock    clock.Clock
	nonceTTL time.Duration

	mu     sync.Mutex
	lastNC map[string]nonceUse // by nonce; guarded by mu
}

type nonceUse struct {
	nc      uint64
	expires time.Time
}

// NewDigester returns a Digester for realm. nonceTTL bounds how long a
// challenge stays usable (then the client gets stale=true).
func NewDigester(realm string, c clock.Clock, nonceTTL time.Duration) *Digester {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic("auth: no randomness: " + err.Error())
	}
	return NewDigesterWithKey(realm, c, nonceTTL, key)
}

// NewDigesterWithKey is NewDigester with the nonce key given: nodes that
// share it accept each other's challenges (a device whose connection moved
// to another node between the challenge and its answer). The nonce-counts
// that refuse a replay are still remembered per node.
func NewDigesterWithKey(realm string, c clock.Clock, nonceTTL time.Duration, key []byte) *Digester {
	return &Digester{realm: realm, key: key, clock: c, nonceTTL: nonceTTL, lastNC: map[string]nonceUse{}}
}

// Algorithms offered by default: SHA-256 first (preferred, RFC 8760 §2.4)
// and MD5, which older phones only know.
var DefaultAlgorithms = []string{"SHA-256", "MD5"}

// Challenges returns the WWW-Authenticate values to send with a 401 or 407,
// one per algorithm (DefaultAlgorithms when none are named), all with the
// same nonce. Answers are verified whatever algorithm they use.
func (d *Digester) Challenges(stale bool, algorithms ...string) []string {
	if len(algorithms) == 0 {
		algorithms = DefaultAlgorithms
	}
	nonce := d.newNonce()
	out := make([]string, 0, len(algorithms))
	for _, alg := range algorithms {
		c := digest.Challenge{Realm: d.realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		out = append(out, c.String())
	}
	return out
}

func (d *Digester) newNonce() string {
	b := make([]byte, 16, 32)
	binary.BigEndian.PutUint64(b, uint64(d.clock.Now().Unix()))
	if _, err := rand.Read(b[8:16]); err != nil {
		panic("auth: no randomness: " + err.Error())
	}
	mac := hmac.New(sha256.New, d.key)
	mac.Write(b)
	b = mac.Sum(b)[:32]
	return base64.RawURLEncoding.EncodeToString(b)
}

// checkNonce reports whether the nonce was issued by this Digester and
// whether it is still fresh.
func (d *Digester) checkNonce(nonce string) (valid, fresh bool) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != 32 {
		return false, false
	}
	mac := hmac.New(sha256.New, d.key)
	mac.Write(b[:16])
	if !hmac.Equal(mac.Sum(nil)[:16], b[16:]) {
		return false, false
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	return true, d.clock.Now().Sub(issued) <= d.nonceTTL
}

// Verify checks the Authorization header value of a request with the given
// method. lookup returns the account's secrets (an error for an unknown
// account). It returns the authenticated account name.
func (d *Digester) Verify(method, authorization string, lookup func(user string) (SIPSecrets, error)) (string, error) {
	if authorization == "" {
		return "", ErrNoCredentials
	}
	cred, err := digest.ParseCredentials(authorization)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadCredentials, err)
	}
	if cred.Realm != d.realm {
		return "", fmt.Errorf("%w: realm %q, want %q", ErrBadCredentials, cred.Realm, d.realm)
	}
	valid, fresh := d.checkNonce(cred.Nonce)
	if !valid {
		return "", fmt.Errorf("%w: nonce not issued by this server", ErrBadCredentials)
	}
	if cred.QOP != "auth" || cred.Cnonce == "" || cred.Nc <= 0 {
		return "", fmt.Errorf("%w: qop=auth with cnonce and nc required", ErrBadCredentials)
	}
	secrets, lookupErr := lookup(cred.Username)
	var ha1 string
	switch strings.ToUpper(cred.Algorithm) {
	case "", "MD5":
		ha1 = secrets.MD5
	case "SHA-256":
		ha1 = secrets.SHA256
	default:
		return "", fmt.Errorf("%w: algorithm %q not supported", ErrBadCredentials, cred.Algorithm)
	}
	if lookupErr != nil {
		// Compute anyway so an unknown account costs the same time.
		ha1 = "0000000000000000"
	}
	chal := &digest.Challenge{Realm: d.realm, Nonce: cred.Nonce, Algorithm: cred.Algorithm, QOP: []string{"auth"}}
	want, err := digest.Digest(chal, digest.Options{
		Method: method, URI: cred.URI, Username: cred.Username,
		A1: ha1, Cnonce: cred.Cnonce, Count: cred.Nc,
	})
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadCredentials, err)
	}
	if subtle.ConstantTimeCompare([]byte(want.Response), []byte(strings.ToLower(cred.Response))) != 1 || lookupErr != nil {
		return "", ErrBadCredentials
	}
	if !fresh {
		return "", ErrStaleNonce
	}
	if !d.useNonce(cred.Nonce, uint64(cred.Nc)) {
		return "", fmt.Errorf("%w: nonce count %d replayed", ErrBadCredentials, cred.Nc)
	}
	return cred.Username, nil
}

// useNonce records nc for the nonce and reports whether it is higher than
// any seen before (RFC 7616 §3.4: a repeated nc is a replay).
func (d *Digester) useNonce(nonce string, nc uint64) bool {
	now := d.clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.lastNC) > 1024 {
		for n, u := range d.lastNC {
			if now.After(u.expires) {
				delete(d.lastNC, n)
			}
		}
	}
	u, ok := d.lastNC[nonce]
	if ok && nc <= u.nc {
		return false
	}
	d.lastNC[nonce] = nonceUse{nc: nc, expires: now.Add(d.nonceTTL + time.Minute)}
	return true
}

// CredentialsUser returns the user name of a digest Authorization value
// without verifying anything, so the login guard can be asked before the
// response is checked. ok is false when the value does not parse.
func CredentialsUser(authorization string) (user string, ok bool) {
	cred, err := digest.ParseCredentials(authorization)
	if err != nil {
		return "", false
	}
	return cred.Username, true
}
