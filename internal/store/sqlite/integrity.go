package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"
)

// ErrDamaged is wrapped by the error of Open and Check when the database
// or its write-ahead log is damaged.
var ErrDamaged = errors.New("store damaged")

// The start check has two parts, both read-only:
//
//   - The WAL is read frame by frame before SQLite opens it. SQLite's own
//     recovery silently stops at the first frame whose checksum fails and
//     drops everything after it, which is right for a torn tail that no
//     one was told was stored, and wrong for a byte damaged in the middle:
//     every acknowledged message written after it would be gone without a
//     word. So a damaged frame followed by frames of the same WAL
//     generation is damage, and so is a WAL holding fewer intact committed
//     frames than its index (-shm) says were committed — a tail cut off.
//     A torn frame at the end is not: the writer was stopped while
//     writing it, and that transaction was never acknowledged.
//   - PRAGMA quick_check reads every page of the database and checks the
//     b-trees, but not that index entries match their rows, which would
//     need integrity_check and several times longer. See README
//     "Operating" for its time on a 1 GB store.

// CheckResult is what Check found.
type CheckResult struct {
	Problems []string      // empty: no damage found
	Took     time.Duration // how long the check ran
}

// Check runs the start check on the store at path without changing any
// file: the WAL scan and PRAGMA quick_check. An error means the check could
// not run (no such file, no permission); damage is reported in Problems.
func Check(path string) (CheckResult, error) {
	start := time.Now()
	var r CheckResult
	if _, err := os.Stat(path); err != nil {
		return r, fmt.Errorf("sqlite store: %w", err)
	}
	if p, err := checkWAL(path + "-wal"); err != nil {
		return r, err
	} else if p != "" {
		r.Problems = append(r.Problems, p)
		// SQLite would read the database without the WAL's later
		// frames: quick_check of that state says nothing more useful,
		// and the recovery tool is the next step anyway.
		r.Took = time.Since(start)
		return r, nil
	}
	p, err := quickCheck(path)
	if err != nil {
		return r, err
	}
	r.Problems = append(r.Problems, p...)
	r.Took = time.Since(start)
	return r, nil
}

// startCheck is Check as Open runs it: damage is an error naming what is
// wrong and what to do.
func startCheck(path string) error {
	r, err := Check(path)
	if err != nil {
		return err
	}
	if len(r.Problems) == 0 {
		return nil
	}
	return damagedError(path, r.Problems)
}

func damagedError(path string, problems []string) error {
	const most = 5
	shown := problems
	more := ""
	if len(shown) > most {
		more = fmt.Sprintf(" (and %d more)", len(shown)-most)
		shown = shown[:most]
	}
	return fmt.Errorf(`%w: %s: %s%s.
The server did not start, so that nothing more is lost. What to do:
  1. Stop anything using the data folder and keep a copy of it as it is (the files %[2]s, %[2]s-wal and %[2]s-shm).
  2. Salvage what can be read into a new file:  sealpostd --data DIR store recover NEW.db
     It reports how many messages it saved.
  3. Move the damaged files aside, move NEW.db into their place as %[2]s, and start the server.
  sealpostd store check shows this report again without starting`,
		ErrDamaged, path, strings.Join(shown, "; "), more)
}

