package sipserver

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sealpost/sealpost/internal/queue"
	"github.com/sealpost/sealpost/internal/registrar"
)

func TestChallengeAlgorithmsByAgent(t *testing.T) {
	for ua, want := range map[string]string{
		"baresip v1.0.0 (x86_64/linux)": "[MD5]",
		"baresip v0.6.6":                "[MD5]",
		"baresip v3.10.0":               "[]",
		"Linphone/5.1 (belle-sip)":      "[]",
		"":                              "[]",
	} {
		req := sip.NewRequest(sip.REGISTER, sip.Uri{Host: "localhost"})
		if ua != "" {
			req.AppendHeader(sip.NewHeader("User-Agent", ua))
		}
		if got := challengeAlgorithms(req); fmtList(got) != want {
			t.Errorf("%q: %v, want %s", ua, got, want)
		}
	}
}

func TestWantsOutbound(t *testing.T) {
	mk := func(contact, supported string) (*sip.Request, *sip.ContactHeader) {
		req := sip.NewRequest(sip.REGISTER, sip.Uri{Host: "localhost"})
		var c sip.ContactHeader
		c.Params = sip.NewParams()
		if _, err := sip.ParseAddressValue(contact, &c.Address, &c.Params); err != nil {
			t.Fatal(err)
		}
		if supported != "" {
			req.AppendHeader(sip.NewHeader("Supported", supported))
		}
		return req, &c
	}
	cases := []struct {
		contact, supported string
		want               bool
	}{
		{`<sip:bob@1.2.3.4;transport=tls>;+sip.instance="<urn:uuid:1>";reg-id=1`, "replaces, outbound, gruu", true},
		{`<sip:bob@1.2.3.4;transport=tls>;reg-id=1`, "", false},
		{`<sip:bob@1.2.3.4;transport=tls>`, "outbound", false},
	}
	for _, c := range cases {
		req, contact := mk(c.contact, c.supported)
		if got := wantsOutbound(req, contact); got != c.want {
			t.Errorf("%s / %q: %v, want %v", c.contact, c.supported, got, c.want)
		}
	}
}

func fmtList(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}

// TestTrackedConnAddresses: the connection handed to sipgo tells the same
// addresses as the one under it.
func TestTrackedConnAddresses(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	var closedFrom string
	tc := newTrackedConn(c, func(remote string) { closedFrom = remote })
	if got, want := tc.LocalAddr(), c.LocalAddr(); got.String() != want.String() || got.Network() != want.Network() {
		t.Errorf("LocalAddr = %s %s, want %s %s", got.Network(), got, want.Network(), want)
	}
	if got, want := tc.RemoteAddr(), d.LocalAddr(); got.String() != want.String() || got.Network() != want.Network() {
		t.Errorf("RemoteAddr = %s %s, want %s %s", got.Network(), got, want.Network(), want)
	}
	tc.Close()
	if closedFrom != d.LocalAddr().String() {
		t.Errorf("close reported for %q, want %q", closedFrom, d.LocalAddr().String())
	}
}

// TestStartMessageOffline: a delivery to a binding whose connection is not
// open fails at once as "offline", without a transaction.
func TestStartMessageOffline(t *testing.T) {
	s, err := New(Options{Domain: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := registrar.Binding{Account: "bob", Source: "192.0.2.1:5061", Contact: "sip:bob@192.0.2.1:5061;transport=tls"}
	_, err = s.StartMessage(t.Context(), b, queue.Delivery{ID: "123e4567-e89b-12d3-a456-426614174000", From: "alice", To: "bob", Text: "hi", SubmittedAt: time.Now()})
	var re queue.ReasonError
	if !errors.As(err, &re) || re.Reason() != "offline" {
		t.Errorf("StartMessage without a connection = %v, want an offline failure", err)
	}
}
