package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/sealpost/sealpost/message"
)

// ErrLoggedOut: the profile has no token (after Logout).
var ErrLoggedOut = errors.New("logged out: run sealpost login")

// LoggedIn reports whether the profile holds a token.
func (c *Core) LoggedIn() bool { return c.prof.Token != "" }

// Logout revokes the device's token on the server (DELETE /v1/tokens) and
// removes it and the SIP digest secrets from the profile. The messages
// stay; logging in again as the same account shows them. A token the
// server no longer knows (401) counts as revoked.
func (c *Core) Logout(ctx context.Context) error {
	if !c.LoggedIn() {
		return ErrLoggedOut
	}
	if err := c.api.revoke(ctx); err != nil {
		var se *serverError
		if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
			return fmt.Errorf("revoke the token on the server (nothing changed here; try again): %w", err)
		}
	}
	p := c.prof
	p.Token, p.HA1MD5, p.HA1SHA256 = "", "", ""
	if err := writeProfile(c.home, p); err != nil {
		return err
	}
	c.prof = p
	c.api.bearer = ""
	return nil
}

// ChangePassword sets a new password for the account (POST
// /v1/account/password, with the current one). The server revokes every
// token of the account and gives this device a new one; the profile keeps
// it and the new SIP digest secrets. Other devices must log in again, and
// a `sealpost run` of this profile must be restarted to register with the
// new secrets.
func (c *Core) ChangePassword(ctx context.Context, current, next string) error {
	if !c.LoggedIn() {
		return ErrLoggedOut
	}
	if next == "" {
		return errors.New("the new password is empty")
	}
	tok, err := c.api.changePassword(ctx, current, next)
	if err != nil {
		return err
	}
	p := c.prof
	p.Token, p.ExpiresAt = tok.Token, tok.ExpiresAt
	p.HA1MD5 = ha1(md5hex, p.Account, p.Domain, next)
	p.HA1SHA256 = ha1(sha256hex, p.Account, p.Domain, next)
	if err := writeProfile(c.home, p); err != nil {
		return fmt.Errorf("the server changed the password, but the profile could not keep the new token (log in again): %w", err)
	}
	c.prof = p
	c.api.bearer = tok.Token
	return nil
}

// Resend sends again, as a new message with a new id, the text of an
// outgoing message that ended in Error (refused, given up after 12 h, or
// expired on the server). The old one stays in the history as it was.
func (c *Core) Resend(ctx context.Context, idOrPrefix string) (Message, error) {
	id, err := c.resolveID(ctx, idOrPrefix)
	if err != nil {
		return Message{}, err
	}
	r, err := c.db.outgoing(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Message{}, fmt.Errorf("%s is not a message you sent", idOrPrefix)
	}
	if err != nil {
		return Message{}, err
	}
	switch {
	case r.Status != message.Error:
		return Message{}, fmt.Errorf("message %s is %s, not Error: only a message that failed is sent again", id, StatusMark(r.Status))
	case r.Erased:
		return Message{}, fmt.Errorf("the text of message %s was erased at the end of its validity; there is nothing to send again", id)
	}
	return c.Send(ctx, r.Peer, r.Text)
}

// Forget deletes the whole conversation with peer from this device,
// messages waiting in the outbox included (they are not sent). Texts are
// overwritten in the store (secure_delete) and the WAL is checkpointed,
// as for erasure. It returns how many messages were deleted.
func (c *Core) Forget(ctx context.Context, peer string) (int64, error) {
	peer = NormalizeAccount(peer)
	if err := message.CheckAccount(peer); err != nil {
		return 0, err
	}
	res, err := c.db.sql.ExecContext(ctx, "DELETE FROM messages WHERE peer = ?", peer)
	if err != nil {
		return 0, fmt.Errorf("forget %s: %w", peer, err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		if err := c.db.checkpoint(ctx); err != nil {
			c.sweeper.mu.Lock()
			c.sweeper.dirty = true
			c.sweeper.mu.Unlock()
			c.sweeper.kick()
		}
	}
	return n, nil
}
