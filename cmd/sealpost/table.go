package main

import "github.com/sealpost/sealpost/internal/cli"

// commandTable is every sealpost command: name, arguments, what it does,
// an example, and (through a.command) its flags and function.
func (a *app) commandTable() []cli.Command {
	return []cli.Command{
		a.command(cli.Command{Name: "login", NArgs: 0,
			Help:    "get a token for an account and remember the server in this profile",
			Example: "echo 'alice-password' | sealpost --home ./alice login --server https://localhost:8443 \\\n    --account alice --ca ./sealpost-data/cert.pem --password-stdin"}, a.cmdLogin),
		a.command(cli.Command{Name: "send", NArgs: 2,
			Args:    "NAME TEXT",
			Help:    "send a message to NAME (with --wait, follow it until Delivered or Error)",
			Example: "sealpost send bob 'Hello Bob 👋'\nsealpost send bob 'Are you there?' --wait"}, a.cmdSend),
		a.command(cli.Command{Name: "run", NArgs: 0,
			Help:    "stay online: register, receive, notify, send what is queued",
			Example: "sealpost run\nsealpost run --json"}, a.cmdRun),
		a.command(cli.Command{Name: "history", NArgs: 1,
			Args:    "NAME",
			Help:    "the conversation with NAME: NAME's messages on the left, yours on the right with their status",
			Example: "sealpost history alice"}, a.cmdHistory),
		a.command(cli.Command{Name: "status", NArgs: 1,
			Args:    "ID",
			Help:    "where one message stands (ID as printed by send)",
			Example: "sealpost status 5f0c2a"}, a.cmdStatus),
		a.command(cli.Command{Name: "contacts", NArgs: 0,
			Help:    "accounts you have talked with, newest first, with unread counts",
			Example: "sealpost contacts"}, a.cmdContacts),
		a.command(cli.Command{Name: "settings", NArgs: -1,
			Args:    "[NAME VALUE]",
			Help:    "show the settings, or change one",
			Example: "sealpost settings\nsealpost settings persistent true"}, a.cmdSettings),
		a.command(cli.Command{Name: "web", NArgs: 0,
			Help:    "stay online as run does, with the screens in your browser (a local page on 127.0.0.1)",
			Example: "sealpost web\nsealpost web --listen 127.0.0.1:8700 --no-browser"}, a.cmdWeb),
	}
}
