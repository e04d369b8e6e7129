package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sealpost/sealpost/internal/auth"
	"github.com/sealpost/sealpost/internal/server"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// manage runs the account and message commands. They open the data folder
// and store without listening, so they work beside a running server.
func manage(opts server.Options, words []string, stdin io.Reader, stdout, stderr io.Writer,
	passwordStdin bool, account, status string, limit int) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "sealpostd:", err)
		return 1
	}
	srv, err := server.New(opts)
	if err != nil {
		return fail(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	needName := func() (string, bool) {
		if len(words) != 3 {
			fmt.Fprintf(stderr, "sealpostd: usage: sealpostd %s %s NAME\n", words[0], words[1])
			return "", false
		}
		return words[2], true
	}
	password := func() (pw string, generated bool, err error) {
		if !passwordStdin {
			return auth.GeneratePassword(), true, nil
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", false, fmt.Errorf("reading the password from stdin: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", false, fmt.Errorf("--password-stdin: standard input held no password")
		}
		return pw, false, nil
	}

	switch strings.Join(words[:min(2, len(words))], " ") {
	case "user add", "user passwd":
		name, ok := needName()
		if !ok {
			return 2
		}
		if err := message.CheckAccount(name); err != nil {
			return fail(err)
		}
		pw, generated, err := password()
		if err != nil {
			return fail(err)
		}
		if words[1] == "add" {
			err = srv.AddUser(ctx, name, pw)
		} else {
			err = srv.SetPassword(ctx, name, pw)
		}
		if err != nil {
			return fail(err)
		}
		aor := "sip:" + name + "@" + opts.Domain
		if words[1] == "add" {
			fmt.Fprintf(stdout, "created account %s (%s)\n", name, aor)
		} else {
			fmt.Fprintf(stdout, "password of %s changed; its tokens are revoked\n", name)
		}
		if generated {
			fmt.Fprintf(stdout, "password: %s\n(shown once; it is stored only as a hash)\n", pw)
		}
		return 0
	case "user del":
		name, ok := needName()
		if !ok {
			return 2
		}
		if err := srv.DeleteUser(ctx, name); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "deleted account %s\n", name)
		return 0
	case "user list":
		users, err := srv.Users(ctx)
		if err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tADDRESS\tCREATED")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\tsip:%s@%s\t%s\n", u.Name, u.Name, opts.Domain, u.CreatedAt.UTC().Format(time.RFC3339))
		}
		return errOr(tw.Flush(), stderr)
	case "messages list":
		msgs, err := srv.Messages(ctx, store.MessageFilter{Account: account, Status: message.Status(status), Limit: limit})
		if err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RECEIVED\tID\tFROM\tTO\tSTATUS\tDELIVERED\tATTEMPTS")
		for _, m := range msgs {
			delivered := "-"
			if !m.DeliveredAt.IsZero() {
				delivered = m.DeliveredAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", m.SubmittedAt.UTC().Format(time.RFC3339), m.ID, m.From, m.To, m.Status, delivered, m.Attempts)
		}
		return errOr(tw.Flush(), stderr)
	default:
		fmt.Fprintf(stderr, "sealpostd: unknown command %q; see sealpostd help\n", strings.Join(words, " "))
		return 2
	}
}

func errOr(err error, stderr io.Writer) int {
	if err != nil {
		fmt.Fprintln(stderr, "sealpostd:", err)
		return 1
	}
	return 0
}
