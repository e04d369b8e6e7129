package sipserver

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
)

// The server's MESSAGEs to devices do not go through sipgo's client
// transactions. Over TLS a non-INVITE client transaction is one write and
// a wait for the final response (RFC 3261 §17.1.2.2: no retransmission on
// a reliable transport; the timeout is the caller's, the queue's attempt
// timeout, 32 s as Timer F). sipgo paid for each a transaction object, two
// timers, a state machine, a key in a shared table, a reference count on
// the connection and a blocking hand-off of the response through the
// transaction: 15 % of the server's CPU in a drain. Here the server keeps the branches it waits on,
// and the response that matches one (§17.1.3: the top Via's branch and the
// CSeq method) is handed to its waiter; sipgo passes us every response that
// matches none of its own transactions.

// errConnectionClosed ends the waits of a connection that closed.
var errConnectionClosed = errors.New("connection closed before the device answered")

// answer is a device's final response to a MESSAGE, or why none came.
type answer struct {
	res *sip.Response
	err error
}

// awaited is a MESSAGE waiting for its final response: the connection it
// went out on and its remote address, and where the answer goes (buffered,
// settled once).
type awaited struct {
	c      *framedConn
	remote string
	ch     chan answer
}

// expect registers branch, sent on c to remote, as awaiting its final
// response; false when c is already closed.
func (s *Server) expect(c *framedConn, remote, branch string) (<-chan answer, bool) {
	ch := make(chan answer, 1)
	s.answersMu.Lock()
	defer s.answersMu.Unlock()
	c.mu.Lock()
	gone := c.gone
	c.mu.Unlock()
	if gone {
		return nil, false // forget has run, or runs failAwaiting after this
	}
	s.awaiting[branch] = awaited{c, remote, ch}
	c.awaitingN++
	return ch, true
}

// settle hands a final response, read from source, to the MESSAGE of
// branch; false if none waits for it (a late answer to a MESSAGE whose
// attempt timed out, or a stray one). The answer may come on another
// connection than the MESSAGE: linphone opens one to the Via's sent-by for
// its responses (RFC 3261 §18.2.2). So the branch, seen only by the device,
// is what matches, and the answer must come from the device's own address.
func (s *Server) settle(branch, source string, a answer) bool {
	s.answersMu.Lock()
	w, ok := s.awaiting[branch]
	if ok && !sameHost(w.remote, source) {
		ok = false
	}
	if ok {
		delete(s.awaiting, branch)
		w.c.awaitingN--
	}
	s.answersMu.Unlock()
	if ok {
		w.ch <- a
	}
	return ok
}

// unexpect stops waiting for branch (the caller gave up).
func (s *Server) unexpect(branch string) {
	s.answersMu.Lock()
	if w, ok := s.awaiting[branch]; ok {
		delete(s.awaiting, branch)
		w.c.awaitingN--
	}
	s.answersMu.Unlock()
}

// failAwaiting ends the waits of the MESSAGEs sent on c, which closed
// (its gone is set).
func (s *Server) failAwaiting(c *framedConn) {
	var failed []chan answer
	s.answersMu.Lock()
	if c.awaitingN > 0 {
		for branch, w := range s.awaiting {
			if w.c == c {
				delete(s.awaiting, branch)
				failed = append(failed, w.ch)
			}
		}
		c.awaitingN = 0
	}
	s.answersMu.Unlock()
	for _, ch := range failed {
		ch <- answer{err: errConnectionClosed}
	}
}

// onResponse takes the responses sipgo matched to none of its transactions:
// those to the server's MESSAGEs.
func (s *Server) onResponse(res *sip.Response) {
	if res.IsProvisional() {
		return // a MESSAGE's only answer that counts is the final one
	}
	via, cseq := res.Via(), res.CSeq()
	if via == nil || cseq == nil || cseq.MethodName != sip.MESSAGE {
		return
	}
	branch, _ := via.Params.Get("branch")
	if !s.settle(branch, res.Source(), answer{res: res}) {
		s.o.Log.Debug("sip response matches no waiting MESSAGE", "code", res.StatusCode, "remote", res.Source())
	}
}

// addTransactionHeaders gives a request the server sends on c the headers
// of a new transaction (RFC 3261 §8.1.1): Via with a fresh branch, Call-ID,
// CSeq and Max-Forwards; it returns the branch.
func (s *Server) addTransactionHeaders(req *sip.Request, c *framedConn) string {
	branch := sip.GenerateBranchN(16)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TLS", Host: s.o.Domain, Port: c.localPort}
	via.Params.Add("branch", branch)
	callID := sip.CallIDHeader(uuid.NewString())
	cseq := &sip.CSeqHeader{SeqNo: 1 + rand.Uint32N(32767), MethodName: req.Method}
	maxForwards := sip.MaxForwardsHeader(70)
	req.PrependHeader(via, &callID, cseq, &maxForwards)
	return branch
}

var requestBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// sameHost reports whether two host:port addresses have the same host.
func sameHost(a, b string) bool {
	if a == b {
		return true
	}
	ha, _, errA := net.SplitHostPort(a)
	hb, _, errB := net.SplitHostPort(b)
	return errA == nil && errB == nil && ha == hb
}
