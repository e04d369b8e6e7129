package sipserver

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sealpost/sealpost/internal/queue"
	"github.com/sealpost/sealpost/internal/registrar"
)

// answerRig is a server with one device connection that records writes.
type answerRig struct {
	s    *Server
	wire *writeLog
	b    registrar.Binding
}

func newAnswerRig(t *testing.T) *answerRig {
	t.Helper()
	r := &answerRig{wire: &writeLog{}, b: registrar.Binding{Account: "bob", Source: "127.0.0.1:40000", Contact: "sip:bob@127.0.0.1:40000;transport=tls"}}
	r.s = &Server{o: Options{Domain: "example.org", Log: slog.New(slog.DiscardHandler)}, conns: map[string]*framedConn{}, awaiting: map[string]awaited{}}
	c := newFramedConn(r.wire, nil)
	c.localPort = 5061
	r.s.conns[r.b.Source] = c
	return r
}

// send starts a MESSAGE and returns the request as the device read it.
func (r *answerRig) send(t *testing.T, ctx context.Context, id string) (*sip.Request, func() error) {
	t.Helper()
	wait, err := r.s.StartMessage(ctx, r.b, queue.Delivery{ID: id, From: "alice", To: "bob", Text: "hi", SubmittedAt: time.Unix(0, 0)})
	if err != nil {
		t.Fatalf("StartMessage: %v", err)
	}
	writes, _ := r.wire.log()
	msg, err := sip.ParseMessage([]byte(writes[len(writes)-1]))
	if err != nil {
		t.Fatalf("the MESSAGE written does not parse: %v", err)
	}
	return msg.(*sip.Request), wait
}

// answer is the device's response to req, as read from the connection
// from source.
func (r *answerRig) answer(req *sip.Request, code int, source string) {
	res := sip.NewResponseFromRequest(req, code, "", nil)
	res.SetSource(source)
	r.s.onResponse(res)
}

// waitErr runs wait and fails the test if it does not return.
func waitErr(t *testing.T, wait func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the wait for the answer never ended")
		return nil
	}
}

// A MESSAGE carries a new transaction's headers and ends with the final
// response whose branch is its own, on whichever connection from the
// device's address it comes (linphone answers on one it opens to the Via);
// provisional responses, answers to other MESSAGEs and answers from other
// addresses do not end it.
func TestMessageEndsWithItsOwnFinalResponse(t *testing.T) {
	r := newAnswerRig(t)
	ctx := context.Background()
	first, waitFirst := r.send(t, ctx, "m1")
	second, waitSecond := r.send(t, ctx, "m2")

	via := first.Via()
	if via == nil || via.Transport != "TLS" || via.Host != "example.org" || via.Port != 5061 {
		t.Fatalf("Via %v: want SIP/2.0/TLS example.org:5061", via)
	}
	b1, _ := via.Params.Get("branch")
	b2, _ := second.Via().Params.Get("branch")
	if !strings.HasPrefix(b1, sip.RFC3261BranchMagicCookie) || b1 == b2 {
		t.Fatalf("branches %q and %q: want two distinct RFC 3261 branches", b1, b2)
	}
	if first.CallID() == nil || first.CSeq() == nil || first.CSeq().MethodName != sip.MESSAGE || first.MaxForwards() == nil {
		t.Fatalf("MESSAGE lacks Call-ID, CSeq or Max-Forwards:\n%s", first)
	}
	if first.CallID().Value() == second.CallID().Value() {
		t.Fatal("two MESSAGEs share a Call-ID")
	}

	r.answer(second, 100, r.b.Source) // provisional: not an end
	r.answer(second, 486, r.b.Source)
	var de *deliveryError
	if err := waitErr(t, waitSecond); !errors.As(err, &de) || de.Reason() != "rejected" {
		t.Fatalf("second MESSAGE: %v, want rejected", err)
	}
	r.answer(first, 200, "192.0.2.7:40000") // not the device's address: ignored
	r.s.answersMu.Lock()
	_, waiting := r.s.awaiting[b1]
	r.s.answersMu.Unlock()
	if !waiting {
		t.Fatal("an answer from another address ended the MESSAGE's wait")
	}
	r.answer(first, 200, "127.0.0.1:40001")
	if err := waitErr(t, waitFirst); err != nil {
		t.Fatalf("first MESSAGE answered 200: %v", err)
	}
	// A repeated answer finds no one waiting and changes nothing.
	r.answer(first, 500, r.b.Source)
	if n := len(r.s.awaiting); n != 0 {
		t.Fatalf("%d waits left after every MESSAGE was answered", n)
	}
}

// A MESSAGE unanswered when its connection closes fails at once as a
// connection failure, and one whose attempt times out stops waiting.
func TestMessageWaitEndsWithTheConnectionOrTheAttempt(t *testing.T) {
	r := newAnswerRig(t)
	_, wait := r.send(t, context.Background(), "m1")
	r.s.forget(r.b.Source)
	var de *deliveryError
	if err := waitErr(t, wait); !errors.As(err, &de) || de.Reason() != "connection" {
		t.Fatalf("after the close: %v, want a connection failure", err)
	}
	if _, err := r.s.StartMessage(context.Background(), r.b, queue.Delivery{ID: "m2", From: "alice", To: "bob", Text: "hi"}); !errors.As(err, &de) || de.Reason() != "offline" {
		t.Fatalf("MESSAGE on a closed connection: %v, want offline", err)
	}

	r = newAnswerRig(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	_, wait = r.send(t, ctx, "m3")
	cancel(context.DeadlineExceeded)
	if err := waitErr(t, wait); !errors.As(err, &de) || de.Reason() != "timeout" {
		t.Fatalf("after the attempt's end: %v, want timeout", err)
	}
	if n := len(r.s.awaiting); n != 0 {
		t.Fatalf("%d waits left after the attempt gave up", n)
	}
}

// A MESSAGE whose write fails is not left waiting.
func TestMessageWriteFailureIsAConnectionFailure(t *testing.T) {
	r := newAnswerRig(t)
	r.wire.fail = true
	_, err := r.s.StartMessage(context.Background(), r.b, queue.Delivery{ID: "m1", From: "alice", To: "bob", Text: "hi"})
	var de *deliveryError
	if !errors.As(err, &de) || de.Reason() != "connection" {
		t.Fatalf("write failed: %v, want a connection failure", err)
	}
	if n := len(r.s.awaiting); n != 0 {
		t.Fatalf("%d waits left after the write failed", n)
	}
}