// quickCheck runs PRAGMA quick_check on a read-only connection, so that
// closing it cannot checkpoint anything into a damaged file.
func quickCheck(path string) ([]string, error) {
	db, err := sql.Open("sqlite", readOnlyDSN(path))
	if err != nil {
		return nil, fmt.Errorf("sqlite store: opening %s to check it: %w", path, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(context.Background(), "PRAGMA quick_check")
	if err != nil {
		if isDamage(err) {
			return []string{fmt.Sprintf("the database cannot be read: %v", err)}, nil
		}
		return nil, fmt.Errorf("sqlite store: checking %s: %w", path, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, fmt.Errorf("sqlite store: checking %s: %w", path, err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		if isDamage(err) {
			return append(problems, fmt.Sprintf("the database cannot be read: %v", err)), nil
		}
		return nil, fmt.Errorf("sqlite store: checking %s: %w", path, err)
	}
	return problems, nil
}

// readOnlyDSN opens path read-only: SQLite neither creates nor changes any
// file of it, nor checkpoints its WAL on close.
func readOnlyDSN(path string) string {
	q := url.Values{}
	q.Add("mode", "ro")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "temp_store(MEMORY)")
	u := url.URL{Scheme: "file", Path: path}
	return u.String() + "?" + q.Encode()
}

// The WAL format: https://sqlite.org/fileformat2.html#walformat
const (
	walHeaderSize      = 32
	walFrameHeaderSize = 24
	walMagicLE         = 0x377f0682
	walMagicBE         = 0x377f0683
)

// checkWAL scans the WAL at walPath and returns a description of its
// damage, or "" when SQLite's recovery will lose nothing that was complete.
func checkWAL(walPath string) (string, error) {
	f, err := os.Open(walPath)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("sqlite store: opening %s to check it: %w", walPath, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("sqlite store: checking %s: %w", walPath, err)
	}
	size := fi.Size()
	if size < walHeaderSize {
		return "", nil // nothing ever written after a truncation
	}
	var hdr [walHeaderSize]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return "", fmt.Errorf("sqlite store: reading %s: %w", walPath, err)
	}
	be := binary.BigEndian
	magic := be.Uint32(hdr[0:])
	pageSize := int64(be.Uint32(hdr[8:]))
	if pageSize == 1 {
		pageSize = 65536
	}
	validPage := pageSize >= 512 && pageSize <= 65536 && pageSize&(pageSize-1) == 0
	bigEndianSums := magic == walMagicBE
	var s1, s2 uint32
	if validPage && (magic == walMagicLE || magic == walMagicBE) {
		s1, s2 = walChecksum(bigEndianSums, hdr[:24], 0, 0)
	}
	if !validPage || (magic != walMagicLE && magic != walMagicBE) || s1 != be.Uint32(hdr[24:]) || s2 != be.Uint32(hdr[28:]) {
		if size >= walHeaderSize+walFrameHeaderSize+512 {
			return fmt.Sprintf("the header of the write-ahead log %s is damaged: SQLite would ignore its %d bytes of committed writes", walPath, size-walHeaderSize), nil
		}
		return "", nil
	}
	salt1, salt2 := be.Uint32(hdr[16:]), be.Uint32(hdr[20:])
	frameSize := walFrameHeaderSize + pageSize
	nFrames := (size - walHeaderSize) / frameSize
	frame := make([]byte, frameSize)
	var committed int64 // frames up to the last intact commit frame
	for i := int64(0); i < nFrames; i++ {
		if _, err := f.ReadAt(frame, walHeaderSize+i*frameSize); err != nil {
			return "", fmt.Errorf("sqlite store: reading %s: %w", walPath, err)
		}
		fs1, fs2 := be.Uint32(frame[8:]), be.Uint32(frame[12:])
		if fs1 != salt1 || fs2 != salt2 {
			break // the end of this generation: what follows is older
		}
		c1, c2 := walChecksum(bigEndianSums, frame[:8], s1, s2)
		c1, c2 = walChecksum(bigEndianSums, frame[walFrameHeaderSize:], c1, c2)
		if c1 != be.Uint32(frame[16:]) || c2 != be.Uint32(frame[20:]) {
			// Damaged, or torn by a stop in the middle of writing it.
			// Torn is only ever the last frame written: any later
			// frame of this generation means damage.
			later := 0
			for j := i + 1; j < nFrames; j++ {
				if _, err := f.ReadAt(frame[:walFrameHeaderSize], walHeaderSize+j*frameSize); err != nil {
					return "", fmt.Errorf("sqlite store: reading %s: %w", walPath, err)
				}
				if be.Uint32(frame[8:]) == salt1 && be.Uint32(frame[12:]) == salt2 {
					later++
				}
			}
			if later > 0 {
				return fmt.Sprintf("the write-ahead log %s is damaged at frame %d of %d (byte %d): SQLite would drop that frame and the %d written after it, committed writes among them",
					walPath, i+1, nFrames, walHeaderSize+i*frameSize, later), nil
			}
			break
		}
		s1, s2 = c1, c2
		if be.Uint32(frame[4:]) != 0 {
			committed = i + 1
		}
	}
	// A WAL that ends early: cut short, or torn by a stop while the last
	// transaction was being written. The files alone cannot tell these
	// apart, but the wal-index (-shm) can: SQLite records there how many
	// frames were committed only after the commit frame was written
	// whole, so a kill -9 never leaves it ahead of the WAL, and a cut
	// does. (Without an index, or with one of another generation, a short
	// tail is taken as torn.)
	if mx, ok := walIndexFrames(strings.TrimSuffix(walPath, "-wal")+"-shm", hdr[16:24]); ok && int64(mx) > committed {
		return fmt.Sprintf("the write-ahead log %s holds %d intact committed frames, but its index (-shm) says %d were committed: it was cut short or damaged, and SQLite would drop the last %d",
			walPath, committed, mx, int64(mx)-committed), nil
	}
	return "", nil
}

// walIndexFrames reads mxFrame, the number of committed WAL frames, from
// the header of the wal-index at shmPath. It reports false when there is
// no usable header: no file, the two copies of the header differ (a write
// in progress), or its salts are not the WAL's (another generation).
func walIndexFrames(shmPath string, walSalts []byte) (uint32, bool) {
	f, err := os.Open(shmPath)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var h [96]byte // two copies of the 48-byte WalIndexHdr
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return 0, false
	}
	if !bytes.Equal(h[:48], h[48:]) || h[12] != 1 || !bytes.Equal(h[32:40], walSalts) {
		return 0, false
	}
	// The index is in the byte order of the machine that wrote it.
	return binary.NativeEndian.Uint32(h[16:]), true
}

// walChecksum is SQLite's WAL checksum over b (a multiple of 8 bytes),
// continuing from s1, s2.
func walChecksum(bigEndian bool, b []byte, s1, s2 uint32) (uint32, uint32) {
	var order binary.ByteOrder = binary.LittleEndian
	if bigEndian {
		order = binary.BigEndian
	}
	for i := 0; i+8 <= len(b); i += 8 {
		s1 += order.Uint32(b[i:]) + s2
		s2 += order.Uint32(b[i+4:]) + s1
	}
	return s1, s2
}
