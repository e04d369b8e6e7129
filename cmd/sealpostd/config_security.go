package main

import (
	"flag"
	"time"

	"github.com/sealpost/sealpost/internal/connlimit"
	"github.com/sealpost/sealpost/internal/loginguard"
	"github.com/sealpost/sealpost/internal/server"
)

// securityConfig holds the settings of the login guard and the connection
// bounds (SECURITY.md explains them).
type securityConfig struct {
	LoginAddressFailures int
	LoginAccountFailures int
	LoginFirstDelay      time.Duration
	LoginMaxDelay        time.Duration
	LoginAccountDelay    time.Duration
	SIPAuthTimeout       time.Duration
	MaxConnections       int
	PerAddressSIP        int
	PerAddressHTTPS      int
}

func (c *securityConfig) settings() []setting {
	return []setting{
		{"login-address-failures", "failed logins one address may make for one account (HTTPS or SIP) before its attempts are spaced out", func(fs *flag.FlagSet) {
			fs.IntVar(&c.LoginAddressFailures, "login-address-failures", loginguard.DefaultAddressFreeFailures, "")
		}},
		{"login-account-failures", "failed logins of one account from all addresses before attempts from addresses it never logged in from are slowed", func(fs *flag.FlagSet) {
			fs.IntVar(&c.LoginAccountFailures, "login-account-failures", loginguard.DefaultAccountFreeFailures, "")
		}},
		{"login-first-delay", "spacing after the free failures; doubles with each further failure", func(fs *flag.FlagSet) {
			fs.DurationVar(&c.LoginFirstDelay, "login-first-delay", loginguard.DefaultFirstDelay, "")
		}},
		{"login-max-delay", "longest spacing between attempts of one address for one account", func(fs *flag.FlagSet) {
			fs.DurationVar(&c.LoginMaxDelay, "login-max-delay", loginguard.DefaultMaxAddressDelay, "")
		}},
		{"login-account-delay", "longest spacing of an account's attempts under attack from many addresses (never a lock)", func(fs *flag.FlagSet) {
			fs.DurationVar(&c.LoginAccountDelay, "login-account-delay", loginguard.DefaultMaxAccountDelay, "")
		}},
		{"sip-auth-timeout", "a SIP connection with no registration and no digest success in this time is closed", func(fs *flag.FlagSet) {
			fs.DurationVar(&c.SIPAuthTimeout, "sip-auth-timeout", 30*time.Second, "")
		}},
		{"max-connections", "SIP and HTTPS connections held in total; 0: the open-file limit less an eighth (at least 64 kept for the admin listener and the store)", func(fs *flag.FlagSet) {
			fs.IntVar(&c.MaxConnections, "max-connections", 0, "")
		}},
		{"max-connections-per-address-sip", "SIP connections from one address (IPv6: one /64); phones behind one NAT share it", func(fs *flag.FlagSet) {
			fs.IntVar(&c.PerAddressSIP, "max-connections-per-address-sip", connlimit.DefaultPerAddressSIP, "")
		}},
		{"max-connections-per-address-https", "HTTPS connections from one address; an idle one is closed to make room for a new one", func(fs *flag.FlagSet) {
			fs.IntVar(&c.PerAddressHTTPS, "max-connections-per-address-https", connlimit.DefaultPerAddressHTTPS, "")
		}},
	}
}

// apply puts the settings into the server's options.
func (c *securityConfig) apply(o *server.Options) {
	o.LoginGuard = loginguard.Settings{
		AddressFreeFailures: c.LoginAddressFailures, AccountFreeFailures: c.LoginAccountFailures,
		FirstDelay: c.LoginFirstDelay, MaxAddressDelay: c.LoginMaxDelay, MaxAccountDelay: c.LoginAccountDelay,
	}
	o.SIPAuthTimeout = c.SIPAuthTimeout
	o.Connections = connlimit.Settings{Max: c.MaxConnections, PerAddressSIP: c.PerAddressSIP, PerAddressHTTPS: c.PerAddressHTTPS}
}
