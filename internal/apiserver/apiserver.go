// Package apiserver is the HTTPS API of sealpostd: tokens, message submission
// and message status (see api/ for the contract). It is an adapter: every
// request is authorised against its account and handed to the queue or the
// store.
package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/auth"
	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/loginguard"
	"github.com/sealpost/sealpost/internal/metrics"
	"github.com/sealpost/sealpost/internal/queue"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// MaxBodyBytes bounds a request body. A message is at most 2048 bytes of
// UTF-8, which JSON escaping can grow up to six times, plus the envelope.
const MaxBodyBytes = 16 << 10

// Store is what the API reads and writes itself: accounts and their tokens,
// and the status of a sender's messages. Submissions go through the queue.
type Store interface {
	store.Accounts
	Message(ctx context.Context, from, id string) (store.Message, error)
}

// Options configure the API handler.
type Options struct {
	Store   Store
	Queue   *queue.Queue
	Clock   clock.Clock
	Log     *slog.Logger
	Metrics *metrics.Metrics
	// Guard limits password guessing; the server shares one with the SIP
	// side. Default: a guard of its own with the default settings.
	Guard *loginguard.Guard
	// TokenTTL is how long a bearer token is valid (default 30 days).
	TokenTTL time.Duration
	// Domain and SIPPort are told to clients with their token.
	Domain  string
	SIPPort func() int
	// SetPassword changes an account's password and revokes its tokens
	// (server.SetPassword); nil refuses password changes (see password.go).
	SetPassword func(ctx context.Context, account, password string) error
	// MinPasswordLength is the shortest new password accepted, in
	// characters (0: auth.DefaultMinPasswordLength), as for user passwd.
	MinPasswordLength int
}

// API serves the HTTPS API.
type API struct {
	o Options
	// passwordChecks bounds concurrent argon2id checks, so a burst of
	// logins (or a password-guessing attack) cannot take every core and
	// all memory from message traffic.
	passwordChecks chan struct{}

	// tokens remembers, for tokenCacheTTL, which account a token hash
	// belongs to: a client that keeps submitting then costs one store
	// read every few seconds instead of one per request. A token revoked
	// through this server is forgotten at once; one revoked elsewhere
	// (another node, or "sealpostd user passwd" in another process)
	// keeps working here for at most tokenCacheTTL. Guarded by mu.
	mu     sync.Mutex
	tokens map[string]cachedToken
}

type cachedToken struct {
	account string
	until   time.Time // the earlier of the cache lifetime and the token's expiry
}

// tokenCacheTTL bounds how long a token is trusted without the store.
const tokenCacheTTL = 5 * time.Second

// maxCachedTokens bounds the cache; past it the cache starts over.
const maxCachedTokens = 1 << 16

// New returns the API handler.
func New(o Options) *API {
	if o.TokenTTL == 0 {
		o.TokenTTL = 30 * 24 * time.Hour
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New() // unregistered anywhere: counts go nowhere
	}
	if o.Guard == nil {
		o.Guard = loginguard.New(loginguard.Settings{}, o.Clock, o.Log)
	}
	return &API{o: o, passwordChecks: make(chan struct{}, 4), tokens: map[string]cachedToken{}}
}

// Handler returns the routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.PathTokens, a.createToken)
	mux.HandleFunc("DELETE "+api.PathTokens, a.revokeToken)
	mux.HandleFunc("POST "+api.PathMessages, a.submit)
	mux.HandleFunc("GET "+api.PathMessages+"/{id}", a.status)
	mux.HandleFunc("POST "+api.PathMessageStatus, a.batchStatus) // batchstatus.go
	mux.HandleFunc("POST "+api.PathPassword, a.changePassword)   // password.go
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return securityHeaders(refuseOversized(mux))
}

