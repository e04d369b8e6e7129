package sqlite

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sealpost/sealpost/internal/store"
)

// Benchmarks run with the production settings (every batch fsynced before
// it is answered, durable.go) on a file in the test's temporary folder, so their figures
// depend on the disk under it:
//
//	go test -run '^$' -bench . -benchtime 3s ./internal/store/sqlite/

// sealedSize is the sealed size of a 160-character ASCII text: 12-byte nonce,
// 160 bytes, 16-byte tag.
const sealedSize = 12 + 160 + 16

// concurrency is how many goroutines submit at once: like HTTP handlers of
// many clients, far more than the cores.
const concurrency = 128

// benchRecipients is how many accounts the benchmark messages go to, as in
// sealbench's store scenario: each recipient's index entries land on their
// own pages, so a batch dirties many pages, as it does in production.
const benchRecipients = 1000

// benchMsg is message n of sender. Its id is a random (version 4) UUID, as
// clients make them: ids in order would fill the (from, id) index at its
// end and hide the cost of random inserts.
func benchMsg(sender string, n int64, sealed []byte) store.Message {
	return store.Message{
		ID:          uuid.NewString(),
		From:        sender,
		To:          fmt.Sprintf("rcpt%04d", n%benchRecipients),
		Sealed:      sealed,
		KeyPeriod:   491234,
		SubmittedAt: t0,
		ExpiresAt:   t0.Add(72 * time.Hour),
	}
}

// batchStats counts committed batches to report the mean batch size.
type batchStats struct{ batches, ops atomic.Int64 }

func (c *batchStats) hook(n int, _ time.Duration) { c.batches.Add(1); c.ops.Add(int64(n)) }

func (c *batchStats) report(b *testing.B) {
	if n := c.batches.Load(); n > 0 {
		b.ReportMetric(float64(c.ops.Load())/float64(n), "ops/commit")
	}
}

func reportRate(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

func BenchmarkSubmitParallel(b *testing.B) {
	var stats batchStats
	s, _ := openTemp(b, Options{OnCommit: stats.hook})
	sealed := make([]byte, sealedSize)
	rand.Read(sealed)
	var sender atomic.Int64
	b.SetParallelism(concurrency / max(1, runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		from := fmt.Sprintf("sender%d", sender.Add(1))
		var n int64
		for pb.Next() {
			n++
			if _, _, err := s.Submit(context.Background(), benchMsg(from, n, sealed), 10000); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, "msgs/s")
	stats.report(b)
}

// BenchmarkSubmitSerial is one caller at a time: every Submit pays a whole
// commit, the latency floor that group commit spreads over a batch.
func BenchmarkSubmitSerial(b *testing.B) {
	s, _ := openTemp(b, Options{})
	sealed := make([]byte, sealedSize)
	rand.Read(sealed)
	var n int64
	for b.Loop() {
		n++
		if _, _, err := s.Submit(context.Background(), benchMsg("alice", n, sealed), 0); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, "msgs/s")
}

func BenchmarkMarkDeliveredParallel(b *testing.B) {
	var stats batchStats
	s, _ := openTemp(b, Options{OnCommit: stats.hook})
	sealed := make([]byte, sealedSize)
	rand.Read(sealed)
	// Enqueue b.N messages first, concurrently so that setup is quick.
	ids := make([]string, b.N+1)
	var next atomic.Int64
	b.SetParallelism(concurrency / max(1, runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			m := benchMsg("alice", n, sealed)
			ids[n] = m.ID
			if _, _, err := s.Submit(context.Background(), m, 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	stats = batchStats{}
	next.Store(0)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := markOne(s, context.Background(), "alice", ids[next.Add(1)], t0.Add(time.Minute)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, "deliveries/s")
	stats.report(b)
}

func BenchmarkPending(b *testing.B) {
	s, _ := openTemp(b, Options{})
	sealed := make([]byte, sealedSize)
	rand.Read(sealed)
	// 125 messages waiting for each of 200 recipients, as after an outage
	// (the messages are spread over rcpts recipients).
	const rcpts, each = 200, 125
	var next atomic.Int64
	errc := make(chan error, 8)
	for w := 0; w < 8; w++ {
		go func() {
			for {
				n := next.Add(1)
				if n > rcpts*each {
					errc <- nil
					return
				}
				m := benchMsg(fmt.Sprintf("s%d", n%7), n, sealed)
				m.To = fmt.Sprintf("rcpt%03d", n%rcpts)
				if _, _, err := s.Submit(context.Background(), m, 0); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for range 8 {
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var i atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			to := fmt.Sprintf("rcpt%03d", i.Add(1)%rcpts)
			ms, err := s.Pending(context.Background(), to, 0, time.Time{}, 100)
			if err != nil || len(ms) != 100 {
				b.Errorf("Pending(%s) = %d, %v", to, len(ms), err)
				return
			}
		}
	})
	reportRate(b, "calls/s")
}
