package interop

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// The testdata logs are real: baresip 1.0.0's stdout with -s, and an excerpt
// of linphonec 5.1's log at -d 6, both from a run of TestStandardClients.

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseTraceBaresip(t *testing.T) {
	msgs := parseTrace(readTestdata(t, "baresip-stdout.log"))
	var starts []string
	for _, m := range msgs {
		if m.Status != 0 {
			starts = append(starts, m.Method+" "+strconv.Itoa(m.Status))
		} else {
			starts = append(starts, m.Method)
		}
	}
	want := "REGISTER,REGISTER 401,REGISTER,REGISTER 200,MESSAGE,MESSAGE 200,MESSAGE,MESSAGE 200,MESSAGE,MESSAGE 202,MESSAGE,MESSAGE 202,MESSAGE,MESSAGE 200,REGISTER,REGISTER 401,REGISTER,REGISTER 200"
	if got := strings.Join(starts, ","); got != want {
		t.Fatalf("messages:\n got %s\nwant %s", got, want)
	}

	got := receivedMessages(msgs, "bob")
	if len(got) != 3 {
		t.Fatalf("received %d MESSAGEs, want 3 (from alice, dave, carol): %v", len(got), got)
	}
	first := got[0]
	if uriUser(first.header("From")) != "alice" || first.Body != "alice to bob #1: grüße 👍🏽" {
		t.Errorf("first delivery: From %q body %q", first.header("From"), first.Body)
	}
	if first.header("Content-Type") != "text/plain;charset=utf-8" || first.header("X-Sealpost-Message-Id") == "" {
		t.Errorf("first delivery headers: %v", first.Headers)
	}

	req, res, ok := finalResponse(msgs, "bob to alice #5")
	if !ok || res.Status != 202 || req.URI != "sip:alice@localhost" {
		t.Fatalf("final response to bob's MESSAGE to alice: %v %v %v", req, res, ok)
	}
	if _, _, ok := finalResponse(msgs, "never sent"); ok {
		t.Fatal("found a response to a MESSAGE that was never sent")
	}

	regs := registerRequests(msgs)
	if len(regs) != 4 || expiresOf(regs[1]) <= 0 || expiresOf(regs[3]) != 0 {
		t.Fatalf("REGISTERs: %d, expires %d and %d; want 4, registered then un-registered", len(regs), expiresOf(regs[1]), expiresOf(regs[3]))
	}
	if !strings.HasPrefix(regs[1].header("Authorization"), "Digest ") {
		t.Errorf("answer to the challenge has Authorization %q", regs[1].header("Authorization"))
	}
	if r := reportsIn(got); len(r) != 0 {
		t.Errorf("reports found among text messages: %v", r)
	}
}

func TestParseTraceLinphonec(t *testing.T) {
	msgs := parseTrace(readTestdata(t, "linphonec.log"))
	got := receivedMessages(msgs, "carol")
	if len(got) != 2 {
		t.Fatalf("received %d MESSAGEs, want 2: %v", len(got), got)
	}
	if got[0].Body != "alice to carol #3: grüße 👍🏽" || got[1].Body != "dave to carol #4: grüße 👍🏽" {
		t.Errorf("bodies %q, %q", got[0].Body, got[1].Body)
	}
	// linphonec answers each delivery with an IMDN of its own (deflated, so
	// the log shows no body); the parser must still see its type.
	var sent []sipMsg
	for _, m := range msgs {
		if m.Status == 0 && m.Method == "MESSAGE" && uriUser(m.header("From")) == "carol" {
			sent = append(sent, m)
		}
	}
	if r := reportsIn(sent); len(r) != 2 {
		t.Fatalf("linphonec sent %d IMDNs in this excerpt, want 2: %v", len(r), sent)
	}
	_, res, ok := finalResponse(msgs, "carol to alice #6")
	if !ok || res.Status != 202 {
		t.Fatalf("final response to carol's MESSAGE: %v %v", res, ok)
	}
	if rr := registerResponses(msgs); len(rr) != 2 || rr[0].Status != 401 || rr[1].Status != 200 {
		t.Fatalf("REGISTER responses: %v", rr)
	}
}

func TestReportsInFindsIMDN(t *testing.T) {
	log := "MESSAGE sip:bob@127.0.0.1:5000;transport=tls SIP/2.0\r\n" +
		"From: <sip:alice@localhost>;tag=1\r\nTo: <sip:bob@localhost>\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\n" +
		"Content-Type: message/imdn+xml\r\nContent-Length: 5\r\n\r\n<imdn\r\n"
	msgs := parseTrace(log)
	if len(msgs) != 1 || len(reportsIn(receivedMessages(msgs, "bob"))) != 1 {
		t.Fatalf("an IMDN delivered to bob was not found: %v", msgs)
	}
}

// daveToCarol is a MESSAGE as it crosses the wire: no line end after its
// body.
func daveToCarol(cseq int, body string) string {
	return "MESSAGE sip:carol@127.0.0.1:5061;transport=tls SIP/2.0\r\n" +
		"From: <sip:dave@localhost>;tag=" + strconv.Itoa(cseq) + "\r\n" +
		"To: <sip:carol@localhost>\r\n" +
		"CSeq: " + strconv.Itoa(cseq) + " MESSAGE\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// Two MESSAGEs that came in one TLS record are logged as read: the second's
// start line right after the first's body, on its line.
func TestParseTraceGluedMessages(t *testing.T) {
	first, second := "dave to carol #1: grüße 👍🏽", "dave to carol #2"
	log := "channel: received 900 new bytes:\n" + daveToCarol(1, first) + daveToCarol(2, second) + "\nlinphonec> "
	got := receivedMessages(parseTrace(log), "carol")
	if len(got) != 2 || got[0].Body != first || got[1].Body != second {
		t.Fatalf("parsed %d MESSAGEs: %v; want the two, with bodies %q and %q", len(got), got, first, second)
	}
	if n, _ := got[1].cseq(); n != 2 {
		t.Fatalf("second MESSAGE has CSeq %d, want 2", n)
	}
}

// belle-sip logs each read as it came: here two MESSAGEs, the second cut by
// the end of the read and finished by the next one. Reassembled, both are
// whole, the second where its last byte was read.
func TestReassembleReads(t *testing.T) {
	first, second := "dave to carol #1: grüße 👍🏽", "dave to carol #2: grüße 👍🏽"
	stream := daveToCarol(1, first) + daveToCarol(2, second)
	cut := len(stream) - 10
	read := func(b string) string {
		return "2026-12-02 05:01:39:701 belle-sip-message-channel [0x55bf]: received [" + strconv.Itoa(len(b)) + "] new bytes from [TLS://127.0.0.1:5061]:\n" + b + "\n"
	}
	log := read(stream[:cut]) + "2026-12-02 05:01:39:703 belle-sip-message-channel [0x55bf] [465] bytes parsed\n" + read(stream[cut:]) + read("\r\n\r\n")
	got := receivedMessages(parseTrace(reassembleReads(log)), "carol")
	if len(got) != 2 || got[0].Body != first || got[1].Body != second {
		t.Fatalf("parsed %d MESSAGEs: %v; want both whole, bodies %q and %q", len(got), got, first, second)
	}
	// The real log of a run, read the same way, gives the same messages.
	real := readTestdata(t, "linphonec.log")
	if a, b := receivedMessages(parseTrace(real), "carol"), receivedMessages(parseTrace(reassembleReads(real)), "carol"); len(a) == 0 || len(a) != len(b) || a[0].Body != b[0].Body {
		t.Fatalf("testdata: %d MESSAGEs as logged, %d reassembled", len(a), len(b))
	}
}
