package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sealpost/sealpost/internal/auth"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// ErrNoAccount is returned for an account that does not exist.
var ErrNoAccount = errors.New("no such account")

// AddUser creates an account with the password (argon2id for HTTPS, sealed
// digest secrets for SIP).
func (s *Server) AddUser(ctx context.Context, name, password string) error {
	if err := message.CheckAccount(name); err != nil {
		return err
	}
	if password == "" {
		return errors.New("the password is empty")
	}
	a := store.Account{Name: name, PasswordHash: auth.HashPassword(password), SIPSecrets: s.sealSecrets(name, password), CreatedAt: s.o.Clock.Now()}
	if err := s.store.CreateAccount(ctx, a); err != nil {
		if errors.Is(err, store.ErrExists) {
			return fmt.Errorf("account %q already exists", name)
		}
		return err
	}
	return nil
}

// SetPassword replaces an account's password and revokes its tokens.
func (s *Server) SetPassword(ctx context.Context, name, password string) error {
	if password == "" {
		return errors.New("the password is empty")
	}
	err := s.store.SetPassword(ctx, name, auth.HashPassword(password), s.sealSecrets(name, password))
	s.forget(name)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %q", ErrNoAccount, name)
	}
	return err
}

// DeleteUser removes an account with its tokens and messages. The
// messages waiting for it fail first, each with a failure report to its
// sender (logged by id and accounts); it returns their keys, so that the
// running server can send the reports to senders who are online
// (DisconnectDeleted).
func (s *Server) DeleteUser(ctx context.Context, name string) ([]store.Key, error) {
	if _, err := s.store.Account(ctx, name); errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrNoAccount, name)
	}
	var failed []store.Key
	if f, ok := s.store.(store.MailboxFailer); ok {
		var err error
		if failed, err = f.FailMailbox(ctx, name, s.o.Clock.Now()); err != nil {
			return nil, err
		}
		for _, k := range failed {
			s.log.Info("message failed: its recipient was deleted", "id", k.ID, "from", k.From, "to", name)
		}
	}
	err := s.store.DeleteAccount(ctx, name)
	s.forget(name)
	if errors.Is(err, store.ErrNotFound) {
		return failed, fmt.Errorf("%w: %q", ErrNoAccount, name)
	}
	return failed, err
}

// Users lists the accounts.
func (s *Server) Users(ctx context.Context) ([]store.Account, error) {
	return s.store.Accounts(ctx)
}

// Messages lists messages for the operator, without their text.
func (s *Server) Messages(ctx context.Context, f store.MessageFilter) ([]store.Message, error) {
	return s.store.Messages(ctx, f)
}

// forget drops what a running server caches about an account (its tokens,
// its existence as a recipient) after the account changed here. A change
// made by another process reaches the caches within their few seconds.
func (s *Server) forget(name string) {
	if s.api != nil {
		s.api.ForgetAccount(name)
	}
	if s.queue != nil {
		s.queue.Forget(name)
	}
}

func (s *Server) sealSecrets(name, password string) []byte {
	return s.sealer.SealSecret(auth.ComputeSIPSecrets(name, s.o.Domain, password).Marshal(), "sip:"+name)
}

// AddUsers creates many accounts that share one password, for load tests
// and bulk provisioning: the argon2id hash is computed once (a hash per
// account would take minutes for thousands), and the accounts are written
// concurrently so the store commits them in large groups. Accounts that
// already exist are left as they are. It returns how many it created.
func (s *Server) AddUsers(ctx context.Context, names []string, password string) (int, error) {
	if password == "" {
		return 0, errors.New("the password is empty")
	}
	for _, name := range names {
		if err := message.CheckAccount(name); err != nil {
			return 0, err
		}
	}
	hash := auth.HashPassword(password)
	var (
		mu       sync.Mutex
		created  int
		firstErr error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	for w := 0; w < min(64, len(names)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(names) || ctx.Err() != nil {
					return
				}
				a := store.Account{Name: names[i], PasswordHash: hash, SIPSecrets: s.sealSecrets(names[i], password), CreatedAt: s.o.Clock.Now()}
				err := s.store.CreateAccount(ctx, a)
				mu.Lock()
				switch {
				case err == nil:
					created++
				case errors.Is(err, store.ErrExists):
				case firstErr == nil:
					firstErr = fmt.Errorf("creating account %q: %w", names[i], err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return created, firstErr
	}
	return created, ctx.Err()
}
