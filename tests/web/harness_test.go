package web_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/client/web"
	"github.com/sealpost/sealpost/internal/server/servertest"
)

// One headless Chromium serves every test of the package (each test opens
// its own tabs in fresh browser contexts, so cookies never cross): a
// launch costs seconds on a busy machine.
type chromium struct {
	once     sync.Once
	path     string
	dataDir  string
	alloc    context.Context
	browser  context.Context
	cancel   []context.CancelFunc
	err      error
	shotsDir string
}

var shared chromium

func TestMain(m *testing.M) {
	code := m.Run()
	shared.close()
	os.Exit(code)
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// start launches the browser on first use.
func (c *chromium) start() error {
	c.once.Do(func() {
		c.path = findChromium()
		if c.path == "" {
			c.err = errSkip
			return
		}
		if c.dataDir, c.err = os.MkdirTemp("", "sealpost-chromium-"); c.err != nil {
			return
		}
		if c.shotsDir, c.err = os.MkdirTemp("", "sealpost-web-screenshots-"); c.err != nil {
			return
		}
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(c.path),
			chromedp.UserDataDir(c.dataDir),
			chromedp.Flag("headless", true),
			chromedp.Flag("no-sandbox", true), // the tests run as root in CI
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("no-first-run", true),
			chromedp.Flag("no-default-browser-check", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.Flag("disable-extensions", true),
			chromedp.Flag("disable-background-timer-throttling", true),
			chromedp.Flag("disable-renderer-backgrounding", true),
			chromedp.Flag("disable-backgrounding-occluded-windows", true),
			chromedp.Flag("password-store", "basic"),
			chromedp.WindowSize(1100, 760),
		}
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		// The browser's own complaints (no D-Bus in a container) are not
		// the tests' business.
		b, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithLogf(func(string, ...any) {}))
		c.alloc, c.browser = alloc, b
		c.cancel = []context.CancelFunc{cancelBrowser, cancelAlloc}
		// The first action starts the browser; it must not have a timeout
		// of its own (that would stop the browser with it).
		c.err = chromedp.Do(b)
	})
	return c.err
}

func (c *chromium) close() {
	for _, f := range c.cancel {
		f()
	}
	if c.dataDir != "" {
		os.RemoveAll(c.dataDir)
	}
}

var errSkip = errors.New("no Chromium found (looked for chromium, chromium-browser, google-chrome): install Debian's chromium (.ci/install-chromium.sh) to run the browser tests")

// tab opens a tab in a browser context of its own.
func tab(t *testing.T) context.Context {
	t.Helper()
	if err := shared.start(); err != nil {
		if errors.Is(err, errSkip) {
			t.Skip(err)
		}
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := chromedp.NewContext(shared.browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	// Every page of the tab keeps its script errors and the Content
	// Security Policy's refusals; the test fails if the last page has any.
	const watch = `window.__problems = [];
window.addEventListener("error", (e) => window.__problems.push("error: " + e.message));
window.addEventListener("unhandledrejection", (e) => window.__problems.push("unhandled rejection: " + e.reason));
document.addEventListener("securitypolicyviolation", (e) => window.__problems.push("CSP: " + e.violatedDirective + " " + e.blockedURI));`
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: watch}); err != nil {
		t.Fatalf("watch the page: %v", err)
	}
	t.Cleanup(func() {
		problems, err := evalE[[]string](ctx, `window.__problems || []`)
		if err != nil {
			t.Logf("could not read the page's problems: %v", err)
			return
		}
		if len(problems) > 0 {
			t.Errorf("the page had problems: %q", problems)
		}
	})
	return ctx
}

// run runs actions with a timeout (a hung browser fails the test, not
// the whole package).
func run(ctx context.Context, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

func must(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := run(ctx, 60*time.Second, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// evalE evaluates a JavaScript expression (awaiting a promise).
func evalE[T any](ctx context.Context, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// eval evaluates a JavaScript expression, failing the test on an error.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := evalE[T](ctx, expr)
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls the page until expr is true; else it fails the test with
// what describe (another expression) says at the end.
func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, expr, describe string) {
	t.Helper()
	servertest.CheckFor(t, timeout, func() error {
		ok, err := evalE[bool](ctx, "!!("+expr+")")
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		var what any
		if describe != "" {
			what, _ = evalE[any](ctx, describe)
		}
		return fmt.Errorf("waiting for %s; now: %v", expr, what)
	})
}

// screenshot saves the tab as a PNG among the test run's artifacts and
// logs where.
func screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(shared.shotsDir, t.Name()+"-"+name+".png")
	path = strings.ReplaceAll(path, " ", "_")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

// grantNotifications lets origin show notifications in the tab's browser
// context, as a user who clicked "Allow".
func grantNotifications(t *testing.T, ctx context.Context, origin string) {
	t.Helper()
	c := chromedp.FromContext(ctx)
	_, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "notifications"},
		Setting:    browser.PermissionSettingGranted, Origin: origin, BrowserContextID: c.BrowserContextID,
	})
	if err != nil {
		t.Fatalf("grant notifications: %v", err)
	}
}

