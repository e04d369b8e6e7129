package server

import (
	"context"
	"errors"
	"log/slog"

	"github.com/sealpost/sealpost/internal/store/sqlite"
)

// quietStoreErrors is the log handler of the server's parts (API, queue,
// SIP): a record whose error is a store failure the store has already
// logged once — writes failing (a full disk) or a read meeting damage — is
// lowered to Debug. Under load every submission and every delivery mark
// meets that failure; one line from the store when it starts and one when
// it ends say it, and sealpost_store_*_failures_total counts it, instead
// of thousands of ERROR lines a second written to the same full disk.
type quietStoreErrors struct{ slog.Handler }

func (h quietStoreErrors) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug && reportedByStore(r) {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietStoreErrors) WithAttrs(as []slog.Attr) slog.Handler {
	return quietStoreErrors{h.Handler.WithAttrs(as)}
}

func (h quietStoreErrors) WithGroup(name string) slog.Handler {
	return quietStoreErrors{h.Handler.WithGroup(name)}
}

func reportedByStore(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() != slog.KindAny {
			return true // a string, number or time: not an error (and Any would box it)
		}
		if err, ok := a.Value.Any().(error); ok && (errors.Is(err, sqlite.ErrUnavailable) || errors.Is(err, sqlite.ErrDamaged)) {
			found = true
			return false
		}
		return true
	})
	return found
}
