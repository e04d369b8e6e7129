package cluster

import (
	"strings"
	"testing"
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
