package server

import (
	"bytes"
	"strings"
	"testing"
)

// TestClusterSettingsRefusedWhenTheyCannotWork: --nats needs --node and a
// shared (PostgreSQL) store; --node alone is a mistake. Each is refused at
// start with a message naming what is missing.
func TestClusterSettingsRefusedWhenTheyCannotWork(t *testing.T) {
	for _, tc := range []struct {
		c    ClusterOptions
		want string
	}{
		{ClusterOptions{NATSURL: "nats://127.0.0.1:1"}, "--nats needs --node"},
		{ClusterOptions{NATSURL: "nats://127.0.0.1:1", Node: "a"}, "--store postgres://"},
		{ClusterOptions{Node: "a"}, "it needs --nats"},
	} {
		s, err := New(Options{DataDir: t.TempDir(), HTTPSAddr: "127.0.0.1:0", SIPAddr: "127.0.0.1:0", AdminAddr: "off", Cluster: tc.c})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Start()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Start = %v, want an error naming %q", tc.c, err, tc.want)
		}
		s.Close()
	}
}

// TestClusterNonceKeyDerivesFromTheMasterKey: nodes with one master key
// agree on the nonce key; a single node keeps its random one (nil here).
func TestClusterNonceKeyDerivesFromTheMasterKey(t *testing.T) {
	mk := bytes.Repeat([]byte{1}, 32)
	c := ClusterOptions{NATSURL: "nats://x:4222", Node: "a"}
	k1, k2 := clusterNonceKey(c, mk), clusterNonceKey(ClusterOptions{NATSURL: "nats://x:4222", Node: "b"}, bytes.Clone(mk))
	if len(k1) != 32 || !bytes.Equal(k1, k2) {
		t.Fatalf("nodes with one master key: %x and %x", k1, k2)
	}
	if bytes.Equal(k1, mk) {
		t.Fatal("the nonce key is the master key itself")
	}
	if k := clusterNonceKey(c, bytes.Repeat([]byte{2}, 32)); bytes.Equal(k, k1) {
		t.Fatal("another master key gives the same nonce key")
	}
	if k := clusterNonceKey(ClusterOptions{}, mk); k != nil {
		t.Fatalf("a single node derived a nonce key: %x", k)
	}
}
