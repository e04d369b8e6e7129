package loadtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/server/servertest"
)

// TestMain lets the test binary be floor's child process: Floor starts
// its "self" with the environment variable set.
func TestMain(m *testing.M) {
	if a := os.Getenv("SEALBENCH_FLOOR_SERVER"); a != "" {
		cert, key, _ := strings.Cut(a, ",")
		if err := ServeFloor(context.Background(), "127.0.0.1:0", cert, key, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestFloor(t *testing.T) {
	srv := servertest.Start(t) // for a certificate and key
	cert, key := filepath.Join(srv.DataDir, "cert.pem"), filepath.Join(srv.DataDir, "key.pem")
	t.Setenv("SEALBENCH_FLOOR_SERVER", cert+","+key)
	self := []string{os.Args[0], "-test.run=^$"}
	r, err := Floor(context.Background(), self, cert, 20, 100*time.Millisecond, 50*time.Millisecond, 400*time.Millisecond, []string{"127.0.0.1", "127.0.0.2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// 20 connections pinging every 100 ms for 400 ms: about 80 pongs.
	if r.Pongs < 20 || r.Devices != 20 || r.RSSMiB <= 0 || r.IdleCPUPercent < 0 || r.Pace.SyscallNs <= 0 {
		t.Errorf("floor: %+v", r)
	}
}
