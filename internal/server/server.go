// Package server wires sealpostd together: it owns the data folder, the
// keys, the store, the queue, the registrar, and the three listeners (HTTPS
// API, SIP over TLS, admin). The core packages never listen themselves;
// Start hands them their sockets.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealpost/sealpost/internal/apiserver"
	"github.com/sealpost/sealpost/internal/auth"
	"github.com/sealpost/sealpost/internal/clock"
	"github.com/sealpost/sealpost/internal/cluster"
	"github.com/sealpost/sealpost/internal/connlimit"
	"github.com/sealpost/sealpost/internal/loginguard"
	"github.com/sealpost/sealpost/internal/metrics"
	"github.com/sealpost/sealpost/internal/queue"
	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/seal"
	"github.com/sealpost/sealpost/internal/sipserver"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/store/sqlite"
)

// Options configure a Server. Zero values take the defaults noted.
type Options struct {
	DataDir   string // default ./sealpost-data
	HTTPSAddr string // default :8443
	SIPAddr   string // SIP over TLS, default :5061
	AdminAddr string // metrics and health, default 127.0.0.1:9090; "off" disables
	// Domain is the SIP domain and digest realm. The data folder records
	// it at its first use (DomainFile; default localhost) and every later
	// use takes it from there: empty means "the recorded one", another
	// value than the recorded one is refused (ErrDomainMismatch).
	Domain   string
	CertFile string // with KeyFile: the TLS certificate; else self-signed in DataDir
	KeyFile  string
	StoreURL string // default: SQLite in DataDir
	// MasterKeyFile holds the key that wraps every data key; default
	// DataDir/master.key. Keeping it elsewhere (and out of the database's
	// backups) is what makes expired text unreadable from an old copy.
	MasterKeyFile string
	// CheckStore runs the store's integrity check before opening it and
	// refuses a damaged store (serve sets it; the account commands, which
	// run beside a serving server, do not).
	CheckStore bool

	Expiry         time.Duration // message lifetime on the server, default 72 h
	Retries        int           // retries of a message after its first attempt, default 5; then it is parked until it expires
	DrainTimeout   time.Duration // clean stop: how long MESSAGEs on the wire may take to be answered, default 10 s
	RetryInterval  time.Duration // default 30 s
	MaxPending     int           // pending messages per recipient, default 1000
	SweepInterval  time.Duration // how often expiry runs, default 1 min
	KeyPeriod      time.Duration // expiry span sharing a data key, default 1 h
	TokenTTL       time.Duration // bearer token lifetime, default 30 days
	DefaultExpires time.Duration // SIP registration default, 600 s
	MinExpires     time.Duration // 60 s
	MaxExpires     time.Duration // 3600 s
	FlowTimer      time.Duration // keepalive interval for RFC 5626 outbound phones, 60 s
	// MinPasswordLength bounds new passwords set over the API (user add
	// and user passwd check the same setting); default 12 characters.
	MinPasswordLength int
	// LoginGuard bounds password guessing over HTTPS and SIP alike
	// (internal/loginguard; zero values take its defaults).
	LoginGuard loginguard.Settings
	// Cluster joins other nodes on one PostgreSQL store (cluster.go).
	Cluster ClusterOptions
	// Connections bounds the connections held (internal/connlimit; zero
	// values take its defaults) and SIPAuthTimeout how long a SIP
	// connection may stay unauthenticated (default 30 s).
	Connections    connlimit.Settings
	SIPAuthTimeout time.Duration

	Clock clock.Clock  // default the real clock
	Log   *slog.Logger // default discards
}

