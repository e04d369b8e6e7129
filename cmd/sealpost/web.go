package main

import (
	"context"
	"flag"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/sealpost/sealpost/client/web"
)

// cmdWeb is `sealpost web`: the client core run exactly as `sealpost run`
// runs it, with the web UI (package client/web) on a loopback address.
func (a *app) cmdWeb(fs *flag.FlagSet) runner {
	listen := fs.String("listen", "127.0.0.1:0", "`ADDR` to serve the web UI on; loopback only (default: a free port)")
	noBrowser := fs.Bool("no-browser", false, "print the address without opening a browser")
	verbose := fs.Bool("v", false, "print diagnostics on standard error (never message texts or secrets)")
	return func(ctx context.Context, _ []string) error {
		var logf func(string, ...any)
		if *verbose {
			logf = func(f string, args ...any) { fmt.Fprintf(a.stderr, "sealpost: "+f+"\n", args...) }
		}
		// The page raises the notifications; the terminal shows the
		// events, as `sealpost run` does.
		core, err := a.open(nil, logf)
		if err != nil {
			return err
		}
		defer core.Close()
		ui, err := web.New(core, web.Options{Listen: *listen, Logf: logf})
		if err != nil {
			return err
		}
		events, stop := core.Subscribe()
		defer stop()
		printer := eventPrinter(a.stdout, false)
		printed := make(chan struct{})
		go func() {
			defer close(printed)
			for e := range events {
				printer(e)
			}
		}()

		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		runErr := make(chan error, 1)
		go func() { runErr <- core.Run(ctx) }()
		serveErr := make(chan error, 1)
		go func() { serveErr <- ui.Serve(ctx) }()

		fmt.Fprintf(a.stdout, "sealpost web: %s at %s\n", core.Account(), core.Server())
		fmt.Fprintf(a.stdout, "open %s\n(the address holds a key to your messages: keep it to yourself; Ctrl-C to stop)\n", ui.URL())
		if !*noBrowser {
			page, err := openBrowser(core.Home(), ui.URL(), a.getenv)
			if err != nil {
				fmt.Fprintf(a.stderr, "sealpost web: no browser opened (%v); open the address above\n", err)
			}
			if page != "" {
				// The token dies with this process; so does its page.
				defer os.Remove(page)
			}
		}

		var first error
		select {
		case first = <-runErr:
			cancel()
			if err := <-serveErr; first == nil {
				first = err
			}
		case first = <-serveErr:
			cancel()
			if err := <-runErr; first == nil {
				first = err
			}
		}
		stop()
		<-printed
		return first
	}
}

// openBrowser opens url in the user's browser. As Jupyter does, it opens a
// file of the profile folder (0600) that redirects to the address, so that
// the token is not on a command line other users can read.
func openBrowser(home, url string, getenv func(string) string) (page string, err error) {
	var opener []string
	switch runtime.GOOS {
	case "darwin":
		opener = []string{"open"}
	case "windows":
		opener = []string{"rundll32", "url.dll,FileProtocolHandler"}
	default:
		if getenv("DISPLAY") == "" && getenv("WAYLAND_DISPLAY") == "" {
			return "", fmt.Errorf("no graphical session")
		}
		opener = []string{"xdg-open"}
	}
	path, err := exec.LookPath(opener[0])
	if err != nil {
		return "", err
	}
	page = filepath.Join(home, "web-open.html")
	body := fmt.Sprintf("<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url=%s\"><title>sealpost web</title><a href=\"%s\">Open sealpost web</a>\n",
		html.EscapeString(url), html.EscapeString(url))
	if err := os.WriteFile(page, []byte(body), 0o600); err != nil {
		return "", err
	}
	if err := os.Chmod(page, 0o600); err != nil {
		return page, err
	}
	cmd := exec.Command(path, append(opener[1:], page)...)
	if err := cmd.Start(); err != nil {
		return page, err
	}
	go cmd.Wait()
	return page, nil
}
