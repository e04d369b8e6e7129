package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/server/servertest"
)

// apiCall makes an HTTPS call with a bearer token and decodes the answer
// into out (if not nil). It returns the status code and the error body.
func apiCall(t *testing.T, s *servertest.Server, method, path, token string, body any, out any) (int, api.Error) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.HTTPSURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var eb api.ErrorBody
	if res.StatusCode >= 400 {
		if err := json.Unmarshal(raw, &eb); err != nil {
			t.Fatalf("%s %s: %d with a body that is not the error shape: %s", method, path, res.StatusCode, raw)
		}
		if eb.Error.Code == "" || eb.Error.Message == "" {
			t.Fatalf("%s %s: %d error without code or message: %s", method, path, res.StatusCode, raw)
		}
	} else if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, raw, err)
		}
	}
	return res.StatusCode, eb.Error
}

// postRaw posts body as it is to /v1/messages (for bodies a JSON encoder
// would not produce) and returns the status code.
func postRaw(t *testing.T, s *servertest.Server, token string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathMessages, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func submit(t *testing.T, s *servertest.Server, token, id, to, text string) (int, api.SubmitResponse, api.Error) {
	t.Helper()
	var out api.SubmitResponse
	code, e := apiCall(t, s, "POST", api.PathMessages, token, api.SubmitRequest{ID: id, To: to, Text: text}, &out)
	return code, out, e
}

func status(t *testing.T, s *servertest.Server, token, id string) (int, api.MessageStatus) {
	t.Helper()
	var out api.MessageStatus
	code, _ := apiCall(t, s, "GET", api.PathMessages+"/"+id, token, nil, &out)
	return code, out
}

func waitStatus(t *testing.T, s *servertest.Server, token, id, want string) {
	t.Helper()
	servertest.CheckFor(t, 10*1e9, func() error {
		_, st := status(t, s, token, id)
		if st.Status != want {
			return fmt.Errorf("message %s is %q, want %q", id, st.Status, want)
		}
		return nil
	})
}
