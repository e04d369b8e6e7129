package queue

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/sealpost/sealpost/internal/registrar"
)

// burstSender is a fakeSender that is also a Burster: it notes which
// MESSAGEs were started inside a burst, and how many per burst.
type burstSender struct {
	*fakeSender
	mu      sync.Mutex
	open    int
	outside int   // MESSAGEs started with no burst open
	sizes   []int // MESSAGEs per burst, in order
}

func (s *burstSender) Burst(registrar.Binding) func() {
	s.mu.Lock()
	s.open++
	s.sizes = append(s.sizes, 0)
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.open--
			s.mu.Unlock()
		})
	}
}

func (s *burstSender) StartMessage(ctx context.Context, b registrar.Binding, d Delivery) (func() error, error) {
	s.mu.Lock()
	if s.open > 0 {
		s.sizes[len(s.sizes)-1]++
	} else {
		s.outside++
	}
	s.mu.Unlock()
	return s.fakeSender.StartMessage(ctx, b, d)
}

// A drain to one device starts its MESSAGEs in bursts (several written
// together), every burst is ended, and the order holds.
func TestDrainGoesOutInBursts(t *testing.T) {
	f := newFixture(t)
	bs := &burstSender{fakeSender: f.sender}
	f.q.SetSender(bs)
	var want []string
	for i := range 20 {
		text := "m" + strconv.Itoa(i)
		f.submit(t, text)
		want = append(want, text)
	}
	f.goOnline("bob", false)
	checkFor(t, func() error {
		if delivered, _, _ := f.sender.snapshot(); fmt.Sprint(delivered) != fmt.Sprint(want) {
			return fmt.Errorf("delivered %q; want %q", delivered, want)
		}
		if f.q.Busy("bob") {
			return fmt.Errorf("the run is still going")
		}
		return nil
	})
	bs.mu.Lock()
	defer bs.mu.Unlock()
	largest := 0
	for _, n := range bs.sizes {
		largest = max(largest, n)
	}
	if bs.open != 0 || largest < 2 {
		t.Fatalf("bursts %v, %d left open; want every burst ended and one of several MESSAGEs", bs.sizes, bs.open)
	}
	t.Logf("bursts %v, %d MESSAGEs outside one", bs.sizes, bs.outside)
}
