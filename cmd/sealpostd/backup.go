package main

import (
	"context"
	"fmt"

	"github.com/sealpost/sealpost/internal/server"
)

func (a *app) backup(args []string) error {
	return a.withServer(func(ctx context.Context, srv *server.Server) error {
		if err := srv.Backup(ctx, args[0]); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "store copied to %s (0600). It holds sealed texts only: keep the master key (%s) in a backup of its own\n",
			args[0], srv.MasterKeyFile())
		return nil
	})
}
