package queue

import (
	"context"
	"errors"
	"time"

	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/store"
)

// passReports forwards the delivery reports waiting for a device that asked
// for them.
func (q *Queue) passReports(ctx context.Context, b registrar.Binding) time.Duration {
	for ctx.Err() == nil && !q.isDraining() {
		reports, err := q.o.Store.PendingReports(q.ctx, b.Account, 64)
		if err != nil {
			q.o.Log.Error("listing pending reports", "account", b.Account, "err", err)
			return q.o.RetryInterval
		}
		if len(reports) == 0 {
			return 0
		}
		for _, r := range reports {
			if q.isDraining() {
				return 0
			}
			actx, cancel := context.WithTimeout(ctx, q.o.AttemptTimeout)
			err := q.o.Sender.SendReport(actx, b, r)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return 0
				}
				q.o.Log.Info("delivery report not accepted", "account", b.Account, "reason", failureReason(err), "err", err)
				return q.failed(b.Account, charged{})
			}
			if q.o.Metrics != nil {
				q.o.Metrics.ReportsSent.WithLabelValues(string(r.Status)).Inc()
			}
			if err := q.o.Store.DeleteReport(q.ctx, r.Seq); err != nil && !errors.Is(err, store.ErrNotFound) {
				q.o.Log.Error("deleting forwarded report", "seq", r.Seq, "err", err)
				return q.o.RetryInterval
			}
		}
	}
	return 0
}
