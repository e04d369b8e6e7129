package sqlite

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzWALReaders feeds arbitrary bytes to the code that reads a WAL the
// way a damaged disk may leave it (the start check and store recover's
// frame-by-frame merge): it must answer, never panic, and never write a
// page outside the file the WAL describes. The seeds are a real WAL, the
// same cut short, and one with a byte flipped.
func FuzzWALReaders(f *testing.F) {
	seedDir := f.TempDir()
	path := filepath.Join(seedDir, "seed.db")
	s, err := Open(path, Options{CheckpointTick: 1 << 62, ReserveBytes: -1})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 20 {
		if _, _, err := s.Submit(f.Context(), testMsg("alice", "bob", i, []byte("sealed")), 0); err != nil {
			f.Fatal(err)
		}
	}
	wal, err := os.ReadFile(path + "-wal")
	if err != nil {
		f.Fatal(err)
	}
	s.Close()
	f.Add(wal)
	f.Add(wal[:len(wal)-4096])
	flipped := append([]byte(nil), wal...)
	flipped[len(flipped)/2] ^= 0xff
	f.Add(flipped)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		db := filepath.Join(dir, "sealpost.db")
		if err := os.WriteFile(db, make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(db+"-wal", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := checkWAL(db + "-wal"); err != nil {
			t.Fatalf("checkWAL on %d bytes: %v", len(b), err)
		}
		merged, _, _, err := mergeWAL(db, dir)
		if err != nil {
			t.Fatalf("mergeWAL on %d bytes: %v", len(b), err)
		}
		if merged != "" {
			fi, err := os.Stat(merged)
			if err != nil {
				t.Fatal(err)
			}
			// No page beyond the database size the last commit frame
			// names: at most 2^32-1 pages of the page size.
			if fi.Size() > (1<<32)*65536 {
				t.Fatalf("merged file of %d bytes from a WAL of %d", fi.Size(), len(b))
			}
		}
	})
}
