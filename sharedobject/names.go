package sharedobject

import (
	"unicode/utf8"
)

// validName reports whether s may name an object, slot or handler: 1..max bytes of UTF-8 without
// control characters or white space.
func validName(s string, max int) bool {
	if len(s) == 0 || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r <= 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029 || r == 0xfeff {
			return false
		}
	}
	return true
}
