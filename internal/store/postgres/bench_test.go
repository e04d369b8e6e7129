package postgres

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
	"github.com/sealpost/sealpost/internal/store/postgres/pgtest"
)

// Benchmarks run with the production settings (synchronous_commit on) on a
// fresh database of the test server, so their figures depend on that
// server and its disk; they mirror store/sqlite's:
//
//	go test -run '^$' -bench . -benchtime 3s ./internal/store/postgres/

// sealedSize is the sealed size of a 160-character ASCII text: 12-byte nonce,
// 160 bytes, 16-byte tag.
const sealedSize = 12 + 160 + 16

// concurrency is how many goroutines submit at once, as in store/sqlite.
const concurrency = 128

var benchT0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func benchMsg(sender string, n int64, sealed []byte) store.Message {
	return store.Message{
		ID:          uuid.NewString(),
		From:        sender,
		To:          fmt.Sprintf("rcpt%04d", n%1000),
		Sealed:      sealed,
		KeyPeriod:   491234,
		SubmittedAt: benchT0,
		ExpiresAt:   benchT0.Add(72 * time.Hour),
	}
}

func BenchmarkSubmitParallel(b *testing.B) {
	var batches, ops atomic.Int64
	s := openURL(b, pgtest.NewDatabase(b), Options{OnCommit: func(n int, _ time.Duration) { batches.Add(1); ops.Add(int64(n)) }})
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
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if n := batches.Load(); n > 0 {
		b.ReportMetric(float64(ops.Load())/float64(n), "ops/commit")
	}
}

func BenchmarkMarkDeliveredAll(b *testing.B) {
	s := openURL(b, pgtest.NewDatabase(b), Options{})
	sealed := make([]byte, sealedSize)
	rand.Read(sealed)
	keys := make([]store.Key, b.N)
	for i := range b.N {
		m := benchMsg("alice", int64(i), sealed)
		if _, _, err := s.Submit(context.Background(), m, 0); err != nil {
			b.Fatal(err)
		}
		keys[i] = store.Key{From: m.From, ID: m.ID}
	}
	b.ResetTimer()
	// Windows of 128, as a delivery run hands them over.
	for i := 0; i < len(keys); i += 128 {
		if _, err := s.MarkDeliveredAll(context.Background(), keys[i:min(i+128, len(keys))], benchT0.Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
