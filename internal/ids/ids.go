// Package ids checks and makes the plain identifiers RSO uses as they are in NATS subject tokens and KV
// keys (node ids, devices, anonymous user names, hook names): letters, digits, '-' and '_'.
package ids

import "strings"

// IsRune reports whether r may appear in an identifier.
func IsRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// Valid reports whether s is an identifier of 1 to max bytes.
func Valid(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for _, r := range s {
		if !IsRune(r) {
			return false
		}
	}
	return true
}

// Safe replaces every character of s that may not appear in an identifier with '_'.
func Safe(s string) string {
	return strings.Map(func(r rune) rune {
		if IsRune(r) {
			return r
		}
		return '_'
	}, s)
}
