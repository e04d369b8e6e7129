package message

import (
	"strings"
	"testing"
)

// The message rules run on every submission, on the server and in the
// client:
//
//	go test -run '^$' -bench . -benchmem ./message/
func BenchmarkCheckText(b *testing.B) {
	for _, c := range []struct{ name, text string }{
		{"ascii-160", strings.Repeat("abcdefghij", 16)},
		{"accented-160", strings.Repeat("éàüçñøåßœë", 16)},
		{"emoji-160", strings.Repeat("👍🏽", 160)},            // 160 clusters of 2 code points
		{"too-long-161", strings.Repeat("a", 161)},          // refused after counting
		{"control-char", strings.Repeat("a", 150) + "\x07"}, // refused before counting
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.text)))
			b.ReportAllocs()
			for b.Loop() {
				_ = CheckText(c.text)
			}
		})
	}
}

func BenchmarkCheckID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckID("123e4567-e89b-12d3-a456-426614174000"); err != nil {
			b.Fatal(err)
		}
	}
}
