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

// serve runs the server until SIGINT or SIGTERM.
func (a *app) serve([]string) error {
	opts := a.options()
	// Catch signals before anything starts, so an early Ctrl-C still shuts
	// down cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(opts)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		return err
	}
	printNextSteps(a.stdout, srv, opts)
	<-ctx.Done()
	fmt.Fprintln(a.stdout, "sealpostd: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return errors.New("shutdown: " + err.Error())
	}
	fmt.Fprintln(a.stdout, "sealpostd: stopped; every accepted message is stored")
	return nil
}

func printNextSteps(w io.Writer, srv *server.Server, o server.Options) {
	host := func(addr string) string {
		if strings.HasPrefix(addr, "[::]:") || strings.HasPrefix(addr, "0.0.0.0:") {
			return "localhost" + addr[strings.LastIndex(addr, ":"):]
		}
		return addr
	}
	fmt.Fprintf(w, `sealpostd is running (data folder %s, domain %s).
  HTTPS API     https://%s
  SIP over TLS  %s (sips: / transport=tls)
  admin         http://%s  (/metrics /healthz /readyz)
  certificate   %s

Next:
  sealpostd --data %s user add alice      # prints a generated password
  curl --cacert %s -u alice:PASSWORD -X POST https://%s/v1/tokens
`, o.DataDir, o.Domain, host(srv.HTTPSAddr()), host(srv.SIPAddr()), srv.AdminAddr(), srv.CertFile,
		o.DataDir, srv.CertFile, host(srv.HTTPSAddr()))
}
