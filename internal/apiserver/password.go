package apiserver

import (
	"fmt"
	"net/http"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/auth"
	"github.com/sealpost/sealpost/internal/store"
)

// changePassword answers POST /v1/account/password: with the device's
// token and the current password, it sets a new password (argon2id for
// HTTPS and new SIP digest secrets, through Options.SetPassword), which
// revokes every token of the account, and returns a new token for the
// device that asked, so it stays logged in while the others must log in
// again.
func (a *API) changePassword(w http.ResponseWriter, r *http.Request) {
	name, ok := a.authorize(w, r)
	if !ok {
		return
	}
	if a.o.SetPassword == nil {
		writeError(w, http.StatusNotFound, api.CodeNotFound, "this server does not change passwords over the API; ask the operator (sealpostd user passwd)")
		return
	}
	var req api.PasswordRequest
	if status, code, msg := decodeJSON(w, r, &req); status != 0 {
		a.refuse(w, status, code, msg)
		return
	}
	if req.NewPassword == "" {
		a.refuse(w, http.StatusUnprocessableEntity, api.CodeWeakPassword, `"new_password" is empty`)
		return
	}
	if err := auth.CheckPasswordLength(req.NewPassword, a.o.MinPasswordLength); err != nil {
		a.refuse(w, http.StatusUnprocessableEntity, api.CodeWeakPassword, err.Error())
		return
	}
	// The current password is checked like a login: reserved with the
	// guard before the slow hash, so a stolen token cannot guess it fast.
	attempt, wait := a.o.Guard.Reserve(name, r.RemoteAddr, "https")
	if attempt == nil {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		writeError(w, http.StatusTooManyRequests, api.CodeRateLimited, fmt.Sprintf("too many wrong passwords; try again in %d seconds", secs))
		return
	}
	acct, err := a.o.Store.Account(r.Context(), name)
	if err != nil {
		attempt.Cancel()
		a.storeFailed(w, "reading account", err)
		return
	}
	select {
	case a.passwordChecks <- struct{}{}:
	case <-r.Context().Done():
		attempt.Cancel()
		return
	}
	valid := auth.CheckPassword(acct.PasswordHash, req.Password)
	<-a.passwordChecks
	attempt.Done(valid)
	if !valid {
		a.o.Log.Info("password change refused: wrong current password", "account", name, "remote", r.RemoteAddr)
		writeError(w, http.StatusForbidden, api.CodeForbidden, "the current password is wrong")
		return
	}
	if err := a.o.SetPassword(r.Context(), name, req.NewPassword); err != nil {
		a.storeFailed(w, "setting password", err)
		return
	}
	a.o.Log.Info("password changed; every token of the account revoked", "account", name, "remote", r.RemoteAddr)
	token, hash := auth.NewToken()
	now := a.o.Clock.Now()
	t := store.Token{Hash: hash, Account: name, CreatedAt: now, ExpiresAt: now.Add(a.o.TokenTTL)}
	if err := a.o.Store.AddToken(r.Context(), t); err != nil {
		a.storeFailed(w, "storing token", err)
		return
	}
	res := api.TokenResponse{Token: token, Account: name, ExpiresAt: t.ExpiresAt.UTC(), Domain: a.o.Domain}
	if a.o.SIPPort != nil {
		res.SIPPort = a.o.SIPPort()
	}
	writeJSON(w, http.StatusOK, res)
}
