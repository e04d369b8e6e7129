package client

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sealpost/sealpost/message"
)

// Files in the profile folder. All are 0600 and the folder is 0700: the
// profile holds a bearer token and SIP digest secrets, the store holds
// message texts.
const (
	profileFile = "profile.json"
	caFile      = "ca.pem"
	storeFile   = "sealpost.db"
	socketFile  = "run.sock"
)

// ErrNoProfile is returned by Open when the folder holds no profile yet.
var ErrNoProfile = errors.New("no profile here yet: run sealpost login first")

// profile is what login remembers. It is not exported: front ends see it
// through Core.Account and friends, never the secrets.
type profile struct {
	Server    string    `json:"server"`   // https://HOST:PORT
	SIPAddr   string    `json:"sip_addr"` // HOST:PORT of SIP over TLS
	Domain    string    `json:"domain"`   // SIP domain and digest realm
	Account   string    `json:"account"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"token_expires_at"`
	// HA1 values H(account:domain:password) for MD5 and SHA-256: what SIP
	// digest needs, without keeping the password itself.
	HA1MD5    string `json:"sip_ha1_md5"`
	HA1SHA256 string `json:"sip_ha1_sha256"`
	// CustomCA: ca.pem in the profile verifies the server instead of the
	// system roots.
	CustomCA bool `json:"custom_ca"`
}

// LoginOptions are what `sealpost login` needs.
type LoginOptions struct {
	Home     string // profile folder; created 0700 if missing
	Server   string // https://HOST:PORT of the server's HTTPS API
	Account  string
	Password string
	// CAFile is a PEM file of the certificate(s) that sign the server's
	// certificate, for a self-signed server. Empty: the system roots.
	CAFile string
	// SIPAddr is HOST:PORT of the server's SIP over TLS listener; empty
	// means the server's host on port 5061.
	SIPAddr string
	// Domain is the server's SIP domain (its digest realm). Empty means the
	// server's host name, or "localhost" (sealpostd's default) when the
	// server is given by IP address.
	Domain string
	// Force allows a login as another account than the profile's: the
	// local store (the other account's messages) is deleted.
	Force bool
}

// Login gets a token for the account and writes the profile into the
// folder, replacing an earlier one of the same account. A profile is one
// account's: a login as another account is refused (ErrOtherAccount)
// unless o.Force, which deletes the local store. The server's certificate
// is verified against the CA file or the system roots; a mismatch is an
// error. settings.json is written with the defaults if missing, so that
// it can be read and edited before any change.
func Login(ctx context.Context, o LoginOptions) error {
	o.Account = NormalizeAccount(o.Account)
	if err := message.CheckAccount(o.Account); err != nil {
		return err
	}
	clearOld, err := guardAccount(o.Home, o.Account, o.Force)
	if err != nil {
		return err
	}
	if o.Password == "" {
		return errors.New("the password is empty")
	}
	u, err := url.Parse(o.Server)
	if err != nil || u.Host == "" {
		return fmt.Errorf("server %q is not a URL like https://HOST:8443", o.Server)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("server %q must use https: the token and messages never travel in clear", o.Server)
	}
	host := u.Hostname()
	p := profile{
		Server:  "https://" + u.Host,
		SIPAddr: o.SIPAddr,
		Domain:  o.Domain,
		Account: o.Account,
	}
	if p.SIPAddr != "" {
		if _, _, err := net.SplitHostPort(p.SIPAddr); err != nil {
			return fmt.Errorf("SIP address %q is not HOST:PORT", o.SIPAddr)
		}
	}
	var caPEM []byte
	if o.CAFile != "" {
		caPEM, err = os.ReadFile(o.CAFile)
		if err != nil {
			return fmt.Errorf("read CA file: %w", err)
		}
		if _, err := certPool(caPEM); err != nil {
			return fmt.Errorf("CA file %s: %w", o.CAFile, err)
		}
		p.CustomCA = true
	}
	tlsConf, err := tlsConfig(caPEM, host)
	if err != nil {
		return err
	}
	api := newAPIClient(p.Server, tlsConf, "")
	tok, err := api.token(ctx, o.Account, o.Password)
	if err != nil {
		return err
	}
	p.Token = tok.Token
	p.ExpiresAt = tok.ExpiresAt
	// The server tells its SIP domain and port with the token; guess only
	// when it does not (an older server).
	if p.SIPAddr == "" {
		port := "5061"
		if tok.SIPPort != 0 {
			port = strconv.Itoa(tok.SIPPort)
		}
		p.SIPAddr = net.JoinHostPort(host, port)
	}
	if p.Domain == "" {
		p.Domain = tok.Domain
	}
	if p.Domain == "" {
		p.Domain = host
		if net.ParseIP(host) != nil {
			p.Domain = "localhost"
		}
	}
	p.HA1MD5 = ha1(md5hex, o.Account, p.Domain, o.Password)
	p.HA1SHA256 = ha1(sha256hex, o.Account, p.Domain, o.Password)

	if err := makeHome(o.Home); err != nil {
		return err
	}
	if clearOld {
		if err := clearStore(o.Home); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(o.Home, settingsFile)); errors.Is(err, os.ErrNotExist) {
		if err := saveSettings(o.Home, DefaultSettings()); err != nil {
			return err
		}
	}
	if p.CustomCA {
		if err := writeFile0600(filepath.Join(o.Home, caFile), caPEM); err != nil {
			return err
		}
	} else {
		os.Remove(filepath.Join(o.Home, caFile))
	}
	return writeProfile(o.Home, p)
}

