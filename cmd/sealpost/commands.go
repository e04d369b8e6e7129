package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/internal/cli"
	"github.com/sealpost/sealpost/message"
)

var defaultHome = client.DefaultHome

func (a *app) cmdLogin(fs *flag.FlagSet) runner {
	server := fs.String("server", "", "the server's HTTPS address `URL`, like https://HOST:8443")
	account := fs.String("account", "", "your account `NAME`")
	ca := fs.String("ca", "", "PEM `FILE` of the CA (or the self-signed certificate) to verify the server with; default: the system roots")
	sipAddr := fs.String("sip", "", "the server's SIP over TLS address `HOST:PORT` (default: the server's host and the port the server announces)")
	domain := fs.String("domain", "", "the server's SIP `DOMAIN` (default: the one the server announces at login)")
	stdinPw := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	force := fs.Bool("force", false, "log in as another account than the profile's, deleting that account's messages from this profile")
	return func(ctx context.Context, _ []string) error {
		if *server == "" || *account == "" {
			return cli.Usagef("--server and --account are required")
		}
		if err := a.resolveHome(); err != nil {
			return err
		}
		password, err := a.readPassword(*stdinPw, *account)
		if err != nil {
			return err
		}
		err = client.Login(ctx, client.LoginOptions{
			Home: a.home, Server: *server, Account: *account, Password: password,
			CAFile: *ca, SIPAddr: *sipAddr, Domain: *domain, Force: *force,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "logged in as %s at %s; profile in %s\n", client.NormalizeAccount(*account), *server, a.home)
		return nil
	}
}

func (a *app) readPassword(fromStdin bool, account string) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(a.stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("read the password from standard input: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("standard input is not a terminal to ask the password on; use --password-stdin")
	}
	fmt.Fprintf(a.stderr, "password for %s: ", account)
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", fmt.Errorf("read the password: %w", err)
	}
	return string(pw), nil
}

func (a *app) open(n client.Notifier, logf func(string, ...any)) (*client.Core, error) {
	if err := a.resolveHome(); err != nil {
		return nil, err
	}
	return client.Open(client.Options{Home: a.home, Notifier: n, Logf: logf})
}

// waitLocal follows a message that a running `sealpost run` is sending:
// that process writes each status to the shared store.
func waitLocal(ctx context.Context, core *client.Core, m client.Message, printer func(client.Event)) error {
	last := m.Status
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		cur, err := core.Message(ctx, m.ID)
		if err != nil {
			return err
		}
		if cur.Status != last {
			last = cur.Status
			printer(client.Event{Kind: client.EventStatus, Time: time.Now(), ID: m.ID, Peer: m.Peer, Status: cur.Status, Detail: detail(cur)})
		}
		if cur.Status.Final() {
			return finalErr(cur)
		}
		select {
		case <-ctx.Done():
			return cli.ExitError{Code: exitNotFinal, Err: fmt.Errorf("still %s when --timeout ran out; it stays queued", client.StatusMark(cur.Status))}
		case <-tick.C:
		}
	}
}

// waitServer follows an Enqueued message without a SIP registration (no
// run is up, so no delivery report can reach this device): it asks the
// server every two seconds.
func waitServer(ctx context.Context, core *client.Core, m client.Message, printer func(client.Event)) error {
	last := m.Status
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return cli.ExitError{Code: exitNotFinal, Err: fmt.Errorf("still %s when --timeout ran out; it stays queued", client.StatusMark(last))}
		case <-tick.C:
		}
		cur, err := core.Refresh(ctx, m.ID)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			return err
		}
		if cur.Status != last {
			last = cur.Status
			printer(client.Event{Kind: client.EventStatus, Time: time.Now(), ID: m.ID, Peer: m.Peer, Status: cur.Status, Detail: detail(cur)})
		}
		if cur.Status.Final() {
			return finalErr(cur)
		}
	}
}

func detail(m client.Message) string {
	if m.Status == message.Error {
		return m.LastError
	}
	return ""
}

func finalErr(m client.Message) error {
	if m.Status == message.Error {
		return fmt.Errorf("not delivered: %s", m.LastError)
	}
	return nil
}

func eventPrinter(w interface{ Write([]byte) (int, error) }, asJSON bool) func(client.Event) {
	return func(e client.Event) {
		if asJSON {
			b, _ := json.Marshal(e)
			fmt.Fprintf(w, "%s\n", b)
			return
		}
		fmt.Fprintln(w, strings.ReplaceAll(clean(e.String()), "\n", " "))
	}
}

