package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

// inFlightWindow is the queue's window (internal/queue: window), the most
// MESSAGEs a delivery run has sent and not yet seen answered and marked.
// A kill -9 can make the server send again at most those: the device
// answered 200 but the delivered mark was not yet on disk.
const inFlightWindow = 128

// TestKill9UnderLoad runs the real sealpostd, submits over HTTPS from
// several clients while a registered device receives, and kills the
// process with SIGKILL at random moments, for several rounds. Every
// message answered 202 must be delivered in the end, and the messages
// delivered more than once are bounded by the in-flight window of each
// kill.
func TestKill9UnderLoad(t *testing.T) {
	bin := sealpostdBinary(t)
	dir := t.TempDir()
	for _, u := range []string{"alice", "bob"} {
		if out, err := runBinary(t, bin, u+"-password-1\n", "--data", dir, "user", "add", u, "--password-stdin"); err != nil {
			t.Fatalf("user add %s: %v\n%s", u, err, out)
		}
	}
	const rounds = 6
	const submitters = 4
	var mu sync.Mutex
	acked := map[string]bool{}   // answered 202
	received := map[string]int{} // by the devices, by id
	collect := func(d *servertest.Device) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range d.Received() {
			received[r.ID]++
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 12))
	for round := range rounds {
		p := startBinary(t, bin, dir)
		tok := p.srv.Token(t, "alice", "alice-password-1")
		bob := p.srv.NewDevice(t, "bob", "bob-password-1")
		if code, err := bob.Register(600, false); err != nil || code != 200 {
			t.Fatalf("round %d: register: %d %v", round, code, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var sent atomic.Int64
		client := p.srv.HTTPClient()
		for range submitters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					id := message.NewID()
					code, err := postMessage(ctx, client, p.srv.HTTPSURL, tok, id, "bob", "crash test")
					if err == nil && code == 202 {
						mu.Lock()
						acked[id] = true
						mu.Unlock()
						sent.Add(1)
					}
				}
			}()
		}
		// Let some messages through, then kill at a random moment.
		servertest.CheckFor(t, 30*time.Second, func() error {
			if sent.Load() < 20 {
				return fmt.Errorf("round %d: %d messages accepted so far", round, sent.Load())
			}
			return nil
		})
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		p.kill()
		cancel()
		wg.Wait()
		bob.Close()
		collect(bob)
	}
	// A last life: everything acknowledged arrives.
	p := startBinary(t, bin, dir)
	bob := p.srv.NewDevice(t, "bob", "bob-password-1")
	if code, err := bob.Register(600, false); err != nil || code != 200 {
		t.Fatalf("last round: register: %d %v", code, err)
	}
	mu.Lock()
	want := len(acked)
	mu.Unlock()
	servertest.CheckFor(t, 60*time.Second, func() error {
		got := map[string]bool{}
		for _, r := range bob.Received() {
			got[r.ID] = true
		}
		mu.Lock()
		defer mu.Unlock()
		missing := 0
		for id := range acked {
			if received[id] == 0 && !got[id] {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d acknowledged messages not delivered yet", missing, want)
		}
		return nil
	})
	p.stop(t)
	collect(bob)
	resent := 0
	for _, n := range received {
		resent += n - 1
	}
	t.Logf("%d rounds of kill -9: %d messages acknowledged, all delivered; %d deliveries of an already-delivered message", rounds, want, resent)
	if resent > rounds*2*inFlightWindow {
		t.Errorf("%d re-sent deliveries over %d kills; want at most %d (twice the in-flight window per kill: sent and answered, mark not yet on disk)",
			resent, rounds, rounds*2*inFlightWindow)
	}
	if want == 0 {
		t.Fatal("no message was acknowledged: the test showed nothing")
	}
}

// postMessage submits without failing the test on a connection error: the
// server may be killed under it.
func postMessage(ctx context.Context, client *http.Client, base, token, id, to, text string) (int, error) {
	body, err := json.Marshal(api.SubmitRequest{ID: id, To: to, Text: text})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", base+api.PathMessages, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}
