// Package metrics defines the Prometheus metrics of sealpostd. Each Server
// owns its own registry, so tests can run several servers in one process.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the server's instruments.
type Metrics struct {
	Registry *prometheus.Registry

	Accepted           *prometheus.CounterVec // by via: https, sip
	Delivered          prometheus.Counter
	Expired            prometheus.Counter
	Refused            *prometheus.CounterVec // by reason (an API error code)
	DeliveryFailed     *prometheus.CounterVec // by reason: timeout, rejected, connection
	ReportsSent        *prometheus.CounterVec // by status
	DeliveryLatency    prometheus.Histogram   // submit → 2xx from the device
	SubmitLatency      *prometheus.HistogramVec
	StoreCommitOps     prometheus.Histogram // writes per group commit
	StoreCommitTime    prometheus.Histogram // how long each group commit's transaction was open
	StoreSyncTime      prometheus.Histogram // fsync of the store's log
	StoreWriteFailures prometheus.Counter   // write batches the database failed (full disk, I/O error)
	StoreReadFailures  prometheus.Counter   // reads that met damage or an I/O error
}

// New creates the metrics and registers them, with the Go and process
// collectors, on a fresh registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_messages_accepted_total",
			Help: "Messages durably stored and answered as enqueued, by submission path.",
		}, []string{"via"}),
		Delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_messages_delivered_total",
			Help: "Messages a recipient's device answered with 2xx.",
		}),
		Expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_messages_expired_total",
			Help: "Messages that expired undelivered.",
		}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_messages_refused_total",
			Help: "Submissions refused, by reason (the API error code).",
		}, []string{"reason"}),
		DeliveryFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_delivery_attempts_failed_total",
			Help: "Delivery attempts that did not get a 2xx, by reason.",
		}, []string{"reason"}),
		ReportsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealpost_reports_sent_total",
			Help: "Delivery reports accepted by the sender's device, by status.",
		}, []string{"status"}),
		DeliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sealpost_delivery_duration_seconds",
			Help:    "Time from acceptance to the device's 2xx.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 300, 3600, 86400, 259200},
		}),
		SubmitLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sealpost_submit_duration_seconds",
			Help:    "Time to validate, seal and durably store a submission.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"via"}),
		StoreCommitOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sealpost_store_commit_writes",
			Help:    "Writes (submissions, delivery marks, …) committed together in one transaction and fsync (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
		StoreCommitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sealpost_store_commit_duration_seconds",
			Help:    "How long each group commit's transaction was open: its statements, the wait for the previous fsync while it gathered more writes, and the commit.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		StoreSyncTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sealpost_store_fsync_duration_seconds",
			Help:    "Duration of each fsync that makes committed writes durable before they are acknowledged.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		StoreWriteFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_store_write_failures_total",
			Help: "Store writes (group commits and probes) that failed on the database, such as on a full disk; the log has one line when they start and one when they stop.",
		}),
		StoreReadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealpost_store_read_failures_total",
			Help: "Store reads that met a damaged page or an I/O error; the first is logged and makes /readyz fail.",
		}),
	}
	r.MustRegister(m.StoreWriteFailures, m.StoreReadFailures)
	r.MustRegister(m.Accepted, m.Delivered, m.Expired, m.Refused, m.DeliveryFailed, m.ReportsSent,
		m.DeliveryLatency, m.SubmitLatency, m.StoreCommitOps, m.StoreCommitTime, m.StoreSyncTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe registers the gauges that are read at scrape time: pending
// messages (from the store) and registered devices (from the registrar).
func (m *Metrics) Observe(pending, registered func() float64) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sealpost_messages_pending",
			Help: "Messages stored and not yet delivered or expired.",
		}, pending),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sealpost_registered_devices",
			Help: "Devices with a live SIP registration.",
		}, registered),
	)
}