func (o *Options) setDefaults() {
	if o.DataDir == "" {
		o.DataDir = "sealpost-data"
	}
	if o.HTTPSAddr == "" {
		o.HTTPSAddr = ":8443"
	}
	if o.SIPAddr == "" {
		o.SIPAddr = ":5061"
	}
	if o.AdminAddr == "" {
		o.AdminAddr = "127.0.0.1:9090"
	}
	if o.KeyPeriod == 0 {
		o.KeyPeriod = time.Hour
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Server is one sealpostd node.
type Server struct {
	o         Options
	log       *slog.Logger
	store     store.Store
	sealer    *seal.Sealer
	registrar *registrar.Registrar
	queue     *queue.Queue
	guard     *loginguard.Guard // one login limit for every listener
	cluster   *cluster.Node     // nil for a single node
	nonceKey  []byte            // SIP digest nonce key shared by the nodes; nil for a single node
	sip       *sipserver.Server
	api       *apiserver.API
	metrics   *metrics.Metrics
	tlsConfig *tls.Config
	cert      *certificate // served through tlsConfig.GetCertificate
	trimmer   *trimmer
	firstUse  bool     // New created the data folder's domain record
	presence  presence // last registration of each account since Start
	// sqlitePath is the embedded store's database file ("" on PostgreSQL).
	sqlitePath string
	since      time.Time // when Start ran
	// CertFile is the certificate served (self-signed or given).
	CertFile string

	mu                            sync.Mutex
	listeners                     []net.Listener // guarded by mu
	httpSrv                       *http.Server
	adminSrv                      *http.Server
	httpsAddr, sipAddr, adminAddr string
	wg                            sync.WaitGroup
	started                       bool
}

// New prepares a server: it creates the data folder (0700), the master key
// (0600), a self-signed certificate if none is given, and opens the store.
// It does not listen; call Start for that. New alone is what the account
// commands use.
func New(o Options) (*Server, error) {
	o.setDefaults()
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data folder: %w", err)
	}
	if err := os.Chmod(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("securing data folder: %w", err)
	}
	domain, firstUse, err := recordDomain(o.DataDir, o.Domain)
	if err != nil {
		return nil, err
	}
	o.Domain = domain
	s := &Server{o: o, log: slog.New(quietStoreErrors{o.Log.Handler()}), metrics: metrics.New(), firstUse: firstUse}

	if o.MasterKeyFile == "" {
		o.MasterKeyFile = filepath.Join(o.DataDir, "master.key")
	}
	masterKey, err := seal.LoadOrCreateMasterKey(o.MasterKeyFile)
	if err != nil {
		return nil, err
	}
	s.nonceKey = clusterNonceKey(o.Cluster, masterKey)
	switch {
	case o.StoreURL == "" || strings.HasPrefix(o.StoreURL, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(o.StoreURL, "sqlite:"), "//")
		if path == "" {
			path = filepath.Join(o.DataDir, "sealpost.db")
		}
		st, err := sqlite.Open(path, sqlite.Options{
			OnCommit: func(ops int, took time.Duration) {
				s.metrics.StoreCommitOps.Observe(float64(ops))
				s.metrics.StoreCommitTime.Observe(took.Seconds())
			},
			OnSync:         func(took time.Duration) { s.metrics.StoreSyncTime.Observe(took.Seconds()) },
			OnWriteFailure: s.metrics.StoreWriteFailures.Inc,
			OnReadFailure:  s.metrics.StoreReadFailures.Inc,
			StartCheck:     o.CheckStore,
			// Unfiltered: the store's own lines are the ones that count.
			Logger: o.Log.With("part", "store"),
		})
		if err != nil {
			return nil, err
		}
		s.store = st
		s.sqlitePath = path
	case IsPostgresURL(o.StoreURL):
		st, err := s.openPostgres(o.StoreURL)
		if err != nil {
			return nil, err
		}
		s.store = st
	default:
		return nil, fmt.Errorf("--store %q: use sqlite:PATH, postgres://USER@HOST:PORT/DB, or leave it empty for the embedded store", o.StoreURL)
	}
	s.sealer, err = seal.New(masterKey, s.store, func(err error) bool { return errors.Is(err, store.ErrNotFound) }, o.KeyPeriod)
	if err != nil {
		s.store.Close()
		return nil, err
	}
	return s, nil
}

// Start opens the listeners and begins serving and delivering.
func (s *Server) Start() error {
	o := s.o
	if err := s.loadTLS(); err != nil {
		return err
	}
	if err := s.checkCluster(); err != nil {
		return err
	}
	s.registrar = registrar.New(o.Clock)
	guard := loginguard.New(o.LoginGuard, o.Clock, s.log.With("part", "loginguard"))
	s.guard = guard
	if err := guard.Register(s.metrics.Registry); err != nil {
		return err
	}
	qo := queue.Options{
		Store: s.store, Sealer: s.sealer, Lookup: s.registrar.Lookup,
		Clock: o.Clock, Log: s.log.With("part", "queue"), Metrics: s.metrics,
		Expiry: o.Expiry, Retries: o.Retries, RetryInterval: o.RetryInterval, MaxPending: o.MaxPending,
		SweepInterval: o.SweepInterval, DrainTimeout: o.DrainTimeout,
	}
	s.clusterQueueHooks(&qo)
	s.queue = queue.New(qo)
	sip, err := sipserver.New(sipserver.Options{
		Domain: o.Domain, TLSConfig: sipTLSConfig(s.tlsConfig), Registrar: s.registrar, Queue: s.queue,
		Secrets: s.sipSecrets, Clock: o.Clock, Log: s.log.With("part", "sip"), Metrics: s.metrics,
		Guard:          guard,
		DefaultExpires: o.DefaultExpires, MinExpires: o.MinExpires, MaxExpires: o.MaxExpires,
		FlowTimer: o.FlowTimer, AuthTimeout: o.SIPAuthTimeout, NonceKey: s.nonceKey,
	})
	if err != nil {
		return err
	}
	s.sip = sip
	s.queue.SetSender(sip)
	s.registrar.OnOnline = func(account string) {
		s.presence.registered(account, o.Clock.Now())
		s.queue.Online(account)
	}
	s.registrar.OnOffline = s.logOffline
	s.registrar.OnDisconnect = s.queue.Disconnected
	if err := s.startCluster(); err != nil {
		return err
	}
	s.metrics.Observe(s.pendingGauge, func() float64 { return float64(s.registrar.Len()) })
	s.api = apiserver.New(apiserver.Options{
		Store: s.store, Queue: s.queue, Clock: o.Clock, Log: s.log.With("part", "api"),
		Metrics: s.metrics, TokenTTL: o.TokenTTL, Domain: o.Domain, Guard: guard,
		SetPassword: s.SetPassword, MinPasswordLength: o.MinPasswordLength, // POST /v1/account/password
		SIPPort: func() int {
			_, port, _ := net.SplitHostPort(s.SIPAddr())
			n, _ := strconv.Atoi(port)
			return n
		},
	})

	httpsL, err := net.Listen("tcp", o.HTTPSAddr)
	if err != nil {
		return fmt.Errorf("HTTPS listener: %w", err)
	}
	s.addListener(httpsL)
	sipL, err := net.Listen("tcp", o.SIPAddr)
	if err != nil {
		s.closeListeners()
		return fmt.Errorf("SIP listener: %w", err)
	}
	s.addListener(sipL)
	var adminL net.Listener
	if o.AdminAddr != "off" {
		adminL, err = net.Listen("tcp", o.AdminAddr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("admin listener: %w", err)
		}
		s.addListener(adminL)
	}

	s.httpSrv = &http.Server{
		Handler:           s.api.Handler(),
		TLSConfig:         s.tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.since = o.Clock.Now()
	if err := s.startControl(); err != nil {
		s.closeListeners()
		return err
	}
	limitedHTTPS, limitedSIP, err := s.limitListeners(httpsL, sipL)
	if err != nil {
		s.closeListeners()
		return err
	}
	s.mu.Lock()
	s.httpsAddr, s.sipAddr = httpsL.Addr().String(), sipL.Addr().String()
	if adminL != nil {
		s.adminAddr = adminL.Addr().String()
	}
	s.started = true
	s.mu.Unlock()

	s.queue.Start()
	// Real time, not o.Clock: trimming is housekeeping of this process,
	// not a rule of the product, and must not fire when a test advances
	// a fake clock by days.
	s.trimmer = newTrimmer(clock.Real{})
	s.trimmer.start()
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.ServeTLS(limitedHTTPS, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("HTTPS server stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		if err := s.sip.Serve(limitedSIP); err != nil {
			s.log.Error("SIP server stopped", "err", err)
		}
	}()
	if adminL != nil {
		s.adminSrv = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.adminSrv.Serve(adminL); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("admin server stopped", "err", err)
			}
		}()
	}
	return nil
}