// writeProfile replaces the profile file (0600) with p.
func writeProfile(home string, p profile) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return writeFile0600(filepath.Join(home, profileFile), append(b, '\n'))
}

func md5hex(s string) string    { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
func sha256hex(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func ha1(h func(string) string, user, realm, password string) string {
	return h(user + ":" + realm + ":" + password)
}

func loadProfile(home string) (profile, []byte, error) {
	var p profile
	b, err := os.ReadFile(filepath.Join(home, profileFile))
	if errors.Is(err, os.ErrNotExist) {
		return p, nil, fmt.Errorf("%s: %w", home, ErrNoProfile)
	}
	if err != nil {
		return p, nil, fmt.Errorf("read profile: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, nil, fmt.Errorf("profile %s is damaged: %w", filepath.Join(home, profileFile), err)
	}
	var caPEM []byte
	if p.CustomCA {
		caPEM, err = os.ReadFile(filepath.Join(home, caFile))
		if err != nil {
			return p, nil, fmt.Errorf("the profile uses its own CA but: %w", err)
		}
	}
	return p, caPEM, nil
}

func certPool(pemData []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, errors.New("holds no PEM certificate")
	}
	return pool, nil
}

// tlsConfig verifies the server against caPEM, or the system roots when
// caPEM is empty. InsecureSkipVerify is never set.
func tlsConfig(caPEM []byte, serverName string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if len(caPEM) > 0 {
		pool, err := certPool(caPEM)
		if err != nil {
			return nil, fmt.Errorf("CA: %w", err)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// explainTLS turns a certificate verification failure into a sentence that
// says what to do; other errors pass through.
func explainTLS(err error, server string) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("the certificate of %s is not trusted: it is signed by an authority that is neither in the system roots nor in the CA file given with --ca (%w)", server, err)
	case errors.As(err, &host):
		return fmt.Errorf("the certificate of %s is not valid for that name (%w)", server, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("the certificate of %s is invalid (%w)", server, err)
	case errors.As(err, &verify):
		return fmt.Errorf("the certificate of %s could not be verified (%w)", server, err)
	}
	return err
}

func makeHome(home string) error {
	if home == "" {
		return errors.New("no profile folder given")
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("create profile folder: %w", err)
	}
	// MkdirAll leaves an existing folder's mode alone; the profile holds
	// secrets, so make sure nobody else can list it.
	if err := os.Chmod(home, 0o700); err != nil {
		return fmt.Errorf("protect profile folder: %w", err)
	}
	return nil
}

// writeFile0600 replaces name atomically with data, readable by the owner only.
func writeFile0600(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// DefaultHome is the profile folder when neither --home nor SEALPOST_HOME
// is given: the user's config folder / sealpost.
func DefaultHome() (string, error) {
	if h := os.Getenv("SEALPOST_HOME"); h != "" {
		return h, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no profile folder: %w; use --home DIR or SEALPOST_HOME", err)
	}
	return filepath.Join(dir, "sealpost"), nil
}
