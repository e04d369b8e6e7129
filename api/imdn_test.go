package api
import ("testing";"time")
func TestIMDNRoundTrip(t *testing.T){
 for _, st := range []string{IMDNDelivered, IMDNFailed} {
 in := IMDN{MessageID:"123e4567-e89b-12d3-a456-426614174000", DateTime: time.Date(2026,1,2,3,4,5,6,time.UTC), Recipient:"sip:bob@localhost", Status: st}
 b, err := MarshalIMDN(in); if err!=nil {t.Fatal(err)}
 out, err := ParseIMDN(b); if err!=nil {t.Fatal(err, string(b))}
 if out != in { t.Fatalf("got %+v want %+v\n%s", out, in, b) }
 }
 if _, err := ParseIMDN([]byte("<imdn/>")); err == nil { t.Fatal("want error") }
}
