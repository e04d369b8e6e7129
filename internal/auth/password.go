// Package auth checks who is asking: account passwords (argon2id, for HTTP
// Basic), bearer tokens (only their hash is stored) and SIP digest
// authentication (RFC 3261 §22, RFC 8760 for SHA-256).
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// DefaultMinPasswordLength is the shortest password sealpostd accepts
// unless its --min-password-length says otherwise.
const DefaultMinPasswordLength = 12

// CheckPasswordLength refuses a password of fewer than min characters
// (min <= 0: DefaultMinPasswordLength), saying how long it is and must be.
func CheckPasswordLength(password string, min int) error {
	if min <= 0 {
		min = DefaultMinPasswordLength
	}
	if n := utf8.RuneCountInString(password); n < min {
		return fmt.Errorf("the password has %d characters; it needs at least %d", n, min)
	}
	return nil
}

// Argon2id parameters (RFC 9106 second recommended option, lighter memory):
// 64 MiB would make a burst of logins exhaust a small box, so 19 MiB with 2
// passes, as OWASP recommends.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword returns an argon2id hash in the PHC string format.
func HashPassword(password string) string {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic("auth: no randomness: " + err.Error())
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// dummyHash is checked against when an account does not exist, so that a
// wrong name costs the same time as a wrong password and does not reveal
// which accounts exist.
var dummyHash = HashPassword("sealpost-no-such-account")

// CheckPassword reports whether password matches the PHC hash. An empty hash
// (unknown account) is checked against a dummy hash and always fails, taking
// the same time as a real check.
func CheckPassword(hash, password string) bool {
	known := hash != ""
	if !known {
		hash = dummyHash
	}
	ok, err := verifyArgon2id(hash, password)
	return known && ok && err == nil
}

func verifyArgon2id(phc, password string) (bool, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("auth: not an argon2id hash")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errors.New("auth: unsupported argon2 version")
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, fmt.Errorf("auth: bad argon2 parameters: %w", err)
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, err
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// GeneratePassword returns a random password of 20 characters from an
// alphabet without look-alikes, for `sealpostd user add` without a password.
func GeneratePassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic("auth: no randomness: " + err.Error())
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
