package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sealpost/sealpost/internal/auth"
	"github.com/sealpost/sealpost/internal/cli"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// The account and message commands open the data folder and store without
// listening, so they work beside a running server.

// withServer opens the data folder and store for one management command.
func (a *app) withServer(do func(ctx context.Context, srv *server.Server) error) error {
	srv, err := server.New(a.options())
	if err != nil {
		return err
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return do(ctx, srv)
}

// password returns the password from stdin (--password-stdin) or a
// generated one.
func (a *app) password() (pw string, generated bool, err error) {
	if !a.passwordStdin {
		return auth.GeneratePassword(), true, nil
	}
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", false, fmt.Errorf("reading the password from stdin: %w", err)
	}
	pw = strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", false, fmt.Errorf("--password-stdin: standard input held no password")
	}
	if err := auth.CheckPasswordLength(pw, a.cfg.MinPasswordLength); err != nil {
		return "", false, fmt.Errorf("%v (--min-password-length). Leave out --password-stdin for a generated one", err)
	}
	return pw, false, nil
}

func (a *app) userAdd(args []string) error { return a.setPassword(args[0], true) }

func (a *app) userPasswd(args []string) error { return a.setPassword(args[0], false) }

func (a *app) setPassword(name string, create bool) error {
	if err := message.CheckAccount(name); err != nil {
		return err
	}
	pw, generated, err := a.password()
	if err != nil {
		return err
	}
	return a.withServer(func(ctx context.Context, srv *server.Server) error {
		if create {
			if err := srv.AddUser(ctx, name, pw); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "created account %s (sip:%s@%s)\n", name, name, srv.Domain())
		} else {
			if err := srv.SetPassword(ctx, name, pw); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "password of %s changed; its tokens are revoked\n", name)
		}
		if generated {
			fmt.Fprintf(a.stdout, "password: %s\n(shown once; it is stored only as a hash)\n", pw)
		}
		return nil
	})
}

// userDel deletes the account in the store, then tells the server running
// on the data folder (through its control socket), which disconnects the
// account's device.
func (a *app) userDel(args []string) error {
	return a.withServer(func(ctx context.Context, srv *server.Server) error {
		failed, err := srv.DeleteUser(ctx, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "deleted account %s with its tokens and messages; %d waiting message(s) failed, with a failure report to each sender\n", args[0], len(failed))
		online, err := srv.DisconnectDeleted(ctx, args[0], failed)
		switch {
		case errors.Is(err, server.ErrNotRunning):
			fmt.Fprintln(a.stdout, "no server is running on this data folder: no device to disconnect")
		case err != nil:
			return fmt.Errorf("the account is deleted, but its device may stay connected until its registration expires: %w", err)
		case online:
			fmt.Fprintln(a.stdout, "its registered device is disconnected")
		case srv.Clustered():
			fmt.Fprintln(a.stdout, "no device of it was registered on this node; the other nodes were told, and the one holding it disconnects it")
		default:
			fmt.Fprintln(a.stdout, "no device of it was registered")
		}
		return nil
	})
}

func (a *app) userList([]string) error {
	return a.withServer(func(ctx context.Context, srv *server.Server) error {
		users, err := srv.Users(ctx)
		if err != nil {
			return err
		}
		devices, since, err := srv.Devices()
		running := err == nil
		if err != nil && !errors.Is(err, server.ErrNotRunning) {
			return err
		}
		byName := map[string]server.Device{}
		for _, d := range devices {
			byName[d.Account] = d
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tADDRESS\tCREATED\tLAST REGISTERED\tONLINE")
		for _, u := range users {
			last, online := "-", "no"
			if d, ok := byName[u.Name]; ok {
				last = d.LastRegistered.UTC().Format(time.RFC3339)
				if d.Online {
					online = "yes"
				}
			}
			fmt.Fprintf(tw, "%s\tsip:%s@%s\t%s\t%s\t%s\n", u.Name, u.Name, srv.Domain(), u.CreatedAt.UTC().Format(time.RFC3339), last, online)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if running {
			fmt.Fprintf(a.stdout, "(registrations since the server started, %s)\n", since.UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintln(a.stdout, "(no server is running on this data folder: nobody is online)")
		}
		return nil
	})
}

func (a *app) messagesList([]string) error {
	status := message.Status(strings.ToLower(a.status))
	switch status {
	case "", message.Enqueued, message.Delivered, message.Expired:
	default:
		return cli.Usagef("--status %q: the server's statuses are enqueued, delivered and expired", a.status)
	}
	return a.withServer(func(ctx context.Context, srv *server.Server) error {
		msgs, err := srv.Messages(ctx, store.MessageFilter{Account: a.account, Status: status, Limit: a.limit})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RECEIVED\tID\tFROM\tTO\tSTATUS\tDELIVERED\tATTEMPTS")
		for _, m := range msgs {
			delivered := "-"
			if !m.DeliveredAt.IsZero() {
				delivered = m.DeliveredAt.UTC().Format(time.RFC3339)
			}
			st := string(m.Status)
			if m.Parked && m.Status == message.Enqueued {
				st += ",parked" // retries used up: waits for expiry and its failure report
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", m.SubmittedAt.UTC().Format(time.RFC3339), m.ID, m.From, m.To, st, delivered, m.Attempts)
		}
		return tw.Flush()
	})
}
