// Package servertest starts a real sealpostd in-process for tests: real TLS
// on loopback ports with a generated certificate, the real SQLite file in a
// temporary folder, and optionally a fake clock for the time rules.
//
// With SEALPOST_TEST_STORE=postgres every server stores on PostgreSQL
// instead, in a fresh database of its own on the test server (pgtest), so
// the same end-to-end tests show both backends.
package servertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/store/postgres/pgtest"
)

// Server is a running test server.
type Server struct {
	*server.Server
	HTTPSURL  string // https://127.0.0.1:PORT
	SIPAddr   string // 127.0.0.1:PORT, SIP over TLS
	AdminURL  string // http://127.0.0.1:PORT
	Domain    string // "localhost"
	CAFile    string // PEM of the self-signed certificate
	CertPool  *x509.CertPool
	DataDir   string
	StoreURL  string      // the --store of the server: empty for SQLite in DataDir
	Clock     *clock.Fake // nil unless WithFakeClock
	opts      server.Options
	logWriter *testWriter
}

// Option changes how the test server starts.
type Option func(*server.Options, *Server)

// WithFakeClock runs the server on a fake clock set to start.
func WithFakeClock(start time.Time) Option {
	return func(o *server.Options, s *Server) {
		s.Clock = clock.NewFake(start)
		o.Clock = s.Clock
	}
}

// WithOptions lets a test change any server option.
func WithOptions(f func(*server.Options)) Option {
	return func(o *server.Options, _ *Server) { f(o) }
}

// Start starts a server on loopback ports chosen by the kernel and stops it
// when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{DataDir: t.TempDir(), Domain: "localhost"}
	s.opts = server.Options{
		DataDir:   s.DataDir,
		HTTPSAddr: "127.0.0.1:0",
		SIPAddr:   "127.0.0.1:0",
		AdminAddr: "127.0.0.1:0",
		Domain:    s.Domain,
		// As sealpostd serve does.
		CheckStore: true,
	}
	if OnPostgres() {
		s.opts.StoreURL = pgtest.NewDatabase(t)
	}
	for _, o := range opts {
		o(&s.opts, s)
	}
	// Every test client connects from 127.0.0.1, and many leave idle
	// HTTPS connections behind: the per-address caps are raised unless a
	// test sets them. The SIP auth deadline is moved off the 30 s of the
	// retry interval, so a test waiting for a retry timer (HasTimerAt) is
	// not satisfied by a connection's check instead.
	if s.opts.Connections.PerAddressHTTPS == 0 {
		s.opts.Connections.PerAddressHTTPS = 4096
	}
	if s.opts.Connections.PerAddressSIP == 0 {
		s.opts.Connections.PerAddressSIP = 4096
	}
	if s.opts.SIPAuthTimeout == 0 {
		s.opts.SIPAuthTimeout = 47 * time.Second
	}
	s.StoreURL = s.opts.StoreURL
	s.logWriter = &testWriter{t: t}
	s.opts.Log = slog.New(slog.NewTextHandler(s.logWriter, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s.start(t)
	// Later starts (Restart) reuse the ports.
	s.opts.HTTPSAddr, s.opts.SIPAddr, s.opts.AdminAddr = s.Server.HTTPSAddr(), s.Server.SIPAddr(), s.Server.AdminAddr()
	t.Cleanup(func() {
		s.Stop(t)
		s.logWriter.close()
	})
	return s
}

// OnPostgres reports whether the tests run on PostgreSQL
// (SEALPOST_TEST_STORE=postgres) rather than the embedded SQLite store.
func OnPostgres() bool { return os.Getenv("SEALPOST_TEST_STORE") == "postgres" }

func (s *Server) start(t testing.TB) {
	t.Helper()
	srv, err := server.New(s.opts)
	if err != nil {
		t.Fatalf("servertest: new server: %v", err)
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		t.Fatalf("servertest: start server: %v", err)
	}
	s.Server = srv
	s.HTTPSURL = "https://" + srv.HTTPSAddr()
	s.SIPAddr = srv.SIPAddr()
	s.AdminURL = "http://" + srv.AdminAddr()
	s.CAFile = srv.CertFile
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatalf("servertest: reading certificate: %v", err)
	}
	s.CertPool = x509.NewCertPool()
	if !s.CertPool.AppendCertsFromPEM(pem) {
		t.Fatalf("servertest: no certificate in %s", s.CAFile)
	}
}

// Stop shuts the server down (idempotent).
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.Server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Server.Shutdown(ctx); err != nil {
		t.Errorf("servertest: shutdown: %v", err)
	}
	s.Server = nil
}

// Restart starts the server again on the same data folder and ports.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.start(t)
}

// AddUser creates an account.
func (s *Server) AddUser(t testing.TB, name, password string) {
	t.Helper()
	if err := s.Server.AddUser(context.Background(), name, password); err != nil {
		t.Fatalf("servertest: add user %s: %v", name, err)
	}
}

// TLSConfig returns a client TLS config that trusts the server certificate.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CertPool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// HTTPClient returns an HTTPS client that verifies the server certificate.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: s.TLSConfig()}}
}

// Token logs in over HTTPS and returns a bearer token.
func (s *Server) Token(t testing.TB, name, password string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", s.HTTPSURL+api.PathTokens, nil)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(name+":"+password)))
	res, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("servertest: token: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("servertest: token for %s: status %d", name, res.StatusCode)
	}
	var tr api.TokenResponse
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil {
		t.Fatalf("servertest: token: %v", err)
	}
	return tr.Token
}

// CheckFor polls cond until it returns nil or the timeout passes, then fails
// the test with cond's last error. Tests wait with it instead of sleeping.
func CheckFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testWriter sends server logs to t.Log until the test ends.
type testWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
	lines  []string
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	line := strings.TrimRight(string(p), "\n")
	w.lines = append(w.lines, line)
	if !w.closed {
		w.t.Log(line)
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// Logs returns every log line the server wrote so far.
func (s *Server) Logs() []string {
	s.logWriter.mu.Lock()
	defer s.logWriter.mu.Unlock()
	return append([]string(nil), s.logWriter.lines...)
}
