package message

// Status is where a message stands. The server knows Enqueued, Delivered and
// Expired; the client adds Sending (still in its own queue) and Error (refused,
// expired in the client queue, or expired on the server).
type Status string

const (
	Sending   Status = "sending"
	Enqueued  Status = "enqueued"
	Delivered Status = "delivered"
	Expired   Status = "expired"
	Error     Status = "error"
)

// Final reports whether no further change of status can happen.
func (s Status) Final() bool { return s == Delivered || s == Expired || s == Error }
