package connlimit

import (
	"net"
	"testing"
)

func TestDefaults(t *testing.T) {
	for nofile, want := range map[uint64]int{1024: 896, 4096: 3584, 256: 192, 64: 16, 1 << 20: 1<<20 - 1<<17} {
		if got := DefaultMax(nofile); got != want {
			t.Errorf("DefaultMax(%d) = %d, want %d", nofile, got, want)
		}
	}
	s := Settings{}.Resolve()
	if s.Max <= 0 || s.Max >= int(openFileLimit()) || s.Reserve < 16 || s.PerAddressSIP != DefaultPerAddressSIP {
		t.Fatalf("resolved %+v for an open-file limit of %d", s, openFileLimit())
	}
}

func TestAdmit(t *testing.T) {
	l := New(Settings{Max: 40, Reserve: 16})
	admitted := func(name, source string, n, per int) int {
		ok := 0
		for range n {
			if a, _ := l.admit(name, source, per); a {
				ok++
			}
		}
		return ok
	}
	// One address: its own cap.
	if n := admitted("sip", "192.0.2.1", 30, 16); n != 16 {
		t.Fatalf("one address got %d, want 16", n)
	}
	// A second flooding address stops at Max - Reserve in total.
	if n := admitted("sip", "192.0.2.2", 30, 16); n != 8 {
		t.Fatalf("second address got %d, want 8 (to 24 in total)", n)
	}
	// Newcomers use the reserve, up to two connections each...
	if n := admitted("sip", "192.0.2.3", 5, 16); n != 2 {
		t.Fatalf("newcomer got %d, want 2", n)
	}
	for i := range 7 {
		admitted("https", net.IPv4(198, 51, 100, byte(i)).String(), 2, 8)
	}
	// ... until Max.
	if l.total != 40 {
		t.Fatalf("total %d, want 40", l.total)
	}
	if a, limit := l.admit("sip", "203.0.113.1", 16); a || limit != "total" {
		t.Fatalf("past Max: %v %q", a, limit)
	}
	l.release(&conn{l: l, listener: "sip", source: "192.0.2.1"})
	if a, _ := l.admit("sip", "203.0.113.1", 16); !a {
		t.Fatal("a released slot was not reusable")
	}
}
