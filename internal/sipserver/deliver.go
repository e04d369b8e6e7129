package sipserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/queue"
	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// deliveryError says why a MESSAGE to a device did not get a 2xx.
type deliveryError struct {
	reason string // offline, connection, timeout, rejected
	err    error
}

func (e *deliveryError) Error() string  { return e.reason + ": " + e.err.Error() }
func (e *deliveryError) Unwrap() error  { return e.err }
func (e *deliveryError) Reason() string { return e.reason }

var _ queue.ReasonError = (*deliveryError)(nil)

// StartMessage writes a MESSAGE delivering d to the device of b, over the
// connection it registered on, and returns without waiting for the answer;
// wait blocks until the device's final response (nil only for a 2xx) or
// until ctx ends. The write happens before StartMessage returns, so
// MESSAGEs started one after another are on the wire, and reach the device,
// in that order.
func (s *Server) StartMessage(ctx context.Context, b registrar.Binding, d queue.Delivery) (wait func() error, err error) {
	req, err := s.messageRequest(b, d)
	if err != nil {
		return nil, err
	}
	return s.start(ctx, b, req)
}

// Burst gathers the writes to the connection of b's device until end is
// called, so that the MESSAGEs a delivery run starts one after another go
// out in one TLS record and one system call (queue.Burster).
func (s *Server) Burst(b registrar.Binding) (end func()) {
	s.connMu.Lock()
	c := s.conns[b.Source]
	s.connMu.Unlock()
	if c == nil {
		return func() {}
	}
	c.hold()
	return c.release
}

// messageRequest builds the MESSAGE that delivers d to the device of b.
func (s *Server) messageRequest(b registrar.Binding, d queue.Delivery) (*sip.Request, error) {
	req, err := s.newRequest(b, d.From)
	if err != nil {
		return nil, err
	}
	req.AppendHeader(sip.NewHeader("Content-Type", "text/plain;charset=utf-8"))
	req.AppendHeader(sip.NewHeader(api.HeaderMessageID, d.ID))
	req.AppendHeader(sip.NewHeader(api.HeaderSubmittedAt, d.SubmittedAt.UTC().Format(time.RFC3339Nano)))
	req.SetBody([]byte(d.Text))
	return req, nil
}

// SendReport forwards a delivery report (RFC 5438 message/imdn+xml) to the
// device of the original sender. It comes From the original recipient,
// whose delivery it reports.
func (s *Server) SendReport(ctx context.Context, b registrar.Binding, r store.Report) error {
	status := api.IMDNDelivered
	if r.Status != message.Delivered {
		status = api.IMDNFailed
	}
	body, err := api.MarshalIMDN(api.IMDN{
		MessageID: r.MessageID,
		DateTime:  r.At,
		Recipient: "sip:" + r.Recipient + "@" + s.o.Domain,
		Status:    status,
	})
	if err != nil {
		return err
	}
	req, err := s.newRequest(b, r.Recipient)
	if err != nil {
		return err
	}
	req.AppendHeader(sip.NewHeader("Content-Type", api.ContentTypeIMDN))
	req.AppendHeader(sip.NewHeader("Content-Disposition", "notification"))
	req.SetBody(body)
	return s.do(ctx, b, req)
}

// newRequest builds a MESSAGE from the account `from` to the device of b:
// Request-URI is the device's Contact (RFC 3261 §16.5), the transport
// destination the source address of its connection.
func (s *Server) newRequest(b registrar.Binding, from string) (*sip.Request, error) {
	var ruri sip.Uri
	if err := sip.ParseUri(b.Contact, &ruri); err != nil {
		ruri = sip.Uri{Scheme: "sip", User: b.Account, Host: s.o.Domain}
	}
	req := sip.NewRequest(sip.MESSAGE, ruri)
	fromHdr := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: from, Host: s.o.Domain}, Params: sip.NewParams()}
	fromHdr.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(fromHdr)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: b.Account, Host: s.o.Domain}, Params: sip.NewParams()})
	req.SetTransport("TLS")
	req.SetDestination(b.Source)
	return req, nil
}

func (s *Server) do(ctx context.Context, b registrar.Binding, req *sip.Request) error {
	wait, err := s.start(ctx, b, req)
	if err != nil {
		return err
	}
	return wait()
}

// start writes req on the connection of b's device and returns the wait
// for its final response (answers.go).
func (s *Server) start(ctx context.Context, b registrar.Binding, req *sip.Request) (wait func() error, err error) {
	// The server never dials: without the device's own connection the
	// MESSAGE is certain to fail, so it fails at once as "offline".
	s.connMu.Lock()
	c := s.conns[b.Source]
	s.connMu.Unlock()
	if c == nil {
		return nil, &deliveryError{"offline", fmt.Errorf("no connection from %s", b.Source)}
	}
	branch := s.addTransactionHeaders(req, c)
	answered, open := s.expect(c, b.Source, branch)
	if !open {
		return nil, &deliveryError{"offline", fmt.Errorf("connection from %s closed", b.Source)}
	}
	buf := requestBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	req.StringWrite(buf)
	_, err = c.Write(buf.Bytes())
	requestBuffers.Put(buf)
	if err != nil {
		s.unexpect(branch)
		return nil, &deliveryError{"connection", err}
	}
	return func() error {
		select {
		case a := <-answered:
			switch {
			case a.err != nil:
				return &deliveryError{"connection", a.err}
			case !a.res.IsSuccess():
				return &deliveryError{"rejected", fmt.Errorf("device answered %d %s", a.res.StatusCode, a.res.Reason)}
			}
			return nil
		case <-ctx.Done():
			s.unexpect(branch)
			// The cause says why: the attempt timed out, the device's
			// connection closed, or it moved.
			return sendError(context.Cause(ctx))
		}
	}, nil
}

// sendError names why a MESSAGE's wait ended without a final response.
func sendError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &deliveryError{"timeout", err}
	}
	return &deliveryError{"connection", err}
}
