package message

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rivo/uniseg"
)

func TestCheckText(t *testing.T) {
	cases := []struct {
		name, text string
		code       string // "" means accepted
	}{
		{"one letter", "a", ""},
		{"160 letters", strings.Repeat("a", 160), ""},
		{"161 letters", strings.Repeat("a", 161), CodeTooLong},
		{"160 skin-tone thumbs", strings.Repeat("👍🏽", 160), ""},
		{"161 skin-tone thumbs", strings.Repeat("👍🏽", 161), CodeTooLong},
		{"flags are one character each", strings.Repeat("🇮🇹", 160), ""},
		{"combining accents", strings.Repeat("e\u0301", 160), ""},
		{"family emoji blows the byte limit", strings.Repeat("👨‍👩‍👧‍👦", 100), CodeTooManyBytes},
		{"empty", "", CodeEmpty},
		{"line feed allowed", "a\nb", ""},
		{"carriage return", "a\rb", CodeControlChar},
		{"tab", "a\tb", CodeControlChar},
		{"NUL", "a\x00b", CodeControlChar},
		{"DEL", "a\x7fb", CodeControlChar},
		{"C1 control", "a\u0085b", CodeControlChar},
		{"zero-width joiner is not a control", "a\u200db", ""},
		{"invalid UTF-8", "a\xffb", CodeInvalidUTF8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckText(c.text)
			var re *RuleError
			switch {
			case c.code == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.code != "" && !errors.As(err, &re):
				t.Fatalf("accepted, want %s", c.code)
			case c.code != "" && re.Code != c.code:
				t.Fatalf("code %s (%v), want %s", re.Code, err, c.code)
			}
		})
	}
}

func TestTooLongSaysHowMany(t *testing.T) {
	err := CheckText(strings.Repeat("x", 171))
	if err == nil || err.Error() != "171 characters; the limit is 160" {
		t.Fatalf("got %v", err)
	}
}

func TestCheckIDAndAccount(t *testing.T) {
	if err := CheckID(NewID()); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "123", "123e4567e89b12d3a456426614174000", "zzze4567-e89b-12d3-a456-426614174000"} {
		if CheckID(bad) == nil {
			t.Errorf("id %q accepted", bad)
		}
	}
	for _, good := range []string{"alice", "a", "bob.smith", "x_1-2", strings.Repeat("a", 64)} {
		if err := CheckAccount(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	for _, bad := range []string{"", "Alice", ".bob", "-x", "a b", "a@b", strings.Repeat("a", 65)} {
		if CheckAccount(bad) == nil {
			t.Errorf("account %q accepted", bad)
		}
	}
}

// FuzzCountChars: the ASCII shortcut of CountChars counts as the
// segmenter does.
func FuzzCountChars(f *testing.F) {
	for _, s := range []string{"hello", "a\r\nb", "\r\r\n\n", "\n\r", "👍🏽 ok", "e\u0301", "\x00\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := CountChars(s), uniseg.GraphemeClusterCount(s); got != want {
			t.Fatalf("CountChars(%q) = %d, the segmenter counts %d", s, got, want)
		}
	})
}

func TestCountCharsASCII(t *testing.T) {
	for s, want := range map[string]int{"": 0, "abc": 3, "a\r\nb": 3, "\r\r\n\n": 3, "\n\r": 2, strings.Repeat("x", 160): 160} {
		if got := CountChars(s); got != want || got != uniseg.GraphemeClusterCount(s) {
			t.Errorf("CountChars(%q) = %d, want %d", s, got, want)
		}
	}
}

// FuzzCheckText: the rules never panic, and what they accept always meets
// every rule.
func FuzzCheckText(f *testing.F) {
	for _, s := range []string{"hello", "👍🏽", "a\nb", "a\x00", "\xff", strings.Repeat("a", 161), "e\u0301"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckText(s) != nil {
			return
		}
		if !utf8.ValidString(s) || len(s) == 0 || len(s) > MaxBytes || CountChars(s) > MaxChars {
			t.Fatalf("accepted %q", s)
		}
		for _, r := range s {
			if r != '\n' && (r < 0x20 || (r >= 0x7f && r <= 0x9f)) {
				t.Fatalf("accepted control %U in %q", r, s)
			}
		}
	})
}
