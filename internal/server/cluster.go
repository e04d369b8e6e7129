package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/sealpost/sealpost/internal/cluster"
	"github.com/sealpost/sealpost/internal/queue"
	"github.com/sealpost/sealpost/internal/store"
)

// ClusterOptions join this server to other nodes on the same PostgreSQL
// store (package cluster). The zero value is a single node, as before.
type ClusterOptions struct {
	NATSURL string // --nats; empty: a single node, no NATS
	Node    string // --node, this node's unique name; required with NATSURL
	// SweepInterval is how often the node looks in the store for
	// messages due to the devices it holds, whatever doorbells it got
	// (--cluster-sweep; default 15 s).
	SweepInterval time.Duration
}

// clusterNonceKey derives the SIP digest nonce key from the master key,
// which every node shares, so that a challenge issued by one node is
// accepted by another. A single node keeps a random key per process (nil).
func clusterNonceKey(c ClusterOptions, masterKey []byte) []byte {
	if c.NATSURL == "" {
		return nil
	}
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte("sealpost sip digest nonce key v1"))
	return m.Sum(nil)
}

// Clustered reports whether the server is configured as one of several
// nodes (--nats).
func (s *Server) Clustered() bool { return s.o.Cluster.NATSURL != "" }

// checkCluster refuses cluster settings that cannot work, before anything
// listens.
func (s *Server) checkCluster() error {
	c := s.o.Cluster
	if c.NATSURL == "" {
		if c.Node != "" {
			return errors.New("--node names a node among several: it needs --nats")
		}
		return nil
	}
	if c.Node == "" {
		return errors.New("--nats needs --node NAME: a name unique among the nodes (a node clears the bindings of its own name at start)")
	}
	if _, ok := s.store.(store.Cluster); !ok {
		return errors.New("--nats needs a store the nodes share: --store postgres://USER@HOST:PORT/DB")
	}
	return nil
}

// clusterQueueHooks points the queue at the cluster node (started later,
// before anything can kick the queue).
func (s *Server) clusterQueueHooks(qo *queue.Options) {
	if !s.Clustered() {
		return
	}
	qo.Elsewhere = func(account string, direct *store.Message) { s.cluster.Ring(account, direct) }
	qo.OnlineElsewhere = func(account string) bool { return s.cluster.OnlineElsewhere(account) }
	qo.MayDeliver = func(account string) bool { return s.cluster.MayDeliver(account) }
}

// startCluster joins the cluster: clears this node's stale bindings,
// connects to NATS, and chains the registrar's callbacks so that a
// registration is bound in the store before the queue's pass looks for the
// lease.
func (s *Server) startCluster() error {
	if !s.Clustered() {
		return nil
	}
	n, err := cluster.Start(cluster.Options{
		NATSURL: s.o.Cluster.NATSURL, Node: s.o.Cluster.Node,
		Store: s.store.(store.Cluster), Kick: s.queue.Kick, Handed: s.queue.Handed, Lookup: s.registrar.Lookup,
		Disconnect: s.sip.Disconnect, Moved: s.queue.Moved, SweepInterval: s.o.Cluster.SweepInterval,
		LoginVerdict: s.guard.Learn, Deleted: s.deletedElsewhere,
		Clock: s.o.Clock, Log: s.log.With("part", "cluster"),
	})
	if err != nil {
		return err
	}
	if err := n.Register(s.metrics.Registry); err != nil {
		n.Close()
		return err
	}
	s.cluster = n
	s.guard.Share(n.ShareLogin)
	online, disconnected := s.registrar.OnOnline, s.registrar.OnDisconnect
	s.registrar.OnOnline = func(account string) {
		n.Online(account)
		online(account)
	}
	s.registrar.OnDisconnect = func(account, source string) {
		disconnected(account, source)
		n.Offline(account, source)
	}
	return nil
}

// stopCluster leaves the cluster (after the connections closed, so their
// bindings were removed).
func (s *Server) stopCluster() {
	if s.cluster != nil {
		s.cluster.Close()
	}
}

// Cluster returns the cluster node, nil for a single node.
func (s *Server) Cluster() *cluster.Node { return s.cluster }

// Crash stops the node as abruptly as a process can within itself, for
// tests of a node's death (kill -9): the store closes first, so nothing
// the node still had in memory is written (no delivered mark, no attempt
// put back, no binding removed), then every listener, device connection
// and the NATS connection close without a drain. The server cannot be
// used afterwards, not even to Shutdown.
func (s *Server) Crash() {
	_ = s.store.Close()
	s.closeListeners()
	if s.httpSrv != nil {
		_ = s.httpSrv.Close()
	}
	if s.adminSrv != nil {
		_ = s.adminSrv.Close()
	}
	if s.cluster != nil {
		s.cluster.Close()
	}
	if s.sip != nil {
		_ = s.sip.Close()
	}
	if s.trimmer != nil {
		s.trimmer.stop()
	}
	// The runs left fail on the closed store and connections; waiting
	// for them keeps their goroutines from outliving the test.
	s.queue.Stop()
	s.wg.Wait()
}
