// Package store defines where sealpostd keeps accounts, tokens, sealed
// messages, delivery reports and wrapped data keys, and the guarantees every
// backend gives. The embedded SQLite backend lives in store/sqlite, the
// PostgreSQL backend in store/postgres; every backend must pass the
// conformance suite in store/storetest (Run, and RunShared for two handles
// on one database).
//
// Life cycle of a message in the store: Submit writes it durably (status
// enqueued) and only then returns; the delivery scheduler lists the Pending
// messages that are due per recipient in submission order, records each
// attempt before making it (RecordAttempts), and finally either
// MarkDeliveredAll (sealed text deleted, a "delivered" report queued for the
// sender, in one transaction) or ExpireDue (status expired, sealed text
// deleted, a "failed" report queued). The status row stays so the sender
// and the operator can see the fate.
//
// The store is the schedule (mox's queue): a message's attempt count, the
// time before which it must not be tried again (NextAttempt) and whether
// it has used up its retry budget (Parked) are columns of the message, so a
// restart, a crash or another node reads back exactly what the last one
// decided. Pending lists only what is due: enqueued, not parked, and
// NextAttempt at or before the time asked for. A registration makes the
// recipient's unparked messages due at once (Reschedule); a parked message
// is never listed again and waits, sealed, for ExpireDue and its failure
// report. Nothing in memory owns any of it.
//
// The contract every backend keeps, whatever number of handles, processes
// or nodes write to one database at once:
//
//   - Per-recipient order: a recipient's messages are listed (Pending) in
//     the order their submissions committed. A message's Seq is larger than
//     that of every message for the same recipient committed before it, so
//     a delivery run that lists after the last Seq it has taken never misses
//     one that commits later. (Sequences alone do not give this when
//     transactions commit concurrently; see store/postgres.)
//   - Idempotency: (From, ID) names one message. Any number of concurrent
//     Submits of it, through any handles, store it once; exactly one is
//     answered created=true and all get the same Seq.
//   - Durability: a method that returned nil has committed its write to
//     disk (SQLite: the WAL is fsynced; PostgreSQL: synchronous_commit on).
//   - Unknown outcome: a store sentinel error (ErrNotFound, ErrExists,
//     ErrMailboxFull) means nothing was written. Any other error, including
//     one after the caller's context ended, may follow a commit that
//     happened (a network COMMIT whose answer was lost): the caller must not
//     assume the write was made, nor that it was not. Retrying Submit with
//     the same (From, ID) is always safe and tells which; the other writes
//     are safe to repeat (a repeated mark or attempt answers ErrNotFound or
//     rewrites the same values).
package store

import (
	"context"
	"errors"
	"time"

	"github.com/sealpost/sealpost/message"
)

// Errors returned by Store methods; each means nothing was written. Any other
// error is a temporary failure of the backend (disk, connection) whose write
// may or may not have been made (see "Unknown outcome" above).
var (
	// ErrNotFound: no such account, token, message or key.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: the account already exists.
	ErrExists = errors.New("store: already exists")
	// ErrMailboxFull: the recipient already has the maximum number of
	// pending messages; nothing was written.
	ErrMailboxFull = errors.New("store: recipient mailbox full")
)

// Account is a user of the server.
type Account struct {
	Name string
	// PasswordHash is the argon2id hash (PHC string) used for HTTP Basic.
	PasswordHash string
	// SIPSecrets holds the sealed digest HA1 values (MD5 and SHA-256 of
	// name:realm:password) used to verify SIP digest authentication. They
	// are password-equivalent for SIP, so they are stored sealed.
	SIPSecrets []byte
	CreatedAt  time.Time
}