// refuseOversized answers 413 to a request whose declared body is over
// MaxBodyBytes before anything reads it, so a client waiting on
// "Expect: 100-continue" gets 413 instead of "100 Continue" (net/http sends
// that only when a handler first reads the body).
func refuseOversized(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodyBytes {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// createToken exchanges HTTP Basic credentials for a bearer token.
func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	name, password, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="sealpost", charset="UTF-8"`)
		writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "send the account name and password with HTTP Basic authentication")
		return
	}
	// The attempt is reserved, and counted as a failure, before the slow
	// hash: concurrent guesses cannot race past the limit. A limited
	// attempt checks nothing, so its answer says nothing of the password.
	attempt, wait := a.o.Guard.Reserve(name, r.RemoteAddr, "https")
	if attempt == nil {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		writeError(w, http.StatusTooManyRequests, api.CodeRateLimited,
			fmt.Sprintf("too many failed logins; try again in %d seconds", secs))
		return
	}
	acct, err := a.o.Store.Account(r.Context(), name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
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
	// Unknown accounts are checked against a dummy hash: the answer takes
	// the same time whether or not the account exists.
	valid := auth.CheckPassword(acct.PasswordHash, password)
	<-a.passwordChecks
	attempt.Done(valid)
	if !valid {
		a.o.Log.Debug("token refused: wrong account or password", "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "wrong account name or password")
		return
	}
	token, hash := auth.NewToken()
	now := a.o.Clock.Now()
	t := store.Token{Hash: hash, Account: acct.Name, CreatedAt: now, ExpiresAt: now.Add(a.o.TokenTTL)}
	if err := a.o.Store.AddToken(r.Context(), t); err != nil {
		a.storeFailed(w, "storing token", err)
		return
	}
	res := api.TokenResponse{Token: token, Account: acct.Name, ExpiresAt: t.ExpiresAt.UTC(), Domain: a.o.Domain}
	if a.o.SIPPort != nil {
		res.SIPPort = a.o.SIPPort()
	}
	writeJSON(w, http.StatusCreated, res)
}

// revokeToken deletes the bearer token the request is made with.
func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.authorize(w, r); !ok {
		return
	}
	token, _ := bearer(r)
	hash := auth.HashToken(token)
	a.mu.Lock()
	delete(a.tokens, string(hash))
	a.mu.Unlock()
	if err := a.o.Store.RevokeToken(r.Context(), hash); err != nil && !errors.Is(err, store.ErrNotFound) {
		a.storeFailed(w, "revoking token", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// submit accepts a message: 202 once it is durably stored, 200 for an id
// this sender already used.
func (a *API) submit(w http.ResponseWriter, r *http.Request) {
	from, ok := a.authorize(w, r)
	if !ok {
		return
	}
	start := time.Now()
	var req api.SubmitRequest
	if status, code, msg := decodeJSON(w, r, &req); status != 0 {
		a.refuse(w, status, code, msg)
		return
	}
	switch {
	case req.ID == "":
		a.refuse(w, http.StatusBadRequest, message.CodeInvalidID, `"id" is missing: give each message a UUID`)
		return
	case req.To == "":
		a.refuse(w, http.StatusBadRequest, api.CodeBadRequest, `"to" is missing: name the recipient account`)
		return
	}
	if message.CheckAccount(req.To) != nil {
		a.refuse(w, http.StatusNotFound, api.CodeUnknownRecipient, fmt.Sprintf("no account named %q", req.To))
		return
	}
	m, created, err := a.o.Queue.Submit(r.Context(), queue.Submission{ID: req.ID, From: from, To: req.To, Text: req.Text, Via: "https"})
	var rule *message.RuleError
	switch {
	case err == nil:
	case errors.As(err, &rule) && rule.Code == message.CodeInvalidID:
		a.refuse(w, http.StatusBadRequest, rule.Code, rule.Message)
		return
	case errors.As(err, &rule):
		a.refuse(w, http.StatusUnprocessableEntity, rule.Code, rule.Message)
		return
	case errors.Is(err, queue.ErrUnknownRecipient):
		a.refuse(w, http.StatusNotFound, api.CodeUnknownRecipient, fmt.Sprintf("no account named %q", req.To))
		return
	case errors.Is(err, queue.ErrIDConflict):
		a.refuse(w, http.StatusConflict, api.CodeIDConflict, "you already used this id for a message to someone else; give each message a new UUID")
		return
	case errors.Is(err, queue.ErrMailboxFull):
		a.refuse(w, http.StatusTooManyRequests, api.CodeMailboxFull, fmt.Sprintf("%s has too many messages waiting; try again later", req.To))
		return
	default:
		a.o.Metrics.Refused.WithLabelValues(api.CodeStoreUnavailable).Inc()
		a.storeFailed(w, "storing message", err)
		return
	}
	a.o.Metrics.SubmitLatency.WithLabelValues("https").Observe(time.Since(start).Seconds())
	code := http.StatusAccepted
	if !created {
		code = http.StatusOK
	}
	writeJSON(w, code, api.SubmitResponse{ID: m.ID, Status: string(m.Status), SubmittedAt: m.SubmittedAt.UTC(), ExpiresAt: m.ExpiresAt.UTC()})
}

// status reports a message's fate to its sender; anyone else gets 404, as
// if the id did not exist.
func (a *API) status(w http.ResponseWriter, r *http.Request) {
	from, ok := a.authorize(w, r)
	if !ok {
		return
	}
	m, err := a.o.Store.Message(r.Context(), from, message.NormalizeID(r.PathValue("id")))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, "you sent no message with that id")
		return
	}
	if err != nil {
		a.storeFailed(w, "reading message", err)
		return
	}
	writeJSON(w, http.StatusOK, statusOf(m))
}

// authorize returns the account of the request's bearer token, or answers
// 401 (or 503) and returns false.
func (a *API) authorize(w http.ResponseWriter, r *http.Request) (string, bool) {
	token, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sealpost"`)
		writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "send Authorization: Bearer TOKEN (get one with POST /v1/tokens)")
		return "", false
	}
	hash := auth.HashToken(token)
	now := a.o.Clock.Now()
	a.mu.Lock()
	c, ok := a.tokens[string(hash)]
	a.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.account, true
	}
	t, err := a.o.Store.TokenByHash(r.Context(), hash, now)
	if err == nil {
		until := now.Add(tokenCacheTTL)
		if t.ExpiresAt.Before(until) {
			until = t.ExpiresAt
		}
		a.mu.Lock()
		if len(a.tokens) >= maxCachedTokens {
			clear(a.tokens)
		}
		a.tokens[string(hash)] = cachedToken{account: t.Account, until: until}
		a.mu.Unlock()
	}
	if errors.Is(err, store.ErrNotFound) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sealpost", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "the token is unknown, expired or revoked; log in again")
		return "", false
	}
	if err != nil {
		a.storeFailed(w, "reading token", err)
		return "", false
	}
	return t.Account, true
}

