package api

// Paths of the calls that look after a device's own messages and account.
const (
	// PathMessageStatus answers POST with the status of many messages of
	// the caller's at once (StatusRequest → StatusResponse): a client that
	// was not online refreshes its history in one request.
	PathMessageStatus = "/v1/messages/status"
	// PathPassword changes the caller's password on POST (PasswordRequest
	// → TokenResponse): every token of the account is revoked and a new
	// one is returned for the device that made the change.
	PathPassword = "/v1/account/password"
)

// MaxStatusIDs bounds the ids of one StatusRequest.
const MaxStatusIDs = 100

// StatusRequest is the body of POST /v1/messages/status: 1 to
// MaxStatusIDs ids of messages the caller sent.
type StatusRequest struct {
	IDs []string `json:"ids"`
}

// StatusResponse answers POST /v1/messages/status: the status of each id
// the caller sent, in the order asked, and the ids the server does not
// know from the caller (never sent by them, or deleted with an account).
type StatusResponse struct {
	Messages []MessageStatus `json:"messages"`
	Unknown  []string        `json:"unknown"`
}

// PasswordRequest is the body of POST /v1/account/password, made with the
// device's bearer token: the current password (a stolen token alone cannot
// change it) and the new one.
type PasswordRequest struct {
	Password    string `json:"password"`
	NewPassword string `json:"new_password"`
}

// CodeWeakPassword: 422, the new password does not meet the server's rule.
const CodeWeakPassword = "weak_password"
