package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sealpost/sealpost/api"
)

// submitter is the part of the HTTPS API the outbox needs; tests give the
// core a fake one to run the retry rule on a fake clock.
type submitter interface {
	submit(ctx context.Context, req api.SubmitRequest) (api.SubmitResponse, error)
}

// serverError is an answer of the server that is not a success.
type serverError struct {
	Status  int
	Code    string
	Message string
}

func (e *serverError) Error() string {
	if e.Status == http.StatusUnauthorized {
		return fmt.Sprintf("the server no longer accepts this device's token (401: %s); run sealpost login", e.Message)
	}
	if e.Message != "" {
		return fmt.Sprintf("the server refused it (%d %s): %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("the server answered %d %s", e.Status, http.StatusText(e.Status))
}

// permanent reports whether retrying the same request cannot help. Any 4xx
// is a refusal of the request (the contract: Error at once), with two
// exceptions that say nothing about the message: 408 and 429 rate_limited
// ask to come back later. A 401 is permanent too: the device's token is
// revoked or expired, and no retry with it can succeed; the message is
// Error at once with "run sealpost login", and can be sent again with
// `sealpost resend` after logging in. 5xx and network errors are
// temporary; an unknown error is temporary too, so nothing is given up on
// a guess.
func permanent(err error) bool {
	var se *serverError
	if !errors.As(err, &se) {
		return false
	}
	if se.Status == http.StatusRequestTimeout {
		return false
	}
	if se.Status == http.StatusTooManyRequests && se.Code == api.CodeRateLimited {
		return false
	}
	return se.Status >= 400 && se.Status < 500
}

type apiClient struct {
	base   string
	bearer string
	hc     *http.Client
}

func newAPIClient(base string, conf *tls.Config, token string) *apiClient {
	tr := &http.Transport{
		TLSClientConfig:   conf,
		ForceAttemptHTTP2: true,
		// Each attempt is bounded by its context on the core's clock, not
		// by a wall-clock client timeout.
		MaxIdleConnsPerHost: 2,
	}
	return &apiClient{base: base, bearer: token, hc: &http.Client{Transport: tr}}
}

func (a *apiClient) close() { a.hc.CloseIdleConnections() }

func (a *apiClient) token(ctx context.Context, account, password string) (api.TokenResponse, error) {
	var out api.TokenResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+api.PathTokens, nil)
	if err != nil {
		return out, err
	}
	req.SetBasicAuth(account, password)
	err = a.do(req, http.StatusCreated, &out)
	var se *serverError
	if errors.As(err, &se) && se.Status == http.StatusUnauthorized {
		return out, fmt.Errorf("the server refused the account name or password (401: %s)", se.Message)
	}
	return out, err
}

func (a *apiClient) submit(ctx context.Context, r api.SubmitRequest) (api.SubmitResponse, error) {
	var out api.SubmitResponse
	body, err := json.Marshal(r)
	if err != nil {
		return out, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+api.PathMessages, bytes.NewReader(body))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.bearer)
	return out, a.do(req, 0, &out)
}

func (a *apiClient) status(ctx context.Context, id string) (api.MessageStatus, error) {
	var out api.MessageStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+api.PathMessages+"/"+url.PathEscape(id), nil)
	if err != nil {
		return out, err
	}
	req.Header.Set("Authorization", "Bearer "+a.bearer)
	return out, a.do(req, http.StatusOK, &out)
}

// do sends req and decodes a 2xx answer into out (want 0: any 2xx).
func (a *apiClient) do(req *http.Request, want int, out any) error {
	res, err := a.hc.Do(req)
	if err != nil {
		return explainTLS(err, a.base)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read the answer of %s: %w", a.base, err)
	}
	ok := res.StatusCode == want || want == 0 && res.StatusCode/100 == 2
	if !ok {
		se := &serverError{Status: res.StatusCode}
		var eb api.ErrorBody
		if json.Unmarshal(body, &eb) == nil {
			se.Code, se.Message = eb.Error.Code, eb.Error.Message
		}
		return se
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("the server's answer is not the expected JSON (%d, %q): %w", res.StatusCode, strings.TrimSpace(string(truncate(body, 200))), err)
	}
	return nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// statuses asks the server for the status of up to api.MaxStatusIDs
// messages in one request (POST /v1/messages/status).
func (a *apiClient) statuses(ctx context.Context, ids []string) (api.StatusResponse, error) {
	var out api.StatusResponse
	return out, a.postJSON(ctx, api.PathMessageStatus, api.StatusRequest{IDs: ids}, http.StatusOK, &out)
}

// changePassword sets a new password; the answer is a new token, as every
// other token of the account is revoked.
func (a *apiClient) changePassword(ctx context.Context, current, next string) (api.TokenResponse, error) {
	var out api.TokenResponse
	err := a.postJSON(ctx, api.PathPassword, api.PasswordRequest{Password: current, NewPassword: next}, http.StatusOK, &out)
	var se *serverError
	if errors.As(err, &se) && se.Status == http.StatusForbidden {
		return out, fmt.Errorf("the server refused the current password (403: %s)", se.Message)
	}
	return out, err
}

// revoke deletes the device's token on the server (DELETE /v1/tokens).
func (a *apiClient) revoke(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, a.base+api.PathTokens, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.bearer)
	return a.do(req, http.StatusNoContent, nil)
}

func (a *apiClient) postJSON(ctx context.Context, path string, in any, want int, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.bearer)
	return a.do(req, want, out)
}