// ForgetAccount drops the cached tokens of an account whose password
// changed or which was deleted through this server.
func (a *API) ForgetAccount(account string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, c := range a.tokens {
		if c.account == account {
			delete(a.tokens, h)
		}
	}
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

func (a *API) refuse(w http.ResponseWriter, status int, code, msg string) {
	a.o.Metrics.Refused.WithLabelValues(code).Inc()
	writeError(w, status, code, msg)
}

func (a *API) storeFailed(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	a.o.Log.Error("store unavailable", "while", what, "err", err)
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, api.CodeStoreUnavailable, "the message store is unavailable and did not confirm the write; send it again with the same id (a retry never makes a duplicate)")
}

// decodeJSON reads a JSON body of at most MaxBodyBytes into v. It returns a
// status code, error code and message for a bad body, or 0. The body is read
// whole before decoding so that an oversized body is always 413, and checked
// for valid UTF-8 because the JSON decoder would silently replace invalid
// bytes with U+FFFD and so change the text a person wrote.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) (int, string, string) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return http.StatusUnsupportedMediaType, api.CodeUnsupportedMediaType, "send the body as application/json"
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes)
		}
		// The error names socket addresses (a read timeout does): say
		// what happened without it.
		return http.StatusBadRequest, api.CodeBadRequest, "the body could not be read whole (cut short or too slow)"
	}
	if !utf8.Valid(body) {
		return http.StatusUnprocessableEntity, message.CodeInvalidUTF8, "the request body is not valid UTF-8"
	}
	if key, dup := duplicateKey(body); dup {
		if len(key) > 64 || !utf8.ValidString(key) {
			key = key[:min(len(key), 64)] + "…"
		}
		return http.StatusBadRequest, api.CodeDuplicateKey, fmt.Sprintf("the key %q appears more than once in one object (keys match whatever their case)", key)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return http.StatusBadRequest, api.CodeBadRequest, "the body is not valid JSON of the expected shape: " + err.Error()
	}
	if _, err := dec.Token(); err != io.EOF {
		return http.StatusBadRequest, api.CodeBadRequest, "the body has data after the JSON object"
	}
	// A lone surrogate escape ("\ud800") decodes to U+FFFD without an
	// error; a U+FFFD the body did not spell out is such a broken escape.
	if req, ok := v.(*api.SubmitRequest); ok && strings.ContainsRune(req.Text, utf8.RuneError) &&
		!bytes.ContainsRune(body, utf8.RuneError) && !bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`)) {
		return http.StatusUnprocessableEntity, message.CodeInvalidUTF8, "the text holds a broken \\u escape (a lone UTF-16 surrogate)"
	}
	return 0, "", ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.ErrorBody{Error: api.Error{Code: code, Message: msg}})
}

// statusOf renders a stored message for GET /v1/messages/{id}.
func statusOf(m store.Message) api.MessageStatus {
	s := api.MessageStatus{ID: m.ID, To: m.To, Status: string(m.Status), SubmittedAt: m.SubmittedAt.UTC(), ExpiresAt: m.ExpiresAt.UTC()}
	if !m.DeliveredAt.IsZero() {
		t := m.DeliveredAt.UTC()
		s.DeliveredAt = &t
	}
	return s
}
