// Package kamailio holds the Kamailio configuration that `sealbench compare`
// measures sealpostd against (kamailio.cfg, tls.cfg), so that the tool
// carries it wherever it is built and run from.
package kamailio

import _ "embed"

// Config is kamailio.cfg: registrar, MESSAGE relay over TLS, msilo in SQLite.
//
//go:embed kamailio.cfg
var Config []byte

// TLSConfig is tls.cfg, the TLS profiles Config loads; it names cert.pem
// and key.pem beside it.
//
//go:embed tls.cfg
var TLSConfig []byte
