package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/internal/server"
)

// serve runs the server until SIGINT or SIGTERM; SIGHUP reloads the TLS
// certificate.
func (a *app) serve([]string) error {
	opts := a.options()
	// Catch signals before anything starts, so an early Ctrl-C still shuts
	// down cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	lock, err := lockDataDir(opts.DataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	opts.CheckStore = true
	srv, err := server.New(opts)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		return err
	}
	users, err := srv.Users(ctx)
	if err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	printBanner(a.stdout, srv, opts, len(users))
	// SIGHUP reloads the certificate and key (certbot's renewal hook,
	// systemctl reload); ReloadCertificate logs the outcome, and a failed
	// reload keeps the old certificate in service.
	for waiting := true; waiting; {
		select {
		case <-hup:
			_ = srv.ReloadCertificate()
		case <-ctx.Done():
			waiting = false
		}
	}
	fmt.Fprintln(a.stdout, "sealpostd: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return errors.New("shutdown: " + err.Error())
	}
	fmt.Fprintln(a.stdout, "sealpostd: stopped; every accepted message is stored")
	return nil
}

// printBanner says where the server listens and what to do next: on a
// folder without accounts how to make one, else how many there are.
func printBanner(w io.Writer, srv *server.Server, o server.Options, accounts int) {
	host := func(addr string) string {
		if strings.HasPrefix(addr, "[::]:") || strings.HasPrefix(addr, "0.0.0.0:") {
			return "localhost" + addr[strings.LastIndex(addr, ":"):]
		}
		return addr
	}
	start := "restarted"
	if srv.FirstUse() {
		start = "started for the first time"
	}
	admin := "off"
	if srv.AdminAddr() != "" {
		admin = "http://" + srv.AdminAddr() + "  (/metrics /healthz /readyz)"
	}
	fmt.Fprintf(w, `sealpostd %s (data folder %s, domain %s).
  HTTPS API     https://%s
  SIP over TLS  %s (sips: / transport=tls)
  admin         %s
  certificate   %s
`, start, o.DataDir, srv.Domain(), host(srv.HTTPSAddr()), host(srv.SIPAddr()), admin, srv.CertFile)
	if accounts > 0 {
		fmt.Fprintf(w, "  accounts      %d (sealpostd --data %s user list)\n", accounts, o.DataDir)
		return
	}
	fmt.Fprintf(w, `
Next: make an account, then log in
  sealpostd --data %s user add alice      # prints a generated password
  curl --cacert %s -u alice:PASSWORD -X POST https://%s/v1/tokens
`, o.DataDir, srv.CertFile, host(srv.HTTPSAddr()))
}
