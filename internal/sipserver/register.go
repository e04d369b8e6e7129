package sipserver

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/auth"
	"github.com/sealpost/sealpost/internal/loginguard"
	"github.com/sealpost/sealpost/internal/registrar"
)

// onRegister handles REGISTER (RFC 3261 §10.3): authenticate with digest,
// check that the account registers its own address of record, then bind it
// to the connection the request arrived on.
func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	account, ok := s.authenticate(req, tx, "Authorization", 401, "WWW-Authenticate")
	if !ok {
		return
	}
	to := req.To()
	if to == nil || to.Address.User != account || !s.isOurDomain(to.Address.Host) {
		s.o.Log.Info("register refused: not the account's own address", "account", account, "source", req.Source())
		s.respond(tx, req, 403, "Forbidden: you may register only sip:"+account+"@"+s.o.Domain)
		return
	}

	contact := req.Contact()
	expires, ok := s.requestedExpiry(req, contact)
	if !ok {
		s.respond(tx, req, 400, "Bad Request: unreadable Expires")
		return
	}
	source := req.Source()
	if expires == 0 || (contact != nil && contact.Address.Wildcard) {
		// Un-REGISTER (RFC 3261 §10.2.2).
		s.o.Registrar.Unregister(account, source)
		s.o.Log.Info("device unregistered", "account", account, "source", source)
		s.respond(tx, req, 200, "OK")
		return
	}
	if contact == nil {
		// A query for the current bindings (RFC 3261 §10.2.3).
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		if b, ok := s.o.Registrar.Lookup(account); ok {
			res.AppendHeader(sip.NewHeader("Contact", "<"+b.Contact+">;expires="+strconv.Itoa(int(b.Expires.Sub(s.o.Clock.Now()).Seconds()))))
		}
		_ = tx.Respond(res)
		return
	}
	if expires < s.o.MinExpires {
		s.respond(tx, req, 423, "Interval Too Brief",
			sip.NewHeader("Min-Expires", strconv.Itoa(int(s.o.MinExpires/time.Second))))
		return
	}
	if expires > s.o.MaxExpires {
		expires = s.o.MaxExpires
	}

	b := registrar.Binding{
		Account: account,
		Source:  source,
		Contact: contact.Address.String(),
		IMDN:    wantsReports(req),
	}
	if old, replaced := s.o.Registrar.Register(b, expires); replaced {
		s.o.Log.Info("device replaced by a new registration", "account", account, "old_source", old.Source)
	}
	s.o.Log.Info("device registered", "account", account, "source", source, "expires", expires, "reports", b.IMDN)

	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	secs := strconv.Itoa(int(expires / time.Second))
	res.AppendHeader(sip.NewHeader("Contact", "<"+b.Contact+">;expires="+secs))
	res.AppendHeader(sip.NewHeader("Expires", secs))
	if wantsOutbound(req, contact) {
		s.flowStarted(source, s.o.FlowTimer)
		res.AppendHeader(sip.NewHeader("Require", "outbound"))
		res.AppendHeader(sip.NewHeader("Flow-Timer", strconv.Itoa(int(s.o.FlowTimer/time.Second))))
	}
	if err := tx.Respond(res); err != nil {
		s.o.Log.Debug("register response not sent", "err", err)
	}
}

// requestedExpiry reads the expiry a REGISTER asks for: the Contact's expires
// parameter, else the Expires header, else the default.
func (s *Server) requestedExpiry(req *sip.Request, contact *sip.ContactHeader) (time.Duration, bool) {
	if contact != nil && contact.Params != nil {
		if v, ok := contact.Params.Get("expires"); ok {
			n, err := strconv.Atoi(v)
			return time.Duration(n) * time.Second, err == nil && n >= 0
		}
	}
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		return time.Duration(n) * time.Second, err == nil && n >= 0
	}
	return s.o.DefaultExpires, true
}

// wantsReports tells whether the registering device asked for delivery
// reports, with the header X-Sealpost-Features: imdn. Plain SIP phones never
// send it, so they never get a report they could not show.
func wantsReports(req *sip.Request) bool {
	for _, h := range req.GetHeaders(api.HeaderFeatures) {
		for _, f := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(f), "imdn") {
				return true
			}
		}
	}
	return false
}

