// Package cluster lets several sealpostd nodes share one PostgreSQL store:
// any node accepts a message, the node that holds the recipient's device
// delivers it, and losing a node or NATS loses nothing.
//
// PostgreSQL is the only source of truth; NATS only rings doorbells.
//
//   - A registration writes a binding (account → node, epoch, expiry) to the
//     store (Online); a newer epoch supersedes older ones. The node then
//     announces the binding on NATS, and the node holding the superseded
//     connection drops it (the device moved).
//   - Before each delivery pass the node checks the account's delivery
//     lease (MayDeliver): only the node of the newest binding gets it, so
//     one node delivers to an account at a time. It is written when taken
//     and renewed past half its time; the passes between read the binding.
//   - When the queue kicks an account whose device is not registered here
//     (a message was committed for it, or a delivery report is waiting for
//     it), Ring publishes the account's doorbell; the node holding the
//     device kicks its queue. A message stored for a device this node
//     knows to be on another (OnlineElsewhere) rides in the doorbell, and
//     that node delivers it without listing (queue.Handed).
//   - The nodes also share login failures (ShareLogin) and the operator's
//     account deletions (AccountDeleted).
//   - NATS is at-most-once, so every node also sweeps: every SweepInterval,
//     and after every NATS reconnect, it kicks each account it holds (the
//     pass lists the store). A lost doorbell costs at most SweepInterval.
//   - A node at start clears its own stale bindings and leases.
//
// Subjects carry an opaque id derived from the account name (SubjectID),
// never the name itself: names may contain '.', which NATS reads as a
// token separator. Only core NATS is used (publish/subscribe), which every
// nats-server since 2.0 offers.
package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/store"
)

// Subjects: the doorbell of an account, and the announcement of a new
// binding. The last token is SubjectID(account).
const (
	bellPrefix  = "sealpost.bell."
	boundPrefix = "sealpost.bound."
	// loginSubject carries the login guards' verdicts (ShareLogin).
	loginSubject = "sealpost.login"
	// deletedSubject carries the operator's account deletions
	// (AccountDeleted).
	deletedSubject = "sealpost.deleted"
)

// Options configure a Node. Zero durations take the defaults noted.
type Options struct {
	NATSURL string // nats://HOST:4222 (comma-separated for several)
	Node    string // this node's name, unique among the nodes
	Store   store.Cluster
	// Kick starts a delivery pass for an account (queue.Kick).
	Kick func(account string)
	// Handed, if set, starts the delivery of a message another node
	// stored for a device held here (queue.Handed); the doorbell carried
	// it. Without it such a doorbell only kicks.
	Handed func(m store.Message)
	// Lookup returns the account's registration on this node.
	Lookup func(account string) (registrar.Binding, bool)
	// Disconnect closes the connection a device registered on here
	// (sipserver.Disconnect): the device has moved to another node.
	Disconnect func(source string) error
	// Moved, if set, is called first (queue.Moved): the delivery under
	// way on that connection is abandoned, not failed.
	Moved func(account string)
	// LoginVerdict, if set, applies a login verdict another node shared
	// (loginguard.Guard.Learn): guessing spread over the nodes is limited
	// as on one.
	LoginVerdict func(account, source string, ok bool)
	// Deleted, if set, is told of an account the operator deleted on
	// another node (sealpostd user del): the node drops what it caches of
	// it and the connection of its device, if registered here.
	Deleted func(account string)
	// SweepInterval is how often the node kicks every account it holds,
	// to deliver what a lost doorbell did not announce (default 15 s).
	SweepInterval time.Duration
	// LeaseTTL is how long a delivery lease lasts unless renewed
	// (default 4 × SweepInterval; a pass renews it, and so does the sweep).
	LeaseTTL time.Duration
	Clock    clock.Clock
	Log      *slog.Logger
}

// Node is this sealpostd's part in a cluster of nodes.
type Node struct {
	o    Options
	m    *metrics
	nc   *nats.Conn
	subs []*nats.Subscription

	ctx    context.Context // for the store; ends at Close
	cancel context.CancelFunc

	mu   sync.Mutex
	held map[string]held // accounts whose device registered here; guarded by mu
	// remote caches whether an account's device is registered on
	// another node (OnlineElsewhere), until the time given. Binding
	// announcements update it at once; guarded by mu.
	remote  map[string]remoteBinding
	sweeper clock.Timer // guarded by mu
	closed  bool        // guarded by mu

	sweeps sync.WaitGroup
}

