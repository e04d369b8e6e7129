package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/message"
)

// FuzzDecodeSubmit feeds arbitrary bodies to the request decoder: it must
// never panic, must answer a status and code for every refusal, and must
// only accept bodies that are valid UTF-8 JSON objects of the right shape.
func FuzzDecodeSubmit(f *testing.F) {
	for _, s := range []string{
		`{"id":"123e4567-e89b-12d3-a456-426614174000","to":"bob","text":"hi"}`,
		`{"id":1}`, `{}`, `[]`, `{"to":"bob"} {}`, "{\"text\":\"\xff\"}", `{"cc":"x"}`, ``, `null`,
		`{"to":"bob","text":"hi","to":"carol"}`, `{"to":"bob","TO":"carol"}`, `{"a":{"b":1,"b":2}}`, `{"a":[{"b":1},{"b":2}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", api.PathMessages, bytes.NewReader(body))
		w := httptest.NewRecorder()
		var req api.SubmitRequest
		status, code, msg := decodeJSON(w, r, &req)
		if _, dup := duplicateKey(body); dup && json.Valid(body) && code != api.CodeDuplicateKey && code != message.CodeInvalidUTF8 {
			t.Fatalf("duplicate key in %q answered %d %q", body, status, code)
		}
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

func TestDuplicateKeys(t *testing.T) {
	for body, want := range map[string]string{
		`{"to":"bob","text":"hi","to":"carol"}`: "to",
		`{"to":"bob","TO":"carol"}`:             "TO",
		`{"to":"bob","\u0054o":"carol"}`:        "To",
		`{"text":"hi","teXt":"hi"}`:             "teXt",
		"{\"k\":1,\"\u212a\":2}":                "\u212a", // KELVIN SIGN folds to k, as encoding/json matches it
		`{"a":{"b":1,"b":2}}`:                   "b",
		`{"a":[{"b":1},{"b":2}],"c":{"b":3}}`:   "",
		`{"to":"to","text":"to"}`:               "",
		`{"a":{"to":1},"to":"bob"}`:             "",
	} {
		got, dup := duplicateKey([]byte(body))
		if dup != (want != "") || got != want {
			t.Errorf("%s: got %q %v, want %q", body, got, dup, want)
		}
	}
	r := httptest.NewRequest("POST", api.PathMessages, bytes.NewReader([]byte(`{"id":"123e4567-e89b-12d3-a456-426614174000","to":"bob","text":"hi","To":"carol"}`)))
	var req api.SubmitRequest
	if status, code, _ := decodeJSON(httptest.NewRecorder(), r, &req); status != 400 || code != api.CodeDuplicateKey {
		t.Fatalf("duplicate to: %d %q, want 400 %s", status, code, api.CodeDuplicateKey)
	}
}

// failingBody fails as a read timeout does, naming the sockets.
type failingBody struct{}

func (failingBody) Read([]byte) (int, error) {
	return 0, errors.New("read tcp 10.1.2.3:8443->198.51.100.7:50312: i/o timeout")
}

func TestBodyReadErrorNamesNoAddress(t *testing.T) {
	r := httptest.NewRequest("POST", api.PathMessages, failingBody{})
	var req api.SubmitRequest
	status, code, msg := decodeJSON(httptest.NewRecorder(), r, &req)
	if status != http.StatusBadRequest || code != api.CodeBadRequest {
		t.Fatalf("%d %q", status, code)
	}
	if strings.Contains(msg, "10.1.2.3") || strings.Contains(msg, "198.51.100.7") || strings.Contains(msg, "tcp") {
		t.Fatalf("the answer names the sockets: %q", msg)
	}
}
