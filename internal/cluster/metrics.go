package cluster

import "github.com/prometheus/client_golang/prometheus"

// metrics count what this node did in the cluster (per node, as every
// sealpostd metric is).
type metrics struct {
	rung     prometheus.Counter // doorbells published
	answered prometheus.Counter // doorbells for a device held here: kicked
	sweeps   prometheus.Counter // sweeps of the held accounts
	dropped  prometheus.Counter // connections dropped: the device moved to another node
	// Delivery passes allowed by a lease written for them (taken or
	// renewed) or by one still more than half valid (a read only).
	leaseTaken, leaseKept prometheus.Counter
	handed                prometheus.Counter // doorbells that carried a message for a device held here
	verdicts              prometheus.Counter // login verdicts learnt from other nodes
}

func newMetrics() *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return &metrics{
		rung: counter("sealpost_cluster_doorbells_rung_total",
			"Doorbells this node published for accounts whose device is not registered here."),
		answered: counter("sealpost_cluster_doorbells_answered_total",
			"Doorbells for a device registered on this node, which started its delivery."),
		sweeps: counter("sealpost_cluster_sweeps_total",
			"Sweeps of the accounts held here (on the timer and after each NATS reconnect)."),
		dropped: counter("sealpost_cluster_moved_connections_dropped_total",
			"Connections this node closed because their device registered on another node."),
		verdicts: counter("sealpost_cluster_login_verdicts_learned_total",
			"Login failures (and successes that cleared failures) other nodes shared, applied to this node's login limits."),
		handed: counter("sealpost_cluster_messages_handed_total",
			"Messages another node stored for a device held here, carried by the doorbell and delivered without listing the store."),
		leaseTaken: counter("sealpost_cluster_leases_written_total",
			"Delivery leases this node took or renewed (a committed write each)."),
		leaseKept: counter("sealpost_cluster_leases_kept_total",
			"Delivery passes under a lease still more than half valid (a read of the binding, no write)."),
	}
}

// Register adds the node's metrics to reg: the counters above, whether it
// is connected to NATS, and how many accounts' devices it holds.
func (n *Node) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		n.m.rung, n.m.answered, n.m.sweeps, n.m.dropped, n.m.leaseTaken, n.m.leaseKept, n.m.handed, n.m.verdicts,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sealpost_cluster_nats_connected",
			Help: "1 while this node is connected to NATS; 0 while delivery runs on the sweep alone.",
		}, func() float64 {
			if n.Connected() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sealpost_cluster_bindings_held",
			Help: "Accounts whose device is bound to this node.",
		}, func() float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			return float64(len(n.held))
		}),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
