// Package api is the HTTPS contract between a Sealpost client and sealpostd:
// request and response bodies, error codes and the SIP header names that carry
// a message's metadata. Both sides import it, so they cannot drift apart.
package api

import "time"

// Paths of the HTTPS API.
const (
	PathTokens   = "/v1/tokens"
	PathMessages = "/v1/messages"
)

// TokenResponse answers POST /v1/tokens (HTTP Basic account:password).
type TokenResponse struct {
	Token     string    `json:"token"`
	Account   string    `json:"account"`
	ExpiresAt time.Time `json:"expires_at"`
	// Domain is the SIP domain (digest realm) and SIPPort the port of SIP
	// over TLS on the same host, so a client needs only the HTTPS URL.
	Domain  string `json:"domain,omitempty"`
	SIPPort int    `json:"sip_port,omitempty"`
}

// SubmitRequest is the body of POST /v1/messages.
type SubmitRequest struct {
	ID   string `json:"id"`   // UUID chosen by the sending client
	To   string `json:"to"`   // recipient account name
	Text string `json:"text"` // 1 to 160 characters, see package message
}

// SubmitResponse answers POST /v1/messages: 202 when newly enqueued, 200 when
// the id was already known (the status then says where the message stands).
type SubmitResponse struct {
	ID          string    `json:"id"`
	Status      string    `json:"status"`
	SubmittedAt time.Time `json:"submitted_at"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// MessageStatus answers GET /v1/messages/{id}. Status is one of enqueued,
// delivered, expired.
type MessageStatus struct {
	ID          string     `json:"id"`
	To          string     `json:"to"`
	Status      string     `json:"status"`
	SubmittedAt time.Time  `json:"submitted_at"`
	DeliveredAt *time.Time `json:"delivered_at"`
	ExpiresAt   time.Time  `json:"expires_at"`
}

// ErrorBody is the shape of every error answer: {"error":{"code","message"}}.
type ErrorBody struct {
	Error Error `json:"error"`
}

// Error is one refusal: a stable machine code and a sentence for a person.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes that are not message-rule codes (those live in package message).
const (
	CodeBadRequest       = "bad_request"            // 400: body is not the expected JSON
	CodeDuplicateKey     = "duplicate_key"          // 400: a JSON object names a key twice
	CodeUnauthorized     = "unauthorized"           // 401: missing or wrong credentials or token
	CodeForbidden        = "forbidden"              // 403
	CodeNotFound         = "not_found"              // 404: no such message (for this sender)
	CodeUnknownRecipient = "unknown_recipient"      // 404: the "to" account does not exist
	CodeBodyTooLarge     = "body_too_large"         // 413
	CodeMailboxFull      = "recipient_mailbox_full" // 429: recipient has too many pending messages
	CodeRateLimited      = "rate_limited"           // 429
	CodeStoreUnavailable = "store_unavailable"      // 503: the write was not confirmed; retry with the same id
	CodeMethodNotAllowed = "method_not_allowed"     // 405
	// CodeUnsupportedMediaType: 415, the body is not application/json.
	CodeUnsupportedMediaType = "unsupported_media_type"
	// CodeIDConflict: 409, the id was already used by this sender for a
	// message to another recipient.
	CodeIDConflict = "id_conflict"
)

// SIP headers that carry a message's metadata on delivery.
const (
	HeaderMessageID   = "X-Sealpost-Message-Id"
	HeaderSubmittedAt = "X-Sealpost-Submitted-At" // RFC 3339 with nanoseconds, UTC
	// HeaderFeatures is sent by a device at REGISTER; "imdn" asks for
	// delivery reports. Only this header asks: standard phones list
	// message/imdn+xml in Accept for their own chat features, and must
	// never get a Sealpost report they cannot show.
	HeaderFeatures = "X-Sealpost-Features"
)

// ContentTypeIMDN is the body type of a delivery report (RFC 5438).
const ContentTypeIMDN = "message/imdn+xml"
