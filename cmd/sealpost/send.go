package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/internal/cli"
	"github.com/sealpost/sealpost/message"
)

// Exit codes of `send --wait` beyond 0 (Delivered) and 1 (Error: refused,
// expired, given up, or any other failure).
const exitNotFinal = 3 // not Delivered nor Error when --timeout ran out, or the round failed: it stays queued

const sendHelp = "send a message to NAME; returns once it is queued (--wait: once it is Delivered or Error)"

func (a *app) cmdSend(fs *flag.FlagSet) runner {
	wait := fs.Bool("wait", false, "follow the message until Delivered (exit 0) or Error (exit 1); exit 3 if neither when --timeout runs out (it stays queued)")
	timeout := fs.Duration("timeout", 2*time.Minute, "with --wait: stop waiting after this `DURATION` (exit 3)")
	jsonOut := fs.Bool("json", false, "print status changes as JSON objects, one a line")
	return func(ctx context.Context, pos []string) error {
		core, err := a.open(newNotifier(a.stderr), nil)
		if err != nil {
			return err
		}
		defer core.Close()
		printer := eventPrinter(a.stdout, *jsonOut)
		m, err := core.Send(ctx, pos[0], pos[1])
		if err != nil {
			return err
		}
		printer(client.Event{Kind: client.EventStatus, Time: m.CreatedAt, ID: m.ID, Peer: m.Peer, Status: m.Status})
		if !*wait {
			// With --json, standard output stays JSON: notes go to stderr.
			notes := a.stdout
			if *jsonOut {
				notes = a.stderr
			}
			return queued(ctx, core, m, printer, notes, a.stderr)
		}
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		handed, err := core.HandOff(ctx, m.ID)
		if err != nil {
			fmt.Fprintf(a.stderr, "sealpost send: %v; sending it from here\n", err)
		}
		if handed {
			return waitLocal(ctx, core, m, printer)
		}
		// No run is up: submit it from this process, one round.
		events, stop := core.Subscribe()
		printed := make(chan struct{})
		go func() {
			defer close(printed)
			for e := range events {
				// Sending was printed above; then every failed attempt and
				// each later status.
				if e.ID == m.ID && (e.Kind != client.EventStatus || e.Status != message.Sending) {
					printer(e)
				}
			}
		}()
		flushErr := core.Flush(ctx)
		stop()
		<-printed
		cur, err := core.Message(context.WithoutCancel(ctx), m.ID)
		if err != nil {
			return err
		}
		switch {
		case cur.Status == message.Error:
			return fmt.Errorf("not sent: %s", cur.LastError)
		case cur.Status == message.Sending || flushErr != nil:
			return cli.ExitError{Code: exitNotFinal, Err: fmt.Errorf("not accepted by the server yet (%s); it stays queued: sealpost run sends it, or your next send", cur.LastError)}
		}
		return waitServer(ctx, core, cur, printer)
	}
}

// queued hands a stored message to a running `sealpost run`, or else
// makes one attempt from here, and prints where it stands: `send` without
// --wait returns once the message is queued, on the server or in the
// outbox, without waiting out a round.
func queued(ctx context.Context, core *client.Core, m client.Message, printer func(client.Event), notes, stderr io.Writer) error {
	handed, err := core.HandOff(ctx, m.ID)
	if err != nil {
		fmt.Fprintf(stderr, "sealpost send: %v; trying from here\n", err)
	}
	if handed {
		fmt.Fprintf(notes, "queued: handed to the running sealpost run, which sends it (sealpost status %s)\n", m.ID)
		return nil
	}
	if err := core.AttemptOnce(ctx); err != nil {
		return err
	}
	cur, err := core.Message(ctx, m.ID)
	if err != nil {
		return err
	}
	switch cur.Status {
	case message.Sending:
		fmt.Fprintf(notes, "queued in the outbox: not accepted by the server yet (%s); sealpost run sends it, or your next send\n", cur.LastError)
	case message.Error:
		return fmt.Errorf("not sent: %s", cur.LastError)
	default:
		printer(client.Event{Kind: client.EventStatus, Time: cur.SubmittedAt, ID: cur.ID, Peer: cur.Peer, Status: cur.Status, Detail: detail(cur)})
	}
	return nil
}
