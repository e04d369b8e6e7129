package sipserver

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sealpost/sealpost/internal/queue"
	"github.com/sealpost/sealpost/internal/registrar"
)

// The SIP hot paths, without the network:
//
//	go test -run '^$' -bench . -benchmem ./internal/sipserver/

var text160 = strings.Repeat("Sealpost ", 18)[:160]

// BenchmarkBuildMessage builds a delivery MESSAGE and writes it out as it
// goes on the wire.
func BenchmarkBuildMessage(b *testing.B) {
	s := &Server{o: Options{Domain: "localhost"}}
	bind := registrar.Binding{Account: "bob", Source: "127.0.0.1:40000", Contact: "sip:bob@127.0.0.1:40000;transport=tls"}
	d := queue.Delivery{ID: "123e4567-e89b-12d3-a456-426614174000", From: "alice", To: "bob", Text: text160, SubmittedAt: time.Now()}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		req, err := s.messageRequest(bind, d)
		if err != nil {
			b.Fatal(err)
		}
		// The transaction layer adds Via, Call-ID, CSeq, Max-Forwards
		// and Content-Length before writing; set them here so the
		// written size is the real one.
		req.AppendHeader(sip.NewHeader("Via", "SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK.0123456789abcdef"))
		req.AppendHeader(sip.NewHeader("Call-ID", "0123456789abcdef0123456789abcdef"))
		req.AppendHeader(sip.NewHeader("CSeq", "1 MESSAGE"))
		req.AppendHeader(sip.NewHeader("Max-Forwards", "70"))
		buf.Reset()
		req.StringWrite(&buf)
	}
	b.ReportMetric(float64(buf.Len()), "bytes/msg")
}

// A MESSAGE a phone submits, and the 200 OK a phone answers a delivery
// with, as they arrive on a connection.
var (
	incomingMessage = []byte("MESSAGE sip:bob@localhost SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 127.0.0.1:40000;branch=z9hG4bKabc.1;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@localhost>;tag=a1b2c3\r\n" +
		"To: <sip:bob@localhost>\r\n" +
		"Call-ID: mabc.2\r\n" +
		"CSeq: 1 MESSAGE\r\n" +
		"Content-Type: text/plain;charset=utf-8\r\n" +
		"X-Sealpost-Message-Id: 123e4567-e89b-12d3-a456-426614174000\r\n" +
		"Content-Length: 160\r\n\r\n" + text160)
	incomingOK = []byte("SIP/2.0 200 OK\r\n" +
		"Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK.0123456789abcdef;rport=5061;received=127.0.0.1\r\n" +
		"From: <sip:alice@localhost>;tag=0123456789abcdef\r\n" +
		"To: <sip:bob@localhost>;tag=d4e5f6\r\n" +
		"Call-ID: 0123456789abcdef0123456789abcdef\r\n" +
		"CSeq: 1 MESSAGE\r\n" +
		"Content-Length: 0\r\n\r\n")
)

// BenchmarkParseMessage parses a submitted MESSAGE with sipgo's stream
// parser, as the transport does for every read.
func BenchmarkParseMessage(b *testing.B) { benchParse(b, incomingMessage) }

// BenchmarkParseResponse parses a phone's 200 OK to a delivery.
func BenchmarkParseResponse(b *testing.B) { benchParse(b, incomingOK) }

func benchParse(b *testing.B, data []byte) {
	stream := sip.NewParser().NewSIPStream()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := stream.ParseSIPStream(data, func(sip.Message) { n++ }); err != nil || n != 1 {
			b.Fatalf("parsed %d messages: %v", n, err)
		}
	}
}

// BenchmarkFrameMessage frames and checks a submitted MESSAGE as framedConn
// does for every message before sipgo parses it.
func BenchmarkFrameMessage(b *testing.B) { benchFrame(b, incomingMessage) }

// BenchmarkFrameResponse frames and checks a phone's 200 OK to a delivery.
func BenchmarkFrameResponse(b *testing.B) { benchFrame(b, incomingOK) }

func benchFrame(b *testing.B, data []byte) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		unit, rest, bad := nextUnit(data)
		if bad != nil || len(unit) != len(data) || len(rest) != 0 {
			b.Fatalf("framed %d of %d bytes: %v", len(unit), len(data), bad)
		}
	}
}
