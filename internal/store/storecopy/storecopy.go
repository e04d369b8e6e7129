// Package storecopy moves a single node's embedded SQLite store into an
// empty PostgreSQL store (sealpostd store copy), so that a deployment can
// grow onto a shared database without losing a waiting message.
//
// The copy reads the SQLite store in one read transaction, writes it into
// PostgreSQL in one transaction (all or nothing), and then reads back every
// waiting message from PostgreSQL and compares it with the original. The
// server must be stopped meanwhile (the command holds the data folder's
// lock), or messages accepted after the read would be left behind. The
// master key is not copied and not needed: data keys stay wrapped, and the
// server keeps using the data folder's master key with the new store.
package storecopy

import (
	"bytes"
	"context"
	"fmt"

	"github.com/sealpost/sealpost/internal/store/postgres"
	"github.com/sealpost/sealpost/internal/store/sqlite"
	"github.com/sealpost/sealpost/message"
)

// Counts says what was copied.
type Counts struct {
	Accounts, Tokens, Messages, Waiting, Reports, DataKeys int
}

func (c Counts) String() string {
	return fmt.Sprintf("%d accounts, %d tokens, %d messages (%d waiting for delivery), %d delivery reports, %d data keys",
		c.Accounts, c.Tokens, c.Messages, c.Waiting, c.Reports, c.DataKeys)
}

// Copy copies the SQLite store at fromPath into the empty PostgreSQL store
// at toURL and checks every waiting message in the copy.
func Copy(ctx context.Context, fromPath, toURL string) (Counts, error) {
	src, err := sqlite.Open(fromPath, sqlite.Options{})
	if err != nil {
		return Counts{}, fmt.Errorf("opening the source store: %w", err)
	}
	defer src.Close()
	snap, err := src.Export(ctx)
	if err != nil {
		return Counts{}, err
	}
	dst, err := postgres.Open(ctx, toURL, postgres.Options{})
	if err != nil {
		return Counts{}, fmt.Errorf("opening the target store: %w", err)
	}
	defer dst.Close()
	if err := dst.Import(ctx, snap); err != nil {
		return Counts{}, err
	}
	c := Counts{Accounts: len(snap.Accounts), Tokens: len(snap.Tokens), Messages: len(snap.Messages),
		Reports: len(snap.Reports), DataKeys: len(snap.DataKeys)}
	for _, m := range snap.Messages {
		if m.Status != message.Enqueued {
			continue
		}
		c.Waiting++
		got, err := dst.Message(ctx, m.From, m.ID)
		if err != nil {
			return c, fmt.Errorf("checking the copy of message %s from %q: %w", m.ID, m.From, err)
		}
		if got.Seq != m.Seq || got.To != m.To || got.Status != m.Status || got.KeyPeriod != m.KeyPeriod ||
			!bytes.Equal(got.Sealed, m.Sealed) || got.Parked != m.Parked || !got.NextAttempt.Equal(m.NextAttempt) {
			return c, fmt.Errorf("the copy of message %s from %q differs from the original", m.ID, m.From)
		}
	}
	n, err := dst.CountPending(ctx)
	if err != nil {
		return c, fmt.Errorf("counting the copy's waiting messages: %w", err)
	}
	if n != c.Waiting {
		return c, fmt.Errorf("the copy holds %d waiting messages, the original %d", n, c.Waiting)
	}
	return c, nil
}
