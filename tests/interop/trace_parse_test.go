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
