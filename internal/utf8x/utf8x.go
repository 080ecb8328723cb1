// Package utf8x keeps what the servers write valid UTF-8. Browsers fail a WebSocket (1006) on a text
// message that is not (RFC 6455 §8.1), and gjson.ValidBytes does not look inside strings, so frames are
// checked with utf8.Valid at the boundary and whatever was stored before that check is repaired on the way out.
package utf8x

import "unicode/utf8"

// InvalidFrame is the message of the bad_json refusal of a frame that is not valid UTF-8 (as on /so).
const InvalidFrame = "frame is not valid UTF-8"

// Repair returns b itself when it is valid UTF-8 (the common case costs one utf8.Valid), else a copy with
// every invalid byte replaced by U+FFFD, as encoding/json and jsonx.AppendString replace them. Inside a
// JSON string the replacement keeps the string valid, so valid JSON stays valid JSON.
func Repair(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, b[i:i+size]...)
		}
		i += size
	}
	return out
}
