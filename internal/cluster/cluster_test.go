package cluster

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/store"
)

// TestSubjectIDIsOneOpaqueToken: names with NATS's special characters
// give one token of hex, stable, and different names different tokens.
func TestSubjectIDIsOneOpaqueToken(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"bob", "bob.smith", "bob.*", "a>b", "bob smith", "élodie", ""} {
		id := SubjectID(name)
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Errorf("SubjectID(%q) = %q, want 32 hex digits", name, id)
		}
		if id != SubjectID(name) {
			t.Errorf("SubjectID(%q) is not stable", name)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("SubjectID(%q) = SubjectID(%q)", name, other)
		}
		seen[id] = name
	}
}

// FuzzDoorbell: whatever another node (or anything else on NATS) puts in a
// doorbell, the node does not crash, hands over only a message for the
// account whose doorbell it is, and otherwise at most kicks that account.
func FuzzDoorbell(f *testing.F) {
	msg, _ := json.Marshal(store.Message{ID: "m1", From: "alice", To: "bob", Sealed: []byte{1, 2}, Attempts: 1})
	f.Add("bob", []byte("bob"))
	f.Add("bob", append([]byte("bob\n"), msg...))
	f.Add("bob", []byte("bob\n{"))
	f.Add("bob", []byte("alice\n"+string(msg)))
	f.Add("alice", []byte("bob"))
	f.Fuzz(func(t *testing.T, subjectAccount string, data []byte) {
		n := &Node{m: newMetrics(), o: Options{
			Log:    slog.New(slog.DiscardHandler),
			Lookup: func(a string) (registrar.Binding, bool) { return registrar.Binding{Account: a}, a == "bob" },
			Kick: func(a string) {
				if a != "bob" {
					t.Errorf("kicked %q, which is not held here", a)
				}
			},
			Handed: func(m store.Message) {
				if m.To != "bob" || subjectAccount != "bob" {
					t.Errorf("handed a message for %q on the doorbell of %q", m.To, subjectAccount)
				}
			},
		}}
		n.onBell(&nats.Msg{Subject: bellPrefix + SubjectID(subjectAccount), Data: data})
	})
}