func (a *app) cmdRun(fs *flag.FlagSet) runner {
	jsonOut := fs.Bool("json", false, "print one JSON object per event, for scripts; a received message's event carries its text (it is your own stream: keep it out of shared logs)")
	verbose := fs.Bool("v", false, "print diagnostics on standard error (never message texts or secrets)")
	return func(ctx context.Context, _ []string) error {
		var logf func(string, ...any)
		if *verbose {
			logf = func(f string, args ...any) { fmt.Fprintf(a.stderr, "sealpost: "+f+"\n", args...) }
		}
		core, err := a.open(newNotifier(a.stderr), logf)
		if err != nil {
			return err
		}
		defer core.Close()
		printer := eventPrinter(a.stdout, *jsonOut)
		events, stop := core.Subscribe()
		defer stop()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for e := range events {
				printer(e)
			}
		}()
		if !*jsonOut {
			fmt.Fprintf(a.stdout, "sealpost run: %s at %s (Ctrl-C to stop)\n", core.Account(), core.Server())
		}
		err = core.Run(ctx)
		stop()
		<-done
		return err
	}
}

func (a *app) cmdHistory(fs *flag.FlagSet) runner {
	width := fs.Int("width", 0, "line `WIDTH` (default: the terminal's, else 80)")
	return func(ctx context.Context, pos []string) error {
		core, err := a.open(nil, nil)
		if err != nil {
			return err
		}
		defer core.Close()
		a.refreshStatuses(ctx, core, pos[0], "history")
		h, err := core.History(ctx, pos[0])
		if err != nil {
			return err
		}
		w := *width
		if w <= 0 {
			w = terminalWidth(a.stdout)
		}
		printHistory(a.stdout, core.Account(), pos[0], h, w)
		return nil
	}
}

func (a *app) cmdStatus(fs *flag.FlagSet) runner {
	return func(ctx context.Context, pos []string) error {
		core, err := a.open(nil, nil)
		if err != nil {
			return err
		}
		defer core.Close()
		m, err := core.Message(ctx, pos[0])
		if err != nil {
			return err
		}
		if m.Outgoing && m.Status == message.Enqueued && !core.RunActive() {
			// No delivery report may have reached this device (no run was
			// up): ask the server. Offline, the local status is still shown.
			if fresh, err := core.Refresh(ctx, m.ID); err == nil {
				m = fresh
			} else {
				fmt.Fprintf(a.stderr, "sealpost status: could not ask the server (%v); showing what this device knows\n", err)
			}
		}
		printStatus(a.stdout, m)
		return nil
	}
}

func (a *app) cmdContacts(fs *flag.FlagSet) runner {
	return func(ctx context.Context, _ []string) error {
		core, err := a.open(nil, nil)
		if err != nil {
			return err
		}
		defer core.Close()
		a.refreshStatuses(ctx, core, "", "contacts")
		cs, err := core.Contacts(ctx)
		if err != nil {
			return err
		}
		if len(cs) == 0 {
			fmt.Fprintln(a.stdout, "no conversations yet")
			return nil
		}
		for _, c := range cs {
			unread := ""
			if c.Unread > 0 {
				unread = fmt.Sprintf("%d unread", c.Unread)
			}
			fmt.Fprintf(a.stdout, "%-20s %-10s %3d message(s), last %s\n", c.Name, unread, c.Total, c.Last.Local().Format("2006-01-02 15:04"))
		}
		return nil
	}
}

func (a *app) cmdSettings(fs *flag.FlagSet) runner {
	return func(ctx context.Context, pos []string) error {
		if len(pos) != 0 && len(pos) != 2 {
			return cli.Usagef("give no argument to list the settings, or NAME VALUE to change one")
		}
		if err := a.resolveHome(); err != nil {
			return err
		}
		if _, err := os.Stat(a.home); err != nil {
			return fmt.Errorf("profile folder: %w", err)
		}
		s, err := client.LoadSettings(a.home)
		if err != nil {
			return err
		}
		if len(pos) == 2 {
			if err := s.Set(pos[0], pos[1]); err != nil {
				return err
			}
			if err := client.SaveSettings(a.home, s); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s = %s (a running sealpost run uses it after a restart)\n", pos[0], s.List()[pos[0]])
			return nil
		}
		list := s.List()
		for _, k := range sortedKeys(list) {
			fmt.Fprintf(a.stdout, "%-20s %s\n", k, list[k])
		}
		return nil
	}
}

// refreshStatuses asks the server, in one request, where the messages
// still Enqueued here stand, unless a run is up (its delivery reports keep
// them true). Offline, what the device knows is shown, with a note.
func (a *app) refreshStatuses(ctx context.Context, core *client.Core, peer, cmd string) {
	if core.RunActive() {
		return
	}
	if _, err := core.RefreshStatuses(ctx, peer); err != nil {
		fmt.Fprintf(a.stderr, "sealpost %s: could not ask the server where your messages stand (%v); showing what this device knows\n", cmd, err)
	}
}