// Shutdown stops serving. In-flight HTTPS submissions finish first, so every
// message answered "enqueued" is in the store. Then the queue stops
// cleanly while the SIP connections stay open: no new delivery starts, the
// MESSAGEs on the wire get up to DrainTimeout for their answers, and every
// 2xx is recorded before the store closes, so no device is sent again a
// message it took.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	if s.httpSrv != nil {
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.adminSrv != nil {
		_ = s.adminSrv.Shutdown(ctx)
	}
	s.closeListeners()
	if s.trimmer != nil {
		s.trimmer.stop()
	}
	if s.queue != nil {
		s.queue.Stop()
	}
	if s.sip != nil {
		_ = s.sip.Close()
	}
	s.wg.Wait()
	s.stopCluster()
	if err := s.store.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close releases a server that was never started (account commands).
func (s *Server) Close() error {
	s.stopCluster()
	return s.store.Close()
}

// HTTPSAddr, SIPAddr and AdminAddr return the bound addresses after Start.
func (s *Server) HTTPSAddr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.httpsAddr }
func (s *Server) SIPAddr() string   { s.mu.Lock(); defer s.mu.Unlock(); return s.sipAddr }
func (s *Server) AdminAddr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.adminAddr }

// Domain returns the SIP domain.
func (s *Server) Domain() string { return s.o.Domain }

