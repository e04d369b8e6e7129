package api

import (
	"testing"
	"time"
)

func TestIMDNRoundTrip(t *testing.T) {
	for _, st := range []string{IMDNDelivered, IMDNFailed} {
		in := IMDN{MessageID: "123e4567-e89b-12d3-a456-426614174000", DateTime: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Recipient: "sip:bob@localhost", Status: st}
		b, err := MarshalIMDN(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := ParseIMDN(b)
		if err != nil {
			t.Fatal(err, string(b))
		}
		if out != in {
			t.Fatalf("got %+v want %+v\n%s", out, in, b)
		}
	}
	if _, err := ParseIMDN([]byte("<imdn/>")); err == nil {
		t.Fatal("want error")
	}
}

// FuzzParseIMDN: the report decoder never panics, and whatever it accepts
// has a message id and a known status.
func FuzzParseIMDN(f *testing.F) {
	b, _ := MarshalIMDN(IMDN{MessageID: "x", Status: IMDNDelivered})
	f.Add(b)
	f.Add([]byte("<imdn/>"))
	f.Add([]byte(`<imdn xmlns="urn:ietf:params:xml:ns:imdn"><message-id>a</message-id><delivery-notification><status><error/></status></delivery-notification></imdn>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseIMDN(body)
		if err != nil {
			return
		}
		if r.MessageID == "" || (r.Status != IMDNDelivered && r.Status != IMDNFailed) {
			t.Fatalf("accepted %+v from %q", r, body)
		}
	})
}
