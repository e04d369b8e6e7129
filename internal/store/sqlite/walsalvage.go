package sqlite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// mergeWAL writes to a new file in dir a copy of the database at src with
// the intact committed frames of its WAL applied, stepping over damaged
// ones, and returns its path. SQLite would stop at the first damaged frame
// and drop every later one; here each frame is checked on its own (its
// checksum continued from the checksum the frame before it recorded), so a
// byte gone bad costs the one page image it is in. Where that page is
// needed, the copy holds an older image of it (from an earlier frame or the
// database file): the database may then be inconsistent in places, which
// the row-by-row reading of Recover is made for. Frames after the last
// intact commit frame belong to a transaction never acknowledged and are
// left out. It reports how many frames it applied and how many damaged
// frames it stepped over; with no WAL it returns "".
func mergeWAL(src, dir string) (path string, applied, damaged int, err error) {
	wal, err := os.ReadFile(src + "-wal")
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(wal) < walHeaderSize) {
		return "", 0, 0, nil
	}
	if err != nil {
		return "", 0, 0, fmt.Errorf("sqlite store: reading %s-wal: %w", src, err)
	}
	be := binary.BigEndian
	magic := be.Uint32(wal[0:])
	pageSize := int64(be.Uint32(wal[8:]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if (magic != walMagicLE && magic != walMagicBE) || pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return "", 0, 0, nil // no readable header: nothing to apply
	}
	bigEndianSums := magic == walMagicBE
	salts := wal[16:24]
	frameSize := walFrameHeaderSize + pageSize
	nFrames := (int64(len(wal)) - walHeaderSize) / frameSize

	// First pass: which frames are intact, and where the last intact
	// commit frame is.
	intact := make([]bool, nFrames)
	prev1, prev2 := be.Uint32(wal[24:]), be.Uint32(wal[28:])
	lastCommit := int64(-1)
	for i := range nFrames {
		fr := wal[walHeaderSize+i*frameSize : walHeaderSize+(i+1)*frameSize]
		if !bytes.Equal(fr[8:16], salts) {
			break // the end of this generation
		}
		c1, c2 := walChecksum(bigEndianSums, fr[:8], prev1, prev2)
		c1, c2 = walChecksum(bigEndianSums, fr[walFrameHeaderSize:], c1, c2)
		intact[i] = c1 == be.Uint32(fr[16:]) && c2 == be.Uint32(fr[20:])
		if !intact[i] {
			damaged++
		} else if be.Uint32(fr[4:]) != 0 {
			lastCommit = i
		}
		// The next frame's checksum continues from what this one
		// recorded, whether or not its own content matches it.
		prev1, prev2 = be.Uint32(fr[16:]), be.Uint32(fr[20:])
	}
	db, err := os.ReadFile(src)
	if err != nil {
		return "", 0, 0, fmt.Errorf("sqlite store: reading %s: %w", src, err)
	}
	out, err := os.CreateTemp(dir, ".recover-*.db")
	if err != nil {
		return "", 0, 0, fmt.Errorf("sqlite store: %w", err)
	}
	path = out.Name()
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			path = ""
		}
	}()
	if err := out.Chmod(0o600); err != nil {
		return "", 0, 0, fmt.Errorf("sqlite store: %w", err)
	}
	if _, err := out.Write(db); err != nil {
		return "", 0, 0, fmt.Errorf("sqlite store: writing %s: %w", path, err)
	}
	if lastCommit < 0 {
		return path, 0, damaged, nil
	}
	// The database's size in pages after the last commit: no page beyond
	// it is part of the database.
	pages := int64(be.Uint32(wal[walHeaderSize+lastCommit*frameSize+4:]))
	for i := int64(0); i <= lastCommit; i++ {
		if !intact[i] {
			continue
		}
		fr := wal[walHeaderSize+i*frameSize : walHeaderSize+(i+1)*frameSize]
		pgno := int64(be.Uint32(fr[0:]))
		if pgno == 0 || pgno > pages {
			continue
		}
		if _, err := out.WriteAt(fr[walFrameHeaderSize:], (pgno-1)*pageSize); err != nil {
			return "", 0, 0, fmt.Errorf("sqlite store: writing %s: %w", path, err)
		}
		applied++
	}
	if err := out.Truncate(pages * pageSize); err != nil {
		return "", 0, 0, fmt.Errorf("sqlite store: %w", err)
	}
	return filepath.Clean(path), applied, damaged, nil
}
