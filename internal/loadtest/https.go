package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/sealpost/sealpost/api"
)

// httpsSender submits messages over one keep-alive HTTPS connection, one
// request at a time, as a client that sends in order does. It writes
// HTTP/1.1 by hand (the request is a fixed shape) and reads answers with
// net/http's parser.
type httpsSender struct {
	addr    string // host:port
	tls     *tls.Config
	src     *sources
	token   string
	timeout time.Duration

	conn net.Conn
	br   *bufio.Reader
	buf  bytes.Buffer
}

// submit posts one message and returns the HTTP status and, for an error
// answer, its API error code.
func (s *httpsSender) submit(ctx context.Context, to, id, text string) (int, string, error) {
	body, err := json.Marshal(api.SubmitRequest{ID: id, To: to, Text: text})
	if err != nil {
		return 0, "", err
	}
	s.buf.Reset()
	fmt.Fprintf(&s.buf, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		api.PathMessages, s.addr, s.token, len(body))
	s.buf.Write(body)
	// A request on a kept-alive connection may find it closed by the
	// server (idle timeout); it is sent once more on a fresh connection.
	// That is safe: the id makes a repeated submission the same message.
	var status int
	var code string
	for try := 0; try < 2; try++ {
		reused := s.conn != nil
		status, code, err = s.roundTrip(ctx)
		if err == nil || !reused {
			break
		}
	}
	return status, code, err
}

// roundTrip sends the request in buf and reads the answer. On any error
// the connection is closed.
func (s *httpsSender) roundTrip(ctx context.Context) (int, string, error) {
	if s.conn == nil {
		dialer := tls.Dialer{NetDialer: &net.Dialer{LocalAddr: s.src.next()}, Config: s.tls}
		dctx, cancel := context.WithTimeout(ctx, s.timeout)
		conn, err := dialer.DialContext(dctx, "tcp", s.addr)
		cancel()
		if err != nil {
			return 0, "", classify("connect", err)
		}
		s.conn, s.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	fail := func(err error) (int, string, error) {
		s.close()
		return 0, "", classify("connection", err)
	}
	if err := s.conn.SetDeadline(time.Now().Add(s.timeout)); err != nil {
		return fail(err)
	}
	if _, err := s.conn.Write(s.buf.Bytes()); err != nil {
		return fail(err)
	}
	res, err := http.ReadResponse(s.br, nil)
	if err != nil {
		return fail(err)
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if err != nil {
		return fail(err)
	}
	if res.Close {
		s.close()
	}
	if res.StatusCode >= 400 {
		var eb api.ErrorBody
		_ = json.Unmarshal(raw, &eb)
		return res.StatusCode, eb.Error.Code, nil
	}
	return res.StatusCode, "", nil
}

func (s *httpsSender) close() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}

// fetchToken logs in with HTTP Basic and returns a bearer token.
func fetchToken(ctx context.Context, client *http.Client, base, account, password string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", base+api.PathTokens, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(account+":"+password)))
	res, err := client.Do(req)
	if err != nil {
		return "", classify("token", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		return "", &statusError{kind: "token_" + strconv.Itoa(res.StatusCode), msg: fmt.Sprintf("token for %s: HTTP %d", account, res.StatusCode)}
	}
	var tr api.TokenResponse
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil {
		return "", fmt.Errorf("token for %s: decoding the answer: %w", account, err)
	}
	return tr.Token, nil
}