// recordNotifications makes every page of the tab keep the notifications
// it raises in window.__notes (the real Notification still runs), and
// makes the page's window count as not focused, as when the user works in
// another window: headless Chromium gives every tab the focus, and the
// page raises notifications only when it is not focused.
func recordNotifications(t *testing.T, ctx context.Context) {
	t.Helper()
	const js = `window.__notes = [];
document.hasFocus = () => false;
(() => {
  const Real = window.Notification;
  if (!Real) return;
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notes.push({ title, body: (options && options.body) || "", n: this });
    }
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  Recorded.requestPermission = (...a) => Real.requestPermission(...a);
  window.Notification = Recorded;
})();`
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js}); err != nil {
		t.Fatalf("record notifications: %v", err)
	}
}

// device is one account: its profile, its running core and its web UI.
type device struct {
	t    *testing.T
	name string
	home string
	core *client.Core
	ui   *web.UI
	stop func()
	// conns are the browser's connections to the UI, to cut them.
	conns *trackedListener
}

// trackedListener remembers the connections it accepted, and can play a
// network that is down.
type trackedListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool // guarded by mu
	down  bool              // guarded by mu
}

func (l *trackedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return c, err
		}
		l.mu.Lock()
		down := l.down
		if !down {
			l.conns[c] = true
		}
		l.mu.Unlock()
		if !down {
			return c, nil
		}
		c.Close() // the network is down: nothing gets through
	}
}

// setDown cuts every connection and refuses new ones until
// setDown(false).
func (l *trackedListener) setDown(down bool) int {
	l.mu.Lock()
	l.down = down
	l.mu.Unlock()
	if down {
		return l.cut()
	}
	return 0
}

// cut closes every connection accepted so far, as a network that fails
// does; the listener stays open.
func (l *trackedListener) cut() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.conns)
	for c := range l.conns {
		c.Close()
		delete(l.conns, c)
	}
	return n
}

// settings are the defaults with a quick reconnect and short attempt
// slots, so that a device comes back within seconds after the server
// restarts.
func settings() *client.Settings {
	s := client.DefaultSettings()
	s.ReconnectMin = client.Duration(50 * time.Millisecond)
	s.ReconnectMax = client.Duration(300 * time.Millisecond)
	s.AttemptTimeout = client.Duration(2 * time.Second)
	return &s
}

// newDevice creates the account on srv, logs in, and runs the core with
// its web UI exactly as `sealpost web` does.
func newDevice(t *testing.T, srv *servertest.Server, name string, change ...func(*client.Settings)) *device {
	t.Helper()
	password := "pw-" + name + "-secret"
	srv.AddUser(t, name, password)
	home := filepath.Join(t.TempDir(), name)
	err := client.Login(context.Background(), client.LoginOptions{
		Home: home, Server: srv.HTTPSURL, Account: name, Password: password,
		CAFile: srv.CAFile, SIPAddr: srv.SIPAddr, Domain: srv.Domain,
	})
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	logf := func(f string, a ...any) { t.Logf(name+": "+f, a...) }
	s := settings()
	for _, f := range change {
		f(s)
	}
	core, err := client.Open(client.Options{Home: home, Settings: s, Logf: logf})
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := &trackedListener{Listener: ln, conns: map[net.Conn]bool{}}
	ui, err := web.New(core, web.Options{Listener: conns, Logf: logf})
	if err != nil {
		t.Fatalf("web UI for %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); core.Run(ctx) }()
	go func() { defer wg.Done(); ui.Serve(ctx) }()
	d := &device{t: t, name: name, home: home, core: core, ui: ui, conns: conns}
	var once sync.Once
	d.stop = func() { once.Do(func() { cancel(); wg.Wait(); core.Close() }) }
	t.Cleanup(d.stop)
	return d
}

func (d *device) origin() string { return "http://" + d.ui.Addr() }

// open signs the tab in with the printed URL and goes to path.
func (d *device) open(ctx context.Context, path string) {
	d.t.Helper()
	must(d.t, ctx, "sign in", chromedp.Navigate(d.ui.URL()))
	if path != "/" {
		must(d.t, ctx, "open "+path, chromedp.Navigate(d.origin()+path))
	}
	waitFor(d.t, ctx, 30*time.Second, `document.readyState === "complete" && window.SealpostRules`, "document.readyState")
}

// online waits until every device is registered.
func online(t *testing.T, ds ...*device) {
	t.Helper()
	servertest.CheckFor(t, 20*time.Second, func() error {
		for _, d := range ds {
			if !d.core.Online() {
				return fmt.Errorf("%s is not registered", d.name)
			}
		}
		return nil
	})
}

// httpClient does not follow redirects, so that tests see them.
func httpClient() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

func tokenOf(t *testing.T, d *device) string {
	u, err := url.Parse(d.ui.URL())
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

// pressEnter presses Enter (with Shift when shift) in the focused element
// the way a keyboard does: one keyDown carrying the text "\r", so that a
// page that prevents the keydown's default gets no line feed (chromedp's
// SendKeys sends a separate char event, which a real keyboard never does).
func pressEnter(t *testing.T, ctx context.Context, shift bool) {
	t.Helper()
	var mods int64
	if shift {
		mods = 8
	}
	for _, p := range []input.DispatchKeyEventParams{
		{Type: input.DispatchKeyEventTypeKeyDown, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13, Text: "\r", UnmodifiedText: "\r", Modifiers: mods},
		{Type: input.DispatchKeyEventTypeKeyUp, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13, Modifiers: mods},
	} {
		if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, p); err != nil {
			t.Fatalf("press Enter: %v", err)
		}
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