// held is a binding this node wrote, and the connection it is for.
type held struct {
	source  string
	binding store.Binding
	// dropped: a newer binding elsewhere superseded this one and the
	// connection is being closed; nothing more is delivered on it.
	dropped bool
	// leaseUntil is when the delivery lease this node last took under
	// binding ends (zero: none taken).
	leaseUntil time.Time
}

// announcement is the payload of a bound subject: a new binding, or
// (Gone) the end of one.
type announcement struct {
	Account string `json:"account"`
	Node    string `json:"node"`
	Epoch   int64  `json:"epoch"`
	Gone    bool   `json:"gone,omitempty"`
}

// verdict is the payload of the login subject.
type verdict struct {
	Node    string `json:"node"`
	Account string `json:"account"`
	Source  string `json:"source"` // the client's address as the guard counts it
	OK      bool   `json:"ok"`
}

// A doorbell's payload is the account's name, then, if a message was just
// stored for it with its first attempt recorded (queue.Handed), a newline
// and the message in JSON, its text sealed as in the store. Every node
// gets every doorbell, so the name comes first and plain: a node that does
// not hold the account reads no further. (Names never hold a newline.)

// remoteBinding is what OnlineElsewhere last learnt of an account.
type remoteBinding struct {
	online bool
	until  time.Time
}

// maxRemote bounds the remote cache; past it, it is cleared.
const maxRemote = 1 << 16

// Start clears the node's stale bindings and leases, connects to NATS
// (retrying forever in the background if it is down: delivery then runs on
// the sweep alone), subscribes, and begins sweeping.
func Start(o Options) (*Node, error) {
	if o.Node == "" {
		return nil, errors.New("cluster: a node name is required (--node) with --nats")
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 15 * time.Second
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 4 * o.SweepInterval
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{o: o, m: newMetrics(), ctx: ctx, cancel: cancel, held: map[string]held{}, remote: map[string]remoteBinding{}}
	sctx, scancel := context.WithTimeout(ctx, time.Minute)
	cleared, err := o.Store.ClearNode(sctx, o.Node)
	scancel()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cluster: clearing node %s's stale bindings: %w", o.Node, err)
	}
	if cleared > 0 {
		o.Log.Info("cleared stale bindings of this node's last run", "node", o.Node, "count", cleared)
	}
	nc, err := nats.Connect(o.NATSURL,
		nats.Name("sealpostd "+o.Node),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(500*time.Millisecond),
		nats.ConnectHandler(func(*nats.Conn) {
			o.Log.Info("connected to NATS", "node", o.Node)
			n.sweepSoon()
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			// Doorbells rung while we were away are lost: catch up
			// from the store.
			o.Log.Info("reconnected to NATS; sweeping for what was missed", "node", o.Node)
			n.sweepSoon()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			o.Log.Warn("NATS connection lost; delivery continues on the sweep", "node", o.Node, "err", err, "sweep_interval", o.SweepInterval)
		}),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cluster: --nats %s: %w", o.NATSURL, err)
	}
	n.nc = nc
	for subject, handler := range map[string]nats.MsgHandler{
		bellPrefix + "*":  n.onBell,
		boundPrefix + "*": n.onBound,
		loginSubject:      n.onLogin,
		deletedSubject:    n.onDeleted,
	} {
		sub, err := nc.Subscribe(subject, handler)
		if err != nil {
			nc.Close()
			cancel()
			return nil, fmt.Errorf("cluster: subscribing to %s: %w", subject, err)
		}
		n.subs = append(n.subs, sub)
	}
	n.mu.Lock()
	n.sweeper = o.Clock.AfterFunc(o.SweepInterval, n.sweep)
	n.mu.Unlock()
	return n, nil
}

// Close stops sweeping and closes the NATS connection. The node's
// bindings stay in the store until they expire, a newer one replaces
// them, or the node's next start clears them.
func (n *Node) Close() {
	n.mu.Lock()
	n.closed = true
	if n.sweeper != nil {
		n.sweeper.Stop()
	}
	n.mu.Unlock()
	n.nc.Close()
	n.sweeps.Wait()
	n.cancel()
}

// SubjectID is the opaque token that stands for an account in subjects:
// the first 16 bytes of SHA-256 of its name, in hex. It is stable across
// nodes and restarts and never contains a '.', '*' or '>'. Two accounts
// sharing one (never seen in practice) only cost an extra kick.
func SubjectID(account string) string {
	h := sha256.Sum256([]byte(account))
	return hex.EncodeToString(h[:16])
}

