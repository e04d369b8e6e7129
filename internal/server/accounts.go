package server

import (
	"context"
	"errors"
	"fmt"

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
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %q", ErrNoAccount, name)
	}
	return err
}

// DeleteUser removes an account with its tokens and waiting messages.
func (s *Server) DeleteUser(ctx context.Context, name string) error {
	err := s.store.DeleteAccount(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %q", ErrNoAccount, name)
	}
	return err
}

// Users lists the accounts.
func (s *Server) Users(ctx context.Context) ([]store.Account, error) {
	return s.store.Accounts(ctx)
}

// Messages lists messages for the operator, without their text.
func (s *Server) Messages(ctx context.Context, f store.MessageFilter) ([]store.Message, error) {
	return s.store.Messages(ctx, f)
}

func (s *Server) sealSecrets(name, password string) []byte {
	return s.sealer.SealSecret(auth.ComputeSIPSecrets(name, s.o.Domain, password).Marshal(), "sip:"+name)
}
