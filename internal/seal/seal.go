// Package seal encrypts message text before it reaches the store, and shreds
// it when it expires.
//
// Each message is sealed with AES-256-GCM under the data key of its expiry
// period (by default one hour of expiry times), with the message id, sender
// and recipient as associated data, so a sealed text cannot be moved to
// another message. Data keys are stored wrapped (AES-256-GCM) by the server
// master key. When every message of a period has expired, DestroyExpired
// deletes the period's data key: from then on that period's text cannot be
// read back, not even from an old copy of the database (crypto-shredding).
//
// The package never reads key files on its own: the caller hands it the
// master key (see LoadOrCreateMasterKey) and a KeyStore.
package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// KeySize is the size of the master key and of every data key.
const KeySize = 32

// ErrKeyDestroyed is returned by Open when the data key of the text's period
// has been destroyed (or never existed): the text is gone for good.
var ErrKeyDestroyed = errors.New("seal: data key destroyed; the text cannot be recovered")

// KeyStore keeps wrapped data keys. store.Store implements it.
type KeyStore interface {
	DataKey(ctx context.Context, period int64) ([]byte, error)
	PutDataKey(ctx context.Context, period int64, wrapped []byte) ([]byte, error)
	DeleteDataKeys(ctx context.Context, before int64) (int, error)
}

// IsNotFound tells the Sealer whether a KeyStore error means "no such key".
// It is set by the caller because seal does not import the store package.
type IsNotFound func(error) bool

// Sealer seals and opens message text.
type Sealer struct {
	master   cipher.AEAD
	keys     KeyStore
	notFound IsNotFound
	period   time.Duration

	mu    sync.Mutex
	cache map[int64]cipher.AEAD // unwrapped data keys by period; guarded by mu
	// destroyedBefore: every period below it has been destroyed by
	// DestroyExpired; a key of such a period is never cached again, so an
	// Open that loaded the key just before it was destroyed cannot leave
	// it usable in memory. Guarded by mu.
	destroyedBefore int64
}

// New returns a Sealer. period is the span of expiry times that share a data
// key; shorter periods shred sooner, longer ones make fewer keys.
func New(masterKey []byte, keys KeyStore, notFound IsNotFound, period time.Duration) (*Sealer, error) {
	if len(masterKey) != KeySize {
		return nil, fmt.Errorf("seal: master key is %d bytes, want %d", len(masterKey), KeySize)
	}
	if period < time.Second {
		return nil, fmt.Errorf("seal: key period %v is shorter than a second", period)
	}
	master, err := newGCM(masterKey)
	if err != nil {
		return nil, err
	}
	return &Sealer{master: master, keys: keys, notFound: notFound, period: period, cache: map[int64]cipher.AEAD{}}, nil
}

// PeriodOf returns the key period that a message expiring at t belongs to.
func (s *Sealer) PeriodOf(t time.Time) int64 {
	return t.Unix() / int64(s.period/time.Second)
}

// Seal encrypts text for the message (id, from, to) that expires at
// expiresAt and returns the period whose key sealed it and the ciphertext.
func (s *Sealer) Seal(ctx context.Context, id, from, to, text string, expiresAt time.Time) (period int64, sealed []byte, err error) {
	period = s.PeriodOf(expiresAt)
	aead, err := s.dataKey(ctx, period, true)
	if err != nil {
		return 0, nil, err
	}
	return period, seal(aead, []byte(text), messageAD(id, from, to)), nil
}

// Open decrypts a text sealed by Seal. It returns ErrKeyDestroyed once the
// period's key has been destroyed.
func (s *Sealer) Open(ctx context.Context, id, from, to string, period int64, sealed []byte) (string, error) {
	aead, err := s.dataKey(ctx, period, false)
	if err != nil {
		return "", err
	}
	plain, err := open(aead, sealed, messageAD(id, from, to))
	if err != nil {
		return "", fmt.Errorf("seal: opening message %s: %w", id, err)
	}
	return string(plain), nil
}

// DestroyExpired destroys the data key of every period that has ended by now,
// that is, every period all of whose messages have expired. The caller must
// have expired those messages first (store.ExpireDue).
func (s *Sealer) DestroyExpired(ctx context.Context, now time.Time) (int, error) {
	before := s.PeriodOf(now) // periods < before ended at or before now
	s.mu.Lock()
	s.destroyedBefore = max(s.destroyedBefore, before)
	for p := range s.cache {
		if p < before {
			delete(s.cache, p)
		}
	}
	s.mu.Unlock()
	return s.keys.DeleteDataKeys(ctx, before)
}

// SealSecret encrypts a small server secret (such as SIP digest HA1 values)
// directly under the master key, bound to the label ad.
func (s *Sealer) SealSecret(plain []byte, ad string) []byte {
	return seal(s.master, plain, []byte("sealpost-secret-v1\x00"+ad))
}

// OpenSecret decrypts what SealSecret sealed with the same label.
func (s *Sealer) OpenSecret(sealed []byte, ad string) ([]byte, error) {
	p, err := open(s.master, sealed, []byte("sealpost-secret-v1\x00"+ad))
	if err != nil {
		return nil, fmt.Errorf("seal: opening secret: %w", err)
	}
	return p, nil
}

func (s *Sealer) dataKey(ctx context.Context, period int64, create bool) (cipher.AEAD, error) {
	s.mu.Lock()
	aead, ok := s.cache[period]
	destroyed := period < s.destroyedBefore
	s.mu.Unlock()
	if ok {
		return aead, nil
	}
	if destroyed && !create {
		return nil, ErrKeyDestroyed
	}
	wrapped, err := s.keys.DataKey(ctx, period)
	switch {
	case err == nil:
	case s.notFound(err) && !create:
		return nil, ErrKeyDestroyed
	case s.notFound(err):
		fresh := make([]byte, KeySize)
		if _, err := rand.Read(fresh); err != nil {
			return nil, err
		}
		// PutDataKey returns whichever key won if another node or
		// goroutine created one at the same time.
		wrapped, err = s.keys.PutDataKey(ctx, period, seal(s.master, fresh, keyAD(period)))
		if err != nil {
			return nil, fmt.Errorf("seal: storing data key: %w", err)
		}
	default:
		return nil, fmt.Errorf("seal: loading data key: %w", err)
	}
	raw, err := open(s.master, wrapped, keyAD(period))
	if err != nil {
		return nil, fmt.Errorf("seal: unwrapping data key of period %d (wrong master key?): %w", period, err)
	}
	aead, err = newGCM(raw)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if period < s.destroyedBefore {
		// DestroyExpired ran while the key was loading: it must not
		// outlive the destruction in the cache.
		if !create {
			return nil, ErrKeyDestroyed
		}
		return aead, nil
	}
	s.cache[period] = aead
	return aead, nil
}

func messageAD(id, from, to string) []byte {
	return []byte("sealpost-msg-v1\x00" + id + "\x00" + from + "\x00" + to)
}

func keyAD(period int64) []byte {
	return binary.BigEndian.AppendUint64([]byte("sealpost-datakey-v1\x00"), uint64(period))
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal returns nonce || ciphertext. Nonces are random: 96 bits is safe for
// the number of messages one data key ever seals.
func seal(aead cipher.AEAD, plain, ad []byte) []byte {
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic("seal: no randomness: " + err.Error()) // crypto/rand never fails on Linux
	}
	return aead.Seal(out, out, plain, ad)
}

func open(aead cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("sealed data too short")
	}
	n := aead.NonceSize()
	return aead.Open(nil, sealed[:n], sealed[n:], ad)
}