// Online records that the account's device registered here: a new
// connection gets a new binding (superseding any other node's, which is
// told to drop its connection); a refresh on the same connection extends
// the binding. Call it before the queue's Online, so the pass it starts
// finds the binding.
func (n *Node) Online(account string) {
	b, ok := n.o.Lookup(account)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	n.mu.Lock()
	h, known := n.held[account]
	n.mu.Unlock()
	if known && h.source == b.Source && h.dropped {
		return // the connection is being closed: the device moved
	}
	if known && h.source == b.Source {
		h.binding.ExpiresAt = b.Expires
		err := n.o.Store.RefreshBinding(ctx, h.binding)
		if err == nil {
			n.mu.Lock()
			n.held[account] = h
			n.mu.Unlock()
			return
		}
		if !errors.Is(err, store.ErrNotFound) {
			n.o.Log.Error("refreshing the binding", "account", account, "err", err)
			return
		}
		// Superseded, yet the device refreshes here: it is here now.
	}
	bound, err := n.o.Store.Bind(ctx, account, n.o.Node, b.Expires)
	if err != nil {
		// No binding, no lease: nothing is delivered here until the
		// next registration or sweep manages to bind.
		n.o.Log.Error("recording the binding", "account", account, "err", err)
		n.mu.Lock()
		delete(n.held, account)
		n.mu.Unlock()
		return
	}
	n.mu.Lock()
	n.held[account] = held{source: b.Source, binding: bound}
	n.mu.Unlock()
	n.announce(bound)
}

