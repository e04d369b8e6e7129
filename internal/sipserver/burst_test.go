package sipserver

import (
	"errors"
	"net"
	"sync"
	"testing"
)

// writeLog is a connection that keeps each Write call apart.
type writeLog struct {
	net.Conn // nil: only the methods below are used
	mu       sync.Mutex
	writes   []string
	fail     bool
	closed   bool
}

func (c *writeLog) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return 0, errors.New("broken pipe")
	}
	c.writes = append(c.writes, string(b))
	return len(b), nil
}

func (c *writeLog) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *writeLog) log() ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.writes...), c.closed
}

// Writes made during a burst reach the connection in one write, in their
// order, when the last hold is released; a final response among them is
// counted then, not before.
func TestBurstWritesTogether(t *testing.T) {
	wl := &writeLog{}
	fc := newFramedConn(wl, nil)
	fc.hold()
	fc.hold() // a second holder: nothing is written until both release
	for _, m := range []string{"MESSAGE sip:a 1\r\n\r\n", "SIP/2.0 200 OK\r\n\r\n", "MESSAGE sip:a 2\r\n\r\n"} {
		if n, err := fc.Write([]byte(m)); n != len(m) || err != nil {
			t.Fatalf("Write during a burst: %d, %v", n, err)
		}
	}
	fc.release()
	if w, _ := wl.log(); len(w) != 0 {
		t.Fatalf("written before the last release: %q", w)
	}
	fc.mu.Lock()
	answered := fc.answered
	fc.mu.Unlock()
	if answered != 0 {
		t.Fatalf("%d answers counted before they were written", answered)
	}
	fc.release()
	want := "MESSAGE sip:a 1\r\n\r\nSIP/2.0 200 OK\r\n\r\nMESSAGE sip:a 2\r\n\r\n"
	if w, _ := wl.log(); len(w) != 1 || w[0] != want {
		t.Fatalf("writes %q; want one: %q", w, want)
	}
	fc.mu.Lock()
	answered = fc.answered
	fc.mu.Unlock()
	if answered != 1 {
		t.Fatalf("%d answers counted, want 1", answered)
	}
	// After the burst, writes go straight out again.
	fc.Write([]byte("MESSAGE sip:a 3\r\n\r\n"))
	if w, _ := wl.log(); len(w) != 2 {
		t.Fatalf("writes after the burst: %q", w)
	}
	fc.release() // a release without a hold does nothing
}

// A burst whose write fails closes the connection, so the MESSAGEs in it
// fail now rather than at their timeout.
func TestBurstWriteFailureClosesTheConnection(t *testing.T) {
	wl := &writeLog{fail: true}
	fc := newFramedConn(wl, nil)
	fc.hold()
	fc.Write([]byte("MESSAGE sip:a 1\r\n\r\n"))
	fc.release()
	if _, closed := wl.log(); !closed {
		t.Fatal("the connection stayed open after its burst could not be written")
	}
}
