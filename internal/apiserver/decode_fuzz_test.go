package apiserver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sealpost/sealpost/api"
)

// FuzzDecodeSubmit feeds arbitrary bodies to the request decoder: it must
// never panic, must answer a status and code for every refusal, and must
// only accept bodies that are valid UTF-8 JSON objects of the right shape.
func FuzzDecodeSubmit(f *testing.F) {
	for _, s := range []string{
		`{"id":"123e4567-e89b-12d3-a456-426614174000","to":"bob","text":"hi"}`,
		`{"id":1}`, `{}`, `[]`, `{"to":"bob"} {}`, "{\"text\":\"\xff\"}", `{"cc":"x"}`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", api.PathMessages, bytes.NewReader(body))
		w := httptest.NewRecorder()
		var req api.SubmitRequest
		status, code, msg := decodeJSON(w, r, &req)
		if status == 0 {
			if code != "" || msg != "" {
				t.Fatalf("accepted with code %q", code)
			}
			return
		}
		if code == "" || msg == "" {
			t.Fatalf("refusal %d without code or message for %q", status, body)
		}
		if status != http.StatusBadRequest && status != http.StatusUnprocessableEntity && status != http.StatusRequestEntityTooLarge {
			t.Fatalf("unexpected status %d", status)
		}
	})
}
