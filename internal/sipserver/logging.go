package sipserver

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// sipgo logs what it cannot parse whole, message body and Authorization
// header included ("failed to parse" … data=<the raw message>), at error
// level. Message text and credentials must never reach a log, so every
// logger handed to sipgo goes through redact: it keeps only attributes
// known to carry addresses and errors, and cuts error values short.
func redact(h slog.Handler) slog.Handler { return redactor{h} }

// safeAttrs are the sipgo log attributes that carry no message content.
var safeAttrs = map[string]bool{
	"caller": true, "raddr": true, "laddr": true, "addr": true, "network": true,
	"ip": true, "dst": true, "ref": true, "transport": true, "source": true,
	"error": true, "err": true, "backoff": true, "remote": true, "state": true,
}

type redactor struct{ slog.Handler }

func (r redactor) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	// A parse error quotes the input it could not parse, which can be a
	// message's text: none of it is kept. (framing.go hands sipgo only
	// messages that parse; this is the second line of defence.)
	parsing := strings.Contains(strings.ToLower(rec.Message), "parse")
	rec.Attrs(func(a slog.Attr) bool {
		if parsing && (a.Key == "error" || a.Key == "err") {
			out.AddAttrs(slog.String(a.Key, "[redacted]"))
			return true
		}
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.Handler.Handle(ctx, out)
}

func (r redactor) WithAttrs(as []slog.Attr) slog.Handler {
	safe := make([]slog.Attr, len(as))
	for i, a := range as {
		safe[i] = redactAttr(a)
	}
	return redactor{r.Handler.WithAttrs(safe)}
}

func (r redactor) WithGroup(name string) slog.Handler { return redactor{r.Handler.WithGroup(name)} }

func redactAttr(a slog.Attr) slog.Attr {
	if !safeAttrs[a.Key] {
		return slog.String(a.Key, "[redacted]")
	}
	if a.Key == "error" || a.Key == "err" {
		// A parse error may quote a header; keep the first line, short.
		s := a.Value.String()
		if i := strings.IndexAny(s, "\r\n"); i >= 0 {
			s = s[:i]
		}
		if len(s) > 120 {
			s = s[:120] + "…"
		}
		return slog.String(a.Key, s)
	}
	return a
}

// libraryLog is where sipgo's package-level logger writes. sipgo uses that
// logger wherever it was not handed one (its transports among them), so it
// is redacted too, and floored at errors: at warning level it reports
// reference counting on every normal connection close.
var (
	libraryLogMu  sync.Mutex
	libraryLogOut io.Writer = os.Stderr // guarded by libraryLogMu
)

type libraryWriter struct{}

func (libraryWriter) Write(p []byte) (int, error) {
	libraryLogMu.Lock()
	defer libraryLogMu.Unlock()
	return libraryLogOut.Write(p)
}

func init() {
	sip.SetDefaultLogger(slog.New(redact(slog.NewTextHandler(libraryWriter{}, &slog.HandlerOptions{Level: slog.LevelError}))))
}
