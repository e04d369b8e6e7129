package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Recover salvages what can be read of the store at src into a new store
// at dst, the way SQLite's .recover does it but with what the pure-Go
// driver offers: table by table, row by row, stepping over what cannot be
// read. src is opened read-only and never changed.
//
// Tables with a rowid (messages, reports, data keys) are read in rowid
// order in chunks; when a read fails the next one starts further on,
// doubling the step until a read works, and then a binary search finds the
// first readable rowid after the gap, so that a damaged page costs the rows
// on it and no more. Tables without a rowid (accounts, tokens) are read in
// key order and, after a failure, resumed after the last key read; a
// second failure at the same place ends that table. Indexes are not read
// (a damaged index loses nothing here): dst builds its own. The mailbox
// counts are derived again from the salvaged messages. A damaged
// write-ahead log loses the writes after its damage: SQLite reads src as
// of the last intact frame.
func Recover(src, dst string) (RecoverResult, error) {
	var res RecoverResult
	if _, err := os.Stat(src); err != nil {
		return res, fmt.Errorf("sqlite store: %w", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("sqlite store: %s exists; recover writes a new file and never overwrites one", dst)
	}
	if chk, err := Check(src); err == nil {
		res.Damage = chk.Problems
	}
	// A fresh store at the current schema.
	fresh, err := Open(dst, Options{ReserveBytes: -1})
	if err != nil {
		return res, fmt.Errorf("sqlite store: creating %s: %w", dst, err)
	}
	if err := fresh.Close(); err != nil {
		return res, fmt.Errorf("sqlite store: creating %s: %w", dst, err)
	}
	// With a WAL, read a copy with its intact frames applied instead of
	// letting SQLite stop at the first damaged one.
	readFrom := src
	merged, applied, damaged, err := mergeWAL(src, filepath.Dir(dst))
	if err != nil {
		return res, err
	}
	if merged != "" {
		defer os.Remove(merged)
		readFrom = merged
		res.WALFrames, res.WALDamaged = applied, damaged
	}
	in, err := sql.Open("sqlite", readOnlyDSN(readFrom))
	if err != nil {
		return res, fmt.Errorf("sqlite store: opening %s: %w", src, err)
	}
	defer in.Close()
	in.SetMaxOpenConns(1)
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(OFF)")
	q.Add("_pragma", "secure_delete(ON)")
	q.Add("_pragma", "journal_mode(WAL)")
	out, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: dst}).String()+"?"+q.Encode())
	if err != nil {
		return res, fmt.Errorf("sqlite store: opening %s: %w", dst, err)
	}
	defer out.Close()
	out.SetMaxOpenConns(1)
	ctx := context.Background()

	tables, err := stringsOf(out.QueryContext(ctx, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"))
	if err != nil {
		return res, fmt.Errorf("sqlite store: listing the tables of %s: %w", dst, err)
	}
	tx, err := out.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("sqlite store: writing %s: %w", dst, err)
	}
	defer tx.Rollback()
	for _, t := range tables {
		if t == "mailboxes" {
			continue // derived below
		}
		tr, err := recoverTable(ctx, in, tx, t)
		if err != nil {
			return res, err
		}
		res.Tables = append(res.Tables, tr)
	}
	// The mailbox counts follow from the messages salvaged (the insert
	// trigger counted them in as they came; this is the rule itself).
	if _, err := tx.ExecContext(ctx, `DELETE FROM mailboxes`); err != nil {
		return res, fmt.Errorf("sqlite store: recounting mailboxes: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO mailboxes (account, pending)
		SELECT to_acct, count(*) FROM messages WHERE status = 'enqueued' GROUP BY to_acct`); err != nil {
		return res, fmt.Errorf("sqlite store: recounting mailboxes: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(status = 'enqueued'), 0) FROM messages`).Scan(&res.Messages, &res.Enqueued); err != nil {
		return res, fmt.Errorf("sqlite store: counting salvaged messages: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("sqlite store: writing %s: %w", dst, err)
	}
	if _, err := out.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return res, fmt.Errorf("sqlite store: checkpointing %s: %w", dst, err)
	}
	return res, nil
}

// RecoverResult is what Recover salvaged.
type RecoverResult struct {
	Damage   []string // what Check found in the source
	Tables   []TableResult
	Messages int // messages salvaged
	Enqueued int // of which still waiting for delivery
	// WALFrames frames of the write-ahead log were applied; WALDamaged
	// damaged ones were stepped over.
	WALFrames, WALDamaged int
}

// TableResult is one table's salvage.
type TableResult struct {
	Name   string
	Rows   int // copied
	Gaps   int // unreadable stretches stepped over
	Closed bool
}

func (r RecoverResult) String() string {
	var b strings.Builder
	if len(r.Damage) > 0 {
		fmt.Fprintf(&b, "damage found: %s\n", strings.Join(r.Damage, "; "))
	}
	if r.WALDamaged > 0 {
		fmt.Fprintf(&b, "write-ahead log: %d intact frames applied, %d damaged frame(s) stepped over\n", r.WALFrames, r.WALDamaged)
	}
	for _, t := range r.Tables {
		fmt.Fprintf(&b, "  %-12s %d rows", t.Name, t.Rows)
		if t.Gaps > 0 {
			fmt.Fprintf(&b, ", %d unreadable stretch(es) skipped", t.Gaps)
		}
		if t.Closed {
			b.WriteString(", the rest of the table unreadable")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "salvaged %d messages (%d still to deliver)\n", r.Messages, r.Enqueued)
	return b.String()
}

func recoverTable(ctx context.Context, in *sql.DB, out *sql.Tx, table string) (TableResult, error) {
	tr := TableResult{Name: table}
	dstCols, err := columns(ctx, out, table)
	if err != nil {
		return tr, fmt.Errorf("sqlite store: columns of %s in the new store: %w", table, err)
	}
	srcCols, err := columns(ctx, in, table)
	if err != nil {
		if isDamage(err) {
			tr.Closed = true
			return tr, nil
		}
		return tr, fmt.Errorf("sqlite store: columns of %s in the damaged store: %w", table, err)
	}
	var cols []string
	have := map[string]bool{}
	for _, c := range srcCols {
		have[c] = true
	}
	for _, c := range dstCols {
		if have[c] {
			cols = append(cols, quoteIdent(c))
		}
	}
	if len(cols) == 0 {
		return tr, nil
	}
	list := strings.Join(cols, ", ")
	ins, err := out.PrepareContext(ctx, fmt.Sprintf("INSERT OR IGNORE INTO %s (%s) VALUES (%s)",
		quoteIdent(table), list, strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")))
	if err != nil {
		return tr, fmt.Errorf("sqlite store: preparing the copy of %s: %w", table, err)
	}
	defer ins.Close()
	copyRows := func(rows *sql.Rows, extra int) (last []any, n int, err error) {
		defer rows.Close()
		for rows.Next() {
			vals := make([]any, len(cols)+extra)
			ptrs := make([]any, len(vals))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return last, n, err
			}
			if _, err := ins.ExecContext(ctx, vals[extra:]...); err != nil {
				return last, n, fmt.Errorf("%w: %w", errWriteDst, err)
			}
			last, n = vals, n+1
		}
		return last, n, rows.Err()
	}
	tbl := quoteIdent(table)
	if _, err := in.ExecContext(ctx, fmt.Sprintf("SELECT rowid FROM %s LIMIT 0", tbl)); err == nil {
		// A rowid table.
		const chunk = 512
		readFrom := func(from int64) (last int64, n int, err error) {
			rows, err := in.QueryContext(ctx, fmt.Sprintf("SELECT rowid, %s FROM %s NOT INDEXED WHERE rowid >= ? ORDER BY rowid LIMIT %d", list, tbl, chunk), from)
			if err != nil {
				return 0, 0, err
			}
			lastVals, n, err := copyRows(rows, 1)
			if lastVals != nil {
				last = lastVals[0].(int64)
			}
			return last, n, err
		}
		next := int64(math.MinInt64)
		for {
			last, n, err := readFrom(next)
			tr.Rows += n
			if errors.Is(err, errWriteDst) {
				return tr, fmt.Errorf("sqlite store: copying %s: %w", table, err)
			}
			if n > 0 {
				if last == math.MaxInt64 {
					break
				}
				next = last + 1
			}
			if err == nil {
				if n < chunk {
					break
				}
				continue
			}
			if n > 0 {
				continue // read again from just after the last good row
			}
			// Nothing readable at next: step over the damage.
			tr.Gaps++
			bad := next
			step := int64(1)
			for {
				if next > math.MaxInt64-step {
					tr.Closed = true
					return tr, nil
				}
				cand := next + step
				if readable(ctx, in, tbl, cand) {
					// Narrow down to the first readable rowid in (bad, cand].
					lo, hi := bad, cand
					for hi-lo > 1 {
						mid := lo + (hi-lo)/2
						if readable(ctx, in, tbl, mid) {
							hi = mid
						} else {
							lo = mid
						}
					}
					next = hi
					break
				}
				bad = cand
				step *= 2
			}
		}
		return tr, nil
	}
	// No rowid: read in primary key order, resuming after the last key.
	pk, err := primaryKey(ctx, in, table)
	if err != nil || len(pk) != 1 {
		rows, err := in.QueryContext(ctx, fmt.Sprintf("SELECT %s FROM %s NOT INDEXED", list, tbl))
		if err != nil {
			tr.Closed = true
			return tr, nil
		}
		_, n, err := copyRows(rows, 0)
		tr.Rows += n
		if errors.Is(err, errWriteDst) {
			return tr, fmt.Errorf("sqlite store: copying %s: %w", table, err)
		}
		tr.Closed = err != nil
		return tr, nil
	}
	key := quoteIdent(pk[0])
	var after any
	failedAt := any(nil)
	for {
		var rows *sql.Rows
		if after == nil {
			rows, err = in.QueryContext(ctx, fmt.Sprintf("SELECT %s, %s FROM %s NOT INDEXED ORDER BY %s", key, list, tbl, key))
		} else {
			rows, err = in.QueryContext(ctx, fmt.Sprintf("SELECT %s, %s FROM %s NOT INDEXED WHERE %s > ? ORDER BY %s", key, list, tbl, key, key), after)
		}
		var last []any
		var n int
		if err == nil {
			last, n, err = copyRows(rows, 1)
		}
		tr.Rows += n
		if errors.Is(err, errWriteDst) {
			return tr, fmt.Errorf("sqlite store: copying %s: %w", table, err)
		}
		if last != nil {
			after = last[0]
		}
		if err == nil {
			return tr, nil
		}
		if n == 0 && failedAt != nil && fmt.Sprint(failedAt) == fmt.Sprint(after) {
			tr.Closed = true
			return tr, nil
		}
		tr.Gaps++
		failedAt = after
		if after == nil {
			tr.Closed = true
			return tr, nil
		}
	}
}

var errWriteDst = errors.New("writing the new store")

// readable reports whether a read starting at rowid works.
func readable(ctx context.Context, in *sql.DB, tbl string, rowid int64) bool {
	rows, err := in.QueryContext(ctx, fmt.Sprintf("SELECT * FROM %s NOT INDEXED WHERE rowid >= ? ORDER BY rowid LIMIT 1", tbl), rowid)
	if err != nil {
		return false
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return false
		}
	}
	return rows.Err() == nil
}

type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

func columns(ctx context.Context, q querier, table string) ([]string, error) {
	return stringsOf(q.QueryContext(ctx, "SELECT name FROM pragma_table_info(?) ORDER BY cid", table))
}

func primaryKey(ctx context.Context, q querier, table string) ([]string, error) {
	return stringsOf(q.QueryContext(ctx, "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", table))
}

func stringsOf(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
