package server

import "crypto/tls"

// aeadSuites are the TLS 1.2 cipher suites offered: forward-secret (ECDHE)
// and authenticated encryption (AES-GCM, ChaCha20-Poly1305) only. The CBC
// suites Go would otherwise still offer (SHA-1 MACs, LUCKY13-style timing)
// are left out. TLS 1.3 suites are not configurable and all AEAD.
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// httpsTLSConfig is the HTTPS listener's TLS: 1.2 with AEAD suites, or 1.3,
// and ALPN for HTTP/2 and HTTP/1.1.
func httpsTLSConfig(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   aeadSuites,
		GetCertificate: getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// sipTLSConfig is the SIP listener's TLS: the same versions, suites and
// certificate, and no ALPN: the SIP port speaks no HTTP, and offering h2
// there told scanners (and confused clients) that it did.
func sipTLSConfig(https *tls.Config) *tls.Config {
	c := https.Clone()
	c.NextProtos = nil
	return c
}