// authenticate verifies digest credentials in the named header. On failure
// it answers the request (a challenge, stale or not) and returns false.
func (s *Server) authenticate(req *sip.Request, tx sip.ServerTransaction, credHeader string, challengeCode int, challengeHeader string) (string, bool) {
	var cred string
	if h := req.GetHeader(credHeader); h != nil {
		cred = h.Value()
	}
	var attempt *loginguard.Attempt
	if cred != "" {
		// Reserve before checking (see loginguard): a limited attempt gets
		// 503 with Retry-After, whatever its password, and checks nothing.
		user, _ := auth.CredentialsUser(cred)
		var wait time.Duration
		if attempt, wait = s.o.Guard.Reserve(user, req.Source(), "sip"); attempt == nil {
			secs := int((wait + time.Second - 1) / time.Second)
			s.respond(tx, req, 503, "Service Unavailable: too many failed logins",
				sip.NewHeader("Retry-After", strconv.Itoa(secs)))
			return "", false
		}
	}
	account, err := s.digest.Verify(string(req.Method), cred, func(user string) (auth.SIPSecrets, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return s.o.Secrets(ctx, user)
	})
	stale := errors.Is(err, auth.ErrStaleNonce)
	if attempt != nil {
		if stale {
			attempt.Cancel()
		} else {
			attempt.Done(err == nil)
		}
	}
	if err == nil {
		s.authenticated(req.Source())
		return account, true
	}
	if !errors.Is(err, auth.ErrNoCredentials) && !stale {
		s.o.Log.Debug("sip authentication failed", "method", string(req.Method), "source", req.Source(), "err", err)
	}
	reason := "Unauthorized"
	if challengeCode == 407 {
		reason = "Proxy Authentication Required"
	}
	hdrs := []sip.Header{}
	for _, c := range s.digest.Challenges(stale, challengeAlgorithms(req)...) {
		hdrs = append(hdrs, sip.NewHeader(challengeHeader, c))
	}
	s.respond(tx, req, challengeCode, reason, hdrs...)
	return "", false
}

// isOurDomain accepts the configured domain and, since phones are often set
// up with the server's address instead of a name, any IP literal: one
// server serves one domain, so the user part alone names the account.
func (s *Server) isOurDomain(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.EqualFold(host, s.o.Domain) || net.ParseIP(host) != nil
}

// md5OnlyAgents are User-Agent prefixes of phones that give up when a 401
// offers any algorithm besides MD5, even next to an MD5 challenge: baresip
// 1.x (libre 1.1) answers "Function not implemented" and never registers.
// RFC 8760 §2.4 lets a server offer several challenges; these phones read
// only the first and refuse it, so they are offered MD5 alone. The TLS
// connection carries the exchange either way.
var md5OnlyAgents = []string{"baresip v0.", "baresip v1."}

// challengeAlgorithms picks the digest algorithms to offer a request's
// sender: nil for the default (SHA-256 and MD5).
func challengeAlgorithms(req *sip.Request) []string {
	h := req.GetHeader("User-Agent")
	if h == nil {
		return nil
	}
	for _, prefix := range md5OnlyAgents {
		if strings.HasPrefix(h.Value(), prefix) {
			return []string{"MD5"}
		}
	}
	return nil
}

// wantsOutbound reports whether a REGISTER asks for RFC 5626 outbound: a
// Contact with reg-id and "outbound" in Supported (§5.2). The registrar
// then answers with Require: outbound and a Flow-Timer (§6), which tells
// the phone to send CRLF keepalives on its connection at that interval.
func wantsOutbound(req *sip.Request, contact *sip.ContactHeader) bool {
	if contact == nil || contact.Params == nil {
		return false
	}
	if _, ok := contact.Params.Get("reg-id"); !ok {
		return false
	}
	for _, h := range req.GetHeaders("Supported") {
		for _, opt := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(opt), "outbound") {
				return true
			}
		}
	}
	return false
}
