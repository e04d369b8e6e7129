package store

import (
	"context"
	"time"
)

// Binding says which node holds an account's device: the node whose
// connection the device last registered on. Epoch orders registrations
// across every node (a later registration has a larger epoch), so the
// newest binding is the one to deliver through.
type Binding struct {
	Account   string
	Node      string
	Epoch     int64
	ExpiresAt time.Time
}

// Cluster is what several sealpostd nodes on one database share besides
// the messages: bindings and delivery leases. Only backends that several
// nodes can share implement it (store/postgres).
//
// A lease says which node may deliver to an account: only the node
// holding the account's newest binding takes it, and it keeps it by
// renewing it while it delivers. A lease ends when its time passes
// (the holder died) or when a newer binding appears (the device moved):
// then the node of the newer binding takes it at once.
type Cluster interface {
	// Bind records that node holds the account's device until expires,
	// under a new epoch that supersedes every earlier binding, and
	// returns the binding.
	Bind(ctx context.Context, account, node string, expires time.Time) (Binding, error)
	// RefreshBinding extends the binding (account, node, epoch) to
	// expires; ErrNotFound if it is no longer the account's binding (a
	// newer one superseded it).
	RefreshBinding(ctx context.Context, b Binding) error
	// Binding returns the account's newest binding, or ErrNotFound.
	Binding(ctx context.Context, account string) (Binding, error)
	// Unbind removes the binding (account, node, epoch) and its lease, if
	// they are still that node's under that epoch.
	Unbind(ctx context.Context, b Binding) error
	// TakeLease gives node the account's delivery lease until until, and
	// reports whether it did. It does only if (account, node, epoch) is
	// the account's binding, and the lease is free, expired by now, held
	// under an older epoch, or already node's under this epoch (a
	// renewal).
	TakeLease(ctx context.Context, b Binding, now, until time.Time) (bool, error)
	// ClearNode removes every binding and lease of the node: a node at
	// start holds no connection, so any left from its last run are stale.
	// It returns how many bindings it removed.
	ClearNode(ctx context.Context, node string) (int, error)
}
