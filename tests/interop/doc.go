// Package interop proves that standard SIP clients work with sealpostd: it
// drives the real baresip and linphonec programs from Debian, headless, against
// an in-process server, and reads what they print and log the way a person
// would read their screens.
//
// The tests install nothing. When a client's binary is not on PATH its checks
// are skipped with a message saying which package provides it
// (.ci/install-sip-clients.sh installs both). At the end the run prints one
// line per client, "baresip: N passed, N failed", for CI and for people.
//
// Set SEALPOST_INTEROP_LOGS=DIR to keep each client's configuration and full
// log (with its SIP trace) in DIR after the run.
package interop
