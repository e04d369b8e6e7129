package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// tokenPrefix makes a leaked token easy to recognise (secret scanners) and
// to tell apart from a password.
const tokenPrefix = "spt_"

// NewToken returns a fresh bearer token and the hash to store. The token
// itself is shown to the client once and never stored.
func NewToken() (token string, hash []byte) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("auth: no randomness: " + err.Error())
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token)
}

// HashToken returns the stored form of a token. Tokens carry 256 bits of
// randomness, so a plain SHA-256 is enough: there is nothing to brute-force.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}
