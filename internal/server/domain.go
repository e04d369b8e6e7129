package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DomainFile is the data folder's record of its SIP domain and digest
// realm, written at the folder's first use.
const DomainFile = "domain.json"

// DefaultDomain is the SIP domain of a data folder created without one.
const DefaultDomain = "localhost"

// domainRecord is the content of DomainFile. The realm is recorded beside
// the domain because every account's SIP digest secrets (HA1 =
// H(name:realm:password)) are computed with it: a folder whose realm
// changed holds secrets no phone can match until each password is set
// again.
type domainRecord struct {
	Domain string `json:"domain"`
	Realm  string `json:"realm"`
}

// ErrDomainMismatch is returned when a command gives a --domain other than
// the one the data folder recorded.
var ErrDomainMismatch = errors.New("the data folder has another domain")

// recordDomain returns the data folder's domain: the recorded one, or, at
// the first use, the given one (default localhost), which it records. A
// given domain that differs from the recorded one is refused, with what
// changing it would take. created reports a first use.
func recordDomain(dataDir, given string) (domain string, created bool, err error) {
	path := filepath.Join(dataDir, DomainFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		domain = strings.ToLower(given)
		if domain == "" {
			domain = DefaultDomain
		}
		if err := writeDomain(path, domain); err != nil {
			return "", false, err
		}
		return domain, true, nil
	case err != nil:
		return "", false, fmt.Errorf("reading the data folder's domain: %w", err)
	}
	var rec domainRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.Domain == "" {
		return "", false, fmt.Errorf("%s is damaged (%v); it should read {\"domain\":\"NAME\",\"realm\":\"NAME\"}", path, err)
	}
	if given != "" && !strings.EqualFold(given, rec.Domain) {
		return "", false, fmt.Errorf("%w: --domain %s, but %s was created for %s (recorded in %s). "+
			"Leave --domain out to use %s. To change the domain: stop the server, run "+
			"`sealpostd --data %s domain set %s`, then set every account's password again "+
			"(`sealpostd user passwd NAME`): SIP digest secrets are bound to the domain, so until then "+
			"phones cannot register (HTTPS logins keep working)",
			ErrDomainMismatch, given, dataDir, rec.Domain, path, rec.Domain, dataDir, given)
	}
	return rec.Domain, false, nil
}

func writeDomain(path, domain string) error {
	b, err := json.Marshal(domainRecord{Domain: domain, Realm: domain})
	if err != nil {
		return err
	}
	if err := writeFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("recording the data folder's domain: %w", err)
	}
	return nil
}

// SetDomain changes the domain recorded in a data folder (the server must
// be stopped; it reads the record at its start). Every account's SIP
// secrets then need a new password. It returns the previous domain.
func SetDomain(dataDir, domain string) (previous string, err error) {
	if dataDir == "" {
		dataDir = "sealpost-data"
	}
	if domain == "" || strings.ContainsAny(domain, " /@:;\"") {
		return "", fmt.Errorf("domain %q: want a host name such as sp.example.org", domain)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("creating data folder: %w", err)
	}
	previous, _, err = recordDomain(dataDir, "")
	if err != nil {
		return "", err
	}
	return previous, writeDomain(filepath.Join(dataDir, DomainFile), strings.ToLower(domain))
}

// FirstUse reports whether this server created its data folder's domain
// record, that is, whether the folder was used for the first time.
func (s *Server) FirstUse() bool { return s.firstUse }
