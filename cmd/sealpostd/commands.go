package main

import (
	"flag"

	"github.com/sealpost/sealpost/internal/cli"
)

// commands is sealpostd's command table: the one place that defines each
// command's name, arguments, help, example, flags and function. Help pages,
// usage errors and exit codes are generated from it (package cli). A new
// command is a row here and its function in a file of its own.
func (a *app) commands() []cli.Command {
	return []cli.Command{
		{
			Name: "serve", Help: "run the server (what sealpostd does with no command)",
			Example: "sealpostd --data /var/lib/sealpostd --domain sp.example.org",
			Run:     a.serve,
		},
		{
			Name: "user add", Args: "NAME", NArgs: 1,
			Help:    "create an account; prints a generated password unless --password-stdin",
			Example: "echo 'alice-password-1' | sealpostd user add alice --password-stdin",
			Flags:   a.passwordFlags, Run: a.userAdd,
		},
		{
			Name: "user passwd", Args: "NAME", NArgs: 1,
			Help:    "set a new password (revokes the account's tokens)",
			Example: "sealpostd user passwd alice",
			Flags:   a.passwordFlags, Run: a.userPasswd,
		},
		{
			Name: "user del", Args: "NAME", NArgs: 1,
			Help:    "delete an account with its tokens and messages; a running server disconnects its device",
			Example: "sealpostd user del alice",
			Run:     a.userDel,
		},
		{
			Name: "user list", NArgs: 0,
			Help:    "list the accounts: SIP address, last registration, online",
			Example: "sealpostd user list",
			Run:     a.userList,
		},
		{
			Name: "messages list", NArgs: 0,
			Help:    "every message's fate, newest first, never its text (enqueued,parked: its retries are used up; it waits for expiry and a failure report to its sender)",
			Example: "sealpostd messages list --account alice --status enqueued",
			Flags:   a.messagesFlags, Run: a.messagesList,
		},
		{
			Name: "backup", Args: "FILE", NArgs: 1,
			Help:    "write a consistent copy of the embedded store to FILE, while the server runs (the master key is not in it: back it up apart)",
			Example: "sealpostd --data /var/lib/sealpostd backup /var/backups/sealpost-$(date +%F).db",
			Run:     a.backup,
		},
		{
			Name: "domain set", Args: "NAME", NArgs: 1,
			Help:    "change the SIP domain recorded in the data folder (server stopped; every password must then be set again)",
			Example: "sealpostd --data /var/lib/sealpostd domain set sp.example.org",
			Run:     a.domainSet,
		},
		{
			Name: "store check", NArgs: 0,
			Help:    "check the store for damage, as serve does at its start (read-only; works beside a running server)",
			Example: "sealpostd --data /var/lib/sealpostd store check",
			Run:     a.storeCheck,
		},
		{
			Name: "store recover", Args: "OUT", NArgs: 1,
			Help:    "salvage what can be read of a damaged store into the new store file OUT; says how many messages it saved",
			Example: "sealpostd --data /var/lib/sealpostd store recover /var/lib/sealpostd/recovered.db",
			Run:     a.storeRecover,
		},
		{
			Name: "store copy", NArgs: 0,
			Help:    "copy the embedded SQLite store, waiting messages and all, into an empty PostgreSQL database (server stopped)",
			Example: "sealpostd --data /var/lib/sealpostd store copy --to postgres://sealpost@db.example.org:5432/sealpost",
			Flags:   a.storeCopyFlags, Run: a.storeCopy,
		},
		{
			Name: "config example", NArgs: 0,
			Help:    "print a commented config file with every setting at its default",
			Example: "sealpostd config example > /etc/sealpostd.conf",
			Run:     a.configExample,
		},
	}
}

func (a *app) passwordFlags(fs *flag.FlagSet) {
	fs.BoolVar(&a.passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
}

func (a *app) messagesFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.account, "account", "", "only messages from or to this `NAME`")
	fs.StringVar(&a.status, "status", "", "only this `STATUS`: enqueued, delivered or expired")
	fs.IntVar(&a.limit, "limit", 100, "at most `N` messages")
}

func (a *app) configExample([]string) error {
	a.cfg.writeExample(a.stdout)
	return nil
}
