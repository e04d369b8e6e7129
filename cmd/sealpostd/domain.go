package main

import (
	"fmt"

	"github.com/sealpost/sealpost/internal/server"
)

// domainSet changes the recorded domain. SIP digest secrets are bound to
// the realm, so it says which passwords must be set again.
func (a *app) domainSet(args []string) error {
	previous, err := server.SetDomain(a.cfg.Data, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "domain of %s: %s (was %s)\n", a.cfg.Data, args[0], previous)
	if previous != args[0] {
		fmt.Fprintf(a.stdout, "Start the server again, then set every account's password again "+
			"(sealpostd user passwd NAME): until then its phones cannot register over SIP.\n")
	}
	return nil
}