// Token is a bearer token. Only the SHA-256 hash of the token is stored.
type Token struct {
	Hash      []byte
	Account   string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Key names a message: its sender and the id the sender gave it.
type Key struct {
	From, ID string
}

// Attempt is the delivery bookkeeping of one message, as RecordAttempts
// stores it: every field replaces the stored one.
type Attempt struct {
	Key
	Attempts  int
	Next      time.Time // the message is not due before it (zero: due now)
	LastError string
	// Parked: the message has used up its retry budget. Pending never
	// lists it again; it waits for ExpireDue (and its failure report).
	Parked bool
}

// Message is one stored message. Sealed and KeyPeriod are empty once the
// message is delivered or expired.
type Message struct {
	ID          string         // chosen by the sending client; unique per sender
	From, To    string         // account names
	Seq         int64          // assigned by the store at Submit; orders messages
	Sealed      []byte         // AEAD ciphertext of the text (see package seal)
	KeyPeriod   int64          // which data key sealed it
	Status      message.Status // enqueued, delivered or expired
	SubmittedAt time.Time
	ExpiresAt   time.Time
	DeliveredAt time.Time // zero unless delivered

	// Delivery bookkeeping, written before each attempt (see Attempt).
	Attempts    int
	NextAttempt time.Time // zero: as soon as the recipient is online
	LastError   string
	Parked      bool // retry budget used up: never listed by Pending

	// PendingBefore is set by Submit when it stores a new message and
	// WantPendingBefore was set: how many other messages were enqueued for
	// To at that moment, in the same transaction. 0 means none older can
	// be waiting, so the queue may deliver this one without listing the
	// recipient's mailbox. Neither field is stored; PendingBefore is zero
	// in every other result. (Asking costs the SQLite backend ~5 % of its
	// store rate, so only a caller that will use it asks.)
	PendingBefore     int
	WantPendingBefore bool
}

// Report is a delivery report waiting to be forwarded to the sender of a
// message: Status is message.Delivered or message.Expired.
type Report struct {
	Seq       int64  // assigned by the store; orders reports
	To        string // the account that sent the original message
	MessageID string
	Recipient string // the account the original message was for
	Status    message.Status
	At        time.Time // when it was delivered or expired
	ExpiresAt time.Time // reports wait as long as messages do
}

// MailboxFailer is implemented by every backend (the conformance suite
// checks it). The operator's `user del` calls it before DeleteAccount.
type MailboxFailer interface {
	// FailMailbox marks every enqueued message to the account from
	// another account expired, deletes its sealed text and queues an
	// Expired report for its sender (At = at, kept as long as the message
	// would have been), in one transaction, and returns their keys in
	// submission order.
	FailMailbox(ctx context.Context, to string, at time.Time) ([]Key, error)
}

// MessageFilter selects messages for the operator's listing.
type MessageFilter struct {
	Account string         // From or To equals it; empty for all
	Status  message.Status // empty for all
	Limit   int            // 0 for a default of 100
}

// Store is implemented by every storage backend: every role below, the
// operator's listing, and the backend's life cycle. All methods are safe for
// concurrent use. A method that returns nil has made its write durable (the
// transaction is committed and synced), unless its doc says otherwise.
// Adapters take the roles they use, not the whole Store.
type Store interface {
	Accounts
	Submissions
	Schedule
	Reports
	Keys

	// Messages lists messages for the operator, newest first, never with
	// their sealed text.
	Messages(ctx context.Context, f MessageFilter) ([]Message, error)
	// Ping reports whether the backend can serve (for /readyz).
	Ping(ctx context.Context) error
	Close() error
}

// Accounts keeps accounts and their API tokens (the HTTPS API, the account
// commands).
type Accounts interface {
	// CreateAccount adds an account; ErrExists if the name is taken.
	CreateAccount(ctx context.Context, a Account) error
	// Account returns the named account or ErrNotFound.
	Account(ctx context.Context, name string) (Account, error)
	// Accounts lists all accounts ordered by name.
	Accounts(ctx context.Context) ([]Account, error)
	// DeleteAccount removes the account, its tokens and its pending
	// messages and reports (to and from it); ErrNotFound if absent. It
	// keeps the Expired reports about messages to it that other accounts
	// sent (FailMailbox queues them): they belong to their senders.
	DeleteAccount(ctx context.Context, name string) error
	// SetPassword replaces the password hash and SIP secrets and revokes
	// every token of the account; ErrNotFound if absent.
	SetPassword(ctx context.Context, name, passwordHash string, sipSecrets []byte) error

	// AddToken stores a token hash.
	AddToken(ctx context.Context, t Token) error
	// TokenByHash returns the unexpired token with that hash, or ErrNotFound.
	TokenByHash(ctx context.Context, hash []byte, now time.Time) (Token, error)
	// RevokeToken deletes a token; ErrNotFound if absent.
	RevokeToken(ctx context.Context, hash []byte) error
}

// Submissions accepts messages and answers for them (the queue's Submit,
// the API's status lookups).
type Submissions interface {
	// Submit durably stores m (status enqueued) and returns it with Seq set
	// and created=true. If a message with the same (From, ID) exists it
	// writes nothing and returns the existing message with created=false:
	// a retry never makes a duplicate. It refuses with ErrMailboxFull when
	// m.To already has maxPending enqueued messages (maxPending <= 0: no
	// bound). It returns only after the commit is durable; backends may
	// commit many concurrent Submits together (group commit), but none is
	// answered before its own commit. m's Attempts, NextAttempt and
	// LastError are stored as given (the queue records a first attempt
	// with the message); a new message is never parked (m.Parked is
	// ignored).
	Submit(ctx context.Context, m Message, maxPending int) (stored Message, created bool, err error)
	// Message returns the message (From, ID) or ErrNotFound.
	Message(ctx context.Context, from, id string) (Message, error)
}

// EarlySubmitter is a store that can tell where a new message stands as
// soon as it is written, before its commit is durable (the embedded
// SQLite store: the write is made at once, the commit and its fsync come
// with the batch). The queue uses it to start delivering to an online
// device while the commit is still on its way to the disk.
type EarlySubmitter interface {
	// SubmitEarly is Submit; written, if not nil, is called once with
	// the new message as Submit would return it (Seq and PendingBefore
	// set, with its sealed text) as soon as it is written, before the
	// write is durable. That write may still fail to become durable:
	// then Submit returns an error, as it would without written, and
	// the sender is never told the message was stored. written runs
	// on the store's writer goroutine: it must be quick and must not
	// call the store.
	SubmitEarly(ctx context.Context, m Message, maxPending int, written func(Message)) (stored Message, created bool, err error)
}

// Schedule is the delivery schedule (the queue): what is due, each
// attempt's bookkeeping, delivery and expiry.
type Schedule interface {
	// Pending returns up to limit (<= 0: all) messages for the recipient
	// that are due by the time given: enqueued, not Parked, and with
	// NextAttempt <= due (the zero time: any NextAttempt, for tests and
	// tools). Only those with a Seq above after (0: from the first), in
	// Seq order, with their sealed text. A delivery run lists after the
	// last message it has taken, so it never sees again one it has sent
	// whose delivered mark has not committed yet.
	Pending(ctx context.Context, to string, after int64, due time.Time, limit int) ([]Message, error)
	// CountPending returns the number of enqueued messages for every
	// recipient (for metrics).
	CountPending(ctx context.Context) (int, error)
	// RecordAttempt stores a's attempt count, next attempt time, last
	// error and parked state (all four, replacing the stored ones) for an
	// enqueued message; ErrNotFound if it is no longer enqueued. It is
	// durable when it returns, like every write: the scheduler records an
	// attempt before making it.
	RecordAttempt(ctx context.Context, a Attempt) error
	// RecordAttempts is RecordAttempt for many messages in one write:
	// errs[i] is nil or ErrNotFound for as[i]. An error of the write
	// itself comes alone, and then nothing was recorded.
	RecordAttempts(ctx context.Context, as []Attempt) (errs []error, err error)
	// Reschedule makes the recipient's enqueued, unparked messages whose
	// NextAttempt is after at due at at (NextAttempt = at), leaving
	// attempts, last error and parked messages alone, and returns how
	// many it changed. A registration calls it: the device is reachable
	// now, whatever was scheduled while it was not. Backends should not
	// write (nor sync) when nothing is to change: most registrations
	// find nothing scheduled.
	Reschedule(ctx context.Context, to string, at time.Time) (int, error)
	// MarkDeliveredAll sets each of keys delivered, with DeliveredAt, deletes
	// its sealed text and queues a Delivered report for its sender, in one
	// write: errs[i] is nil, or ErrNotFound when keys[i] is not enqueued
	// (already delivered or expired; then it is left as it is). An error of
	// the write itself comes alone, and then nothing was marked.
	MarkDeliveredAll(ctx context.Context, keys []Key, at time.Time) (errs []error, err error)
	// ExpireDue marks every enqueued message with ExpiresAt <= now expired,
	// deletes its sealed text, queues an Expired report for each sender, and
	// deletes reports with ExpiresAt <= now. It returns the expired messages
	// (without text). With several nodes on one database, a sweep may
	// return nothing while another node's sweep expires the same messages:
	// each message is expired, and its report queued, once.
	ExpireDue(ctx context.Context, now time.Time) ([]Message, error)
}

// Reports holds the delivery reports waiting to be forwarded to senders.
type Reports interface {
	// PendingReports returns up to limit reports waiting for the account, in
	// Seq order.
	PendingReports(ctx context.Context, to string, limit int) ([]Report, error)
	// DeleteReport removes a forwarded report; ErrNotFound if absent.
	DeleteReport(ctx context.Context, seq int64) error
}

// Keys keeps the wrapped data keys (package seal's KeyStore).
type Keys interface {
	// DataKey returns the wrapped data key of a period, or ErrNotFound.
	DataKey(ctx context.Context, period int64) ([]byte, error)
	// PutDataKey stores the wrapped key of a period unless one exists, and
	// returns the one that is stored (so concurrent creators agree).
	PutDataKey(ctx context.Context, period int64, wrapped []byte) ([]byte, error)
	// DeleteDataKeys destroys the wrapped keys of every period < before and
	// returns how many it destroyed. Backends must make the deleted bytes
	// unrecoverable from the database file where they can (SQLite:
	// secure_delete; PostgreSQL cannot, see store/postgres).
	DeleteDataKeys(ctx context.Context, before int64) (int, error)
}
