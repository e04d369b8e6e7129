package sipserver

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/queue"
	"github.com/sealpost/sealpost/message"
)

// sipMessageIDs derives a message id for a MESSAGE that carries none (a plain
// SIP phone): the same Call-ID and CSeq from the same account give the same
// id, so a phone's retransmission or retry is the same message, never a
// duplicate.
var sipMessageIDs = uuid.MustParse("6f1c7a52-4d0e-4c55-9d38-2b8e7c0f1a11")

// onMessage accepts a message submitted over SIP (RFC 3428). The sender is
// the account registered on this connection, or one that authenticates with
// digest. The answer is 202 Accepted: stored, not yet delivered.
func (s *Server) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	account, ok := s.o.Registrar.AccountOn(req.Source())
	if !ok {
		if account, ok = s.authenticate(req, tx, "Proxy-Authorization", 407, "Proxy-Authenticate"); !ok {
			return
		}
	}
	if from := req.From(); from == nil || from.Address.User != account {
		s.refuse(tx, req, api.CodeForbidden, 403, "Forbidden: From must be sip:"+account+"@"+s.o.Domain)
		return
	}
	to := req.Recipient.User
	if to == "" || !s.isOurDomain(req.Recipient.Host) {
		s.refuse(tx, req, api.CodeUnknownRecipient, 404, "Not Found: no such account")
		return
	}
	if ct := req.ContentType(); ct != nil && isIMDN(ct.Value()) {
		// A phone's own delivery notification for a message it received
		// (linphone sends one for each). The server already knows the
		// delivery from the phone's 200, so it is taken and dropped;
		// refusing it would make the phone send it again at every start.
		s.respond(tx, req, 200, "OK")
		return
	}
	if ct := req.ContentType(); ct == nil || !isTextPlain(ct.Value()) {
		s.refuse(tx, req, api.CodeUnsupportedMediaType, 415, "Unsupported Media Type", sip.NewHeader("Accept", "text/plain"))
		return
	}
	if cs := charsetOf(req.ContentType().Value()); cs != "" && !strings.EqualFold(cs, "utf-8") {
		s.refuse(tx, req, api.CodeUnsupportedMediaType, 415, "Unsupported Media Type: charset must be UTF-8", sip.NewHeader("Accept", "text/plain;charset=utf-8"))
		return
	}

	id := ""
	if h := req.GetHeader(api.HeaderMessageID); h != nil {
		id = strings.TrimSpace(h.Value())
	} else {
		id = uuid.NewSHA1(sipMessageIDs, []byte(account+"\x00"+req.CallID().Value()+"\x00"+req.CSeq().Value())).String()
	}
	if err := message.CheckAccount(to); err != nil {
		s.refuse(tx, req, api.CodeUnknownRecipient, 404, "Not Found: no such account")
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, _, err := s.o.Queue.Submit(ctx, queue.Submission{ID: id, From: account, To: to, Text: string(req.Body()), Via: "sip"})
	var rule *message.RuleError
	switch {
	case err == nil:
		if s.o.Metrics != nil {
			s.o.Metrics.SubmitLatency.WithLabelValues("sip").Observe(time.Since(start).Seconds())
		}
		s.respond(tx, req, 202, "Accepted", sip.NewHeader(api.HeaderMessageID, id))
	case errors.As(err, &rule) && rule.Code == message.CodeTooLong, errors.As(err, &rule) && rule.Code == message.CodeTooManyBytes:
		s.refuse(tx, req, rule.Code, 413, "Request Entity Too Large: "+rule.Message)
	case errors.As(err, &rule):
		s.refuse(tx, req, rule.Code, 488, "Not Acceptable Here: "+rule.Message)
	case errors.Is(err, queue.ErrUnknownRecipient):
		s.refuse(tx, req, api.CodeUnknownRecipient, 404, "Not Found: no such account")
	case errors.Is(err, queue.ErrIDConflict):
		s.refuse(tx, req, api.CodeIDConflict, 409, "Conflict: message id already used for another recipient")
	case errors.Is(err, queue.ErrMailboxFull):
		s.refuse(tx, req, api.CodeMailboxFull, 486, "Busy Here: recipient mailbox full")
	default:
		s.o.Log.Error("sip submission not stored", "from", account, "err", err)
		s.refuse(tx, req, api.CodeStoreUnavailable, 503, "Service Unavailable: message not stored", sip.NewHeader("Retry-After", "5"))
	}
}

func isIMDN(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mt), api.ContentTypeIMDN)
}

func isTextPlain(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/plain")
}

func charsetOf(contentType string) string {
	_, params, _ := strings.Cut(contentType, ";")
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "charset") {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

// refuse answers a submission that is not accepted and counts it, by the
// same reason codes as the HTTPS API, in sealpost_messages_refused_total.
func (s *Server) refuse(tx sip.ServerTransaction, req *sip.Request, reason string, code int, phrase string, hdrs ...sip.Header) {
	if s.o.Metrics != nil {
		s.o.Metrics.Refused.WithLabelValues(reason).Inc()
	}
	s.respond(tx, req, code, phrase, hdrs...)
}
