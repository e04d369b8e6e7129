package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"time"
)

// certificate holds the TLS certificate served to new connections. It is
// replaced whole by ReloadCertificate (SIGHUP), so a renewed certificate
// (certbot, ACME) applies without a restart; connections already open keep
// the one they shook hands with.
type certificate struct {
	certFile, keyFile string
	current           atomic.Pointer[tls.Certificate]
}

func (c *certificate) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading TLS certificate %s with key %s: %w", c.certFile, c.keyFile, err)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	c.current.Store(&cert)
	return &cert, nil
}

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current.Load(), nil
}

// ReloadCertificate reads the certificate and key files again and serves
// them to every new HTTPS and SIP connection. On an error (a file missing,
// a key that does not match) the old certificate stays in service. Both
// outcomes are logged.
func (s *Server) ReloadCertificate() error {
	if s.cert == nil {
		return fmt.Errorf("the server is not started")
	}
	cert, err := s.cert.load()
	if err != nil {
		s.log.Error("certificate reload failed; still serving the previous certificate", "file", s.cert.certFile, "err", err)
		return err
	}
	attrs := []any{"file", s.cert.certFile}
	if cert.Leaf != nil {
		attrs = append(attrs, "subject", cert.Leaf.Subject.CommonName, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	s.log.Info("reloaded TLS certificate", attrs...)
	return nil
}