// Queue returns the delivery queue (for tests and operator commands).
func (s *Server) Queue() *queue.Queue { return s.queue }

// Registrar returns the registrar.
func (s *Server) Registrar() *registrar.Registrar { return s.registrar }

// Store returns the store.
func (s *Server) Store() store.Store { return s.store }

func (s *Server) addListener(l net.Listener) {
	s.mu.Lock()
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		_ = l.Close()
	}
	s.listeners = nil
}

func (s *Server) loadTLS() error {
	certFile, keyFile := s.o.CertFile, s.o.KeyFile
	if (certFile == "") != (keyFile == "") {
		return errors.New("--cert and --key go together: give both, or neither for a self-signed certificate")
	}
	if certFile == "" {
		certFile = filepath.Join(s.o.DataDir, "cert.pem")
		keyFile = filepath.Join(s.o.DataDir, "key.pem")
		created, err := ensureSelfSigned(certFile, keyFile, s.o.Domain)
		if err != nil {
			return fmt.Errorf("creating self-signed certificate: %w", err)
		}
		if created {
			s.log.Info("created a self-signed certificate", "file", certFile)
		}
	}
	s.cert = &certificate{certFile: certFile, keyFile: keyFile}
	if _, err := s.cert.load(); err != nil {
		return err
	}
	s.CertFile = certFile
	s.tlsConfig = httpsTLSConfig(s.cert.get) // ReloadCertificate swaps what get returns
	return nil
}

func (s *Server) sipSecrets(ctx context.Context, account string) (auth.SIPSecrets, error) {
	a, err := s.store.Account(ctx, account)
	if err != nil {
		return auth.SIPSecrets{}, err
	}
	plain, err := s.sealer.OpenSecret(a.SIPSecrets, "sip:"+a.Name)
	if err != nil {
		return auth.SIPSecrets{}, err
	}
	return auth.UnmarshalSIPSecrets(plain)
}

func (s *Server) pendingGauge() float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := s.store.CountPending(ctx)
	if err != nil {
		return -1
	}
	return float64(n)
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	// Profiling, for finding bottlenecks under load; the admin listener is
	// on loopback by default.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	return mux
}

// Sealer returns the sealer (for tests that check crypto-shredding).
func (s *Server) Sealer() *seal.Sealer { return s.sealer }