// Offline tells the node the device's connection from source closed.
func (n *Node) Offline(account, source string) {
	n.mu.Lock()
	h, ok := n.held[account]
	if ok && h.source == source {
		delete(n.held, account)
	}
	n.mu.Unlock()
	if !ok || h.source != source {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	if err := n.o.Store.Unbind(ctx, h.binding); err != nil {
		n.o.Log.Warn("removing the binding of a closed connection (it expires on its own)", "account", account, "err", err)
		return
	}
	n.publishBinding(announcement{Account: account, Node: n.o.Node, Epoch: h.binding.Epoch, Gone: true})
}

// OnlineElsewhere reports whether the account's device is registered on
// another node, as far as this node knows: from the binding announcements,
// else from the store, remembered for SweepInterval (an announced end of
// a binding forgets it). Wrong for a while, it costs only speed: a message
// for a device said offline is listed by its holder, one for a device
// gone has its first attempt counted though not made. While NATS is away it
// says no: a doorbell carrying a message would be lost, and the holder's
// sweep then lists the message and records its attempt itself.
func (n *Node) OnlineElsewhere(account string) bool {
	if !n.nc.IsConnected() {
		return false
	}
	now := n.o.Clock.Now()
	n.mu.Lock()
	r, ok := n.remote[account]
	n.mu.Unlock()
	if ok && now.Before(r.until) {
		return r.online
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	b, err := n.o.Store.Binding(ctx, account)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		n.o.Log.Warn("reading the binding", "account", account, "err", err)
		return false
	}
	online := err == nil && b.Node != n.o.Node && b.ExpiresAt.After(now)
	n.remember(account, online, now)
	return online
}

func (n *Node) remember(account string, online bool, now time.Time) {
	n.mu.Lock()
	if len(n.remote) >= maxRemote {
		clear(n.remote)
	}
	n.remote[account] = remoteBinding{online: online, until: now.Add(n.o.SweepInterval)}
	n.mu.Unlock()
}

// MayDeliver takes or renews the account's delivery lease and reports
// whether this node may deliver to it now. When a newer binding on
// another node holds the account, the device has moved: the old
// connection here is dropped.
//
// A lease with more than half its time left is not written again: the
// pass only reads the binding. That read is what renewal would have
// checked too: only the node of the account's current binding can take
// the lease before it ends, so while the binding is still ours (same
// node, same epoch) and the lease has not run out, no other node may
// deliver. Each pass then costs a read instead of a committed write.
func (n *Node) MayDeliver(account string) bool {
	n.mu.Lock()
	h, ok := n.held[account]
	n.mu.Unlock()
	if ok && h.dropped {
		return false
	}
	if !ok {
		// Registered here but not bound (the store refused the
		// binding at registration): try again.
		n.Online(account)
		n.mu.Lock()
		h, ok = n.held[account]
		n.mu.Unlock()
		if !ok {
			return false
		}
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	now := n.o.Clock.Now()
	if h.leaseUntil.Sub(now) > n.o.LeaseTTL/2 {
		cur, err := n.o.Store.Binding(ctx, account)
		switch {
		case err == nil && cur.Node == h.binding.Node && cur.Epoch == h.binding.Epoch:
			n.m.leaseKept.Inc()
			return true
		case err == nil && cur.Epoch > h.binding.Epoch:
			n.superseded(account, announcement{Account: account, Node: cur.Node, Epoch: cur.Epoch})
			return false
		case err != nil && !errors.Is(err, store.ErrNotFound):
			n.o.Log.Error("reading the binding", "account", account, "err", err)
			return false
		}
		// Our binding is gone: try the lease, which fails without it.
	}
	until := now.Add(n.o.LeaseTTL)
	got, err := n.o.Store.TakeLease(ctx, h.binding, now, until)
	if err != nil {
		n.o.Log.Error("taking the delivery lease", "account", account, "err", err)
		return false
	}
	if got {
		n.m.leaseTaken.Inc()
		n.mu.Lock()
		if cur, ok := n.held[account]; ok && cur.binding.Epoch == h.binding.Epoch {
			cur.leaseUntil = until
			n.held[account] = cur
		}
		n.mu.Unlock()
		return true
	}
	cur, err := n.o.Store.Binding(ctx, account)
	if err == nil && cur.Epoch > h.binding.Epoch {
		n.superseded(account, announcement{Account: account, Node: cur.Node, Epoch: cur.Epoch})
	}
	return false
}

// Ring publishes the account's doorbell: the node holding its device (if
// any) kicks its delivery. It never blocks on NATS; a doorbell lost while
// NATS is away is made up by the holder's sweep.
//
// direct, if not nil, is a message just stored for the account with its
// first attempt recorded, because OnlineElsewhere said yes: the doorbell
// carries it, so the holder delivers it without listing the store.
func (n *Node) Ring(account string, direct *store.Message) {
	data := []byte(account)
	if direct != nil {
		m, err := json.Marshal(direct)
		if err != nil {
			n.o.Log.Error("encoding a doorbell", "account", account, "err", err)
			return
		}
		data = append(append(data, '\n'), m...)
	}
	if err := n.nc.Publish(bellPrefix+SubjectID(account), data); err != nil {
		n.o.Log.Debug("doorbell not rung; the holder's sweep will deliver", "account", account, "err", err)
		return
	}
	n.m.rung.Inc()
}

func (n *Node) announce(b store.Binding) {
	n.publishBinding(announcement{Account: b.Account, Node: b.Node, Epoch: b.Epoch})
}

func (n *Node) publishBinding(a announcement) {
	data, _ := json.Marshal(a)
	if err := n.nc.Publish(boundPrefix+SubjectID(a.Account), data); err != nil {
		n.o.Log.Debug("binding change not announced; other nodes find out from the store", "account", a.Account, "err", err)
	}
}

func (n *Node) onBell(m *nats.Msg) {
	name, data, carries := bytes.Cut(m.Data, []byte{'\n'})
	account := string(name)
	if _, ok := n.o.Lookup(account); !ok {
		return
	}
	if m.Subject != bellPrefix+SubjectID(account) {
		n.o.Log.Warn("ignoring a doorbell rung on another account's subject", "subject", m.Subject)
		return
	}
	n.m.answered.Inc()
	if carries && n.o.Handed != nil {
		var msg store.Message
		if err := json.Unmarshal(data, &msg); err != nil || msg.To != account {
			n.o.Log.Warn("a doorbell carried a malformed message; listing the store instead", "account", account, "err", err)
			n.o.Kick(account)
			return
		}
		n.m.handed.Inc()
		n.o.Handed(msg)
		return
	}
	n.o.Kick(account)
}

func (n *Node) onBound(m *nats.Msg) {
	var a announcement
	if err := json.Unmarshal(m.Data, &a); err != nil || m.Subject != boundPrefix+SubjectID(a.Account) {
		n.o.Log.Warn("ignoring a malformed binding announcement", "subject", m.Subject)
		return
	}
	if a.Node == n.o.Node {
		return
	}
	if a.Gone {
		// Forgotten, not taken as offline: the device may have
		// registered on a third node meanwhile. The store will tell.
		n.mu.Lock()
		delete(n.remote, a.Account)
		n.mu.Unlock()
		return
	}
	n.remember(a.Account, true, n.o.Clock.Now())
	n.superseded(a.Account, a)
}

// superseded drops this node's connection for the account if a is a newer
// binding elsewhere.
func (n *Node) superseded(account string, a announcement) {
	n.mu.Lock()
	h, ok := n.held[account]
	if !ok || h.dropped || h.binding.Epoch >= a.Epoch {
		n.mu.Unlock()
		return
	}
	h.dropped = true
	n.held[account] = h
	n.mu.Unlock()
	n.o.Log.Info("the device registered on another node; dropping its old connection here", "account", account, "node", a.Node, "source", h.source)
	n.m.dropped.Inc()
	if n.o.Moved != nil {
		n.o.Moved(account)
	}
	if err := n.o.Disconnect(h.source); err != nil {
		n.o.Log.Warn("closing a superseded connection", "account", account, "source", h.source, "err", err)
	}
}

// sweepSoon runs a sweep now, in the background (NATS callbacks must not
// block).
func (n *Node) sweepSoon() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.sweeps.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.sweeps.Done()
		n.kickHeld()
	}()
}

