package apiserver

import (
	"bytes"
	"encoding/json"
	"unicode"
	"unicode/utf8"
)

// duplicateKey returns a key that appears twice in one object of the JSON
// body, compared as encoding/json matches keys to fields (case-insensitive,
// with Unicode simple folding: "to", "TO" and "\u0054o" are the same key).
// The decoder would silently keep the last of them, so a body naming "to"
// twice would be sent to whichever one a proxy or log reader did not look
// at. Malformed JSON is left to the decoder to report.
func duplicateKey(body []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	// One set of folded keys per open object; nil for an open array.
	var stack []map[string]bool
	expectKey := func() bool { return len(stack) > 0 && stack[len(stack)-1] != nil }
	afterValue := true // the next token in an object is a key
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, map[string]bool{})
				afterValue = true
				continue
			case '[':
				stack = append(stack, nil)
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
			afterValue = true
			continue
		case string:
			if expectKey() && afterValue {
				k := foldKey(v)
				if stack[len(stack)-1][k] {
					return v, true
				}
				stack[len(stack)-1][k] = true
				afterValue = false
				continue
			}
		}
		afterValue = true
	}
}

// foldKey folds s as encoding/json does to match a key (the smallest rune
// of each rune's simple-fold orbit, as bytes.EqualFold compares).
func foldKey(s string) string {
	var b []byte
	for _, r := range s {
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}
