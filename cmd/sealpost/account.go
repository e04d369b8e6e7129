package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"
)

func (a *app) cmdLogout(fs *flag.FlagSet) runner {
	return func(ctx context.Context, _ []string) error {
		core, err := a.open(nil, nil)
		if err != nil {
			return err
		}
		defer core.Close()
		if core.RunActive() {
			return errors.New("a sealpost run is using this profile; stop it first")
		}
		if err := core.Logout(ctx); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "logged out %s: the server revoked this device's token; the messages stay in %s (sealpost login to come back)\n", core.Account(), a.home)
		return nil
	}
}

func (a *app) cmdPasswd(fs *flag.FlagSet) runner {
	stdinPw := fs.Bool("password-stdin", false, "read the current password, then the new one, from the first two lines of standard input")
	return func(ctx context.Context, _ []string) error {
		core, err := a.open(nil, nil)
		if err != nil {
			return err
		}
		defer core.Close()
		var current, next string
		if *stdinPw {
			lines, err := readLines(a.stdin, 2)
			if err != nil {
				return fmt.Errorf("read the current and the new password from standard input (one a line): %w", err)
			}
			current, next = lines[0], lines[1]
		} else {
			if current, err = a.askPassword("current password for " + core.Account()); err != nil {
				return err
			}
			if next, err = a.askPassword("new password"); err != nil {
				return err
			}
			again, err := a.askPassword("new password again")
			if err != nil {
				return err
			}
			if again != next {
				return errors.New("the two new passwords differ; nothing changed")
			}
		}
		if err := core.ChangePassword(ctx, current, next); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "password changed for %s; every other device must log in again", core.Account())
		if core.RunActive() {
			fmt.Fprint(a.stdout, "; restart sealpost run so that it registers with the new password")
		}
		fmt.Fprintln(a.stdout)
		return nil
	}
}

func (a *app) cmdResend(fs *flag.FlagSet) runner {
	return func(ctx context.Context, pos []string) error {
		core, err := a.open(newNotifier(a.stderr), nil)
		if err != nil {
			return err
		}
		defer core.Close()
		m, err := core.Resend(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "sent again as a new message, %s\n", m.ID)
		return queued(ctx, core, m, eventPrinter(a.stdout, false), a.stdout, a.stderr)
	}
}

func (a *app) cmdForget(fs *flag.FlagSet) runner {
	return func(ctx context.Context, pos []string) error {
		core, err := a.open(nil, nil)
		if err != nil {
			return err
		}
		defer core.Close()
		n, err := core.Forget(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "forgot the conversation with %s: %d message(s) deleted from this device\n", strings.ToLower(pos[0]), n)
		return nil
	}
}

// readLines reads n lines (without their line ends) from r.
func readLines(r interface{ Read([]byte) (int, error) }, n int) ([]string, error) {
	br := bufio.NewReader(r)
	var out []string
	for len(out) < n {
		line, err := br.ReadString('\n')
		if err != nil && line == "" {
			return nil, fmt.Errorf("got %d line(s), want %d: %w", len(out), n, err)
		}
		out = append(out, strings.TrimRight(line, "\r\n"))
	}
	return out, nil
}

// askPassword asks on the terminal without echo.
func (a *app) askPassword(prompt string) (string, error) {
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("standard input is not a terminal to ask the password on; use --password-stdin")
	}
	fmt.Fprintf(a.stderr, "%s: ", prompt)
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", fmt.Errorf("read the password: %w", err)
	}
	return string(pw), nil
}