// sweep kicks every account held here, then schedules the next sweep.
func (n *Node) sweep() {
	n.kickHeld()
	n.mu.Lock()
	if !n.closed {
		n.sweeper = n.o.Clock.AfterFunc(n.o.SweepInterval, n.sweep)
	}
	n.mu.Unlock()
}

// kickHeld kicks the delivery of every account whose device is registered
// here: each pass renews the lease and lists what is due in the store.
// Accounts whose registration ended are forgotten.
func (n *Node) kickHeld() {
	n.m.sweeps.Inc()
	n.mu.Lock()
	accounts := make([]string, 0, len(n.held))
	for a, h := range n.held {
		if b, ok := n.o.Lookup(a); !ok || b.Source != h.source {
			delete(n.held, a)
			continue
		}
		if h.dropped {
			continue
		}
		accounts = append(accounts, a)
	}
	n.mu.Unlock()
	for _, a := range accounts {
		n.o.Kick(a)
	}
}

// ShareLogin tells the other nodes of a login verdict reached here (set as
// loginguard.Guard.Share). Lost while NATS is away: each node then limits
// on its own.
func (n *Node) ShareLogin(account, source string, ok bool) {
	data, _ := json.Marshal(verdict{Node: n.o.Node, Account: account, Source: source, OK: ok})
	if err := n.nc.Publish(loginSubject, data); err != nil {
		n.o.Log.Debug("login verdict not shared", "account", account, "err", err)
	}
}

func (n *Node) onLogin(m *nats.Msg) {
	var v verdict
	if err := json.Unmarshal(m.Data, &v); err != nil || v.Account == "" || v.Source == "" {
		n.o.Log.Warn("ignoring a malformed login verdict", "subject", m.Subject)
		return
	}
	if v.Node == n.o.Node || n.o.LoginVerdict == nil {
		return
	}
	n.m.verdicts.Inc()
	n.o.LoginVerdict(v.Account, v.Source, v.OK)
}

// deletion is the payload of the deleted subject.
type deletion struct {
	Node    string `json:"node"`
	Account string `json:"account"`
}

// AccountDeleted tells the other nodes that the operator deleted the
// account here. Lost while NATS is away: the device's connection elsewhere
// then stays until its registration ends (its next REGISTER is refused).
func (n *Node) AccountDeleted(account string) {
	data, _ := json.Marshal(deletion{Node: n.o.Node, Account: account})
	if err := n.nc.Publish(deletedSubject, data); err != nil {
		n.o.Log.Warn("account deletion not told to the other nodes", "account", account, "err", err)
	}
}

func (n *Node) onDeleted(m *nats.Msg) {
	var d deletion
	if err := json.Unmarshal(m.Data, &d); err != nil || d.Account == "" {
		n.o.Log.Warn("ignoring a malformed account deletion", "subject", m.Subject)
		return
	}
	if d.Node == n.o.Node || n.o.Deleted == nil {
		return
	}
	n.o.Deleted(d.Account)
}

// Connected reports whether the node is connected to NATS now.
func (n *Node) Connected() bool { return n.nc.IsConnected() }
