package wire

import (
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/jsonx"
)

// MaxIDBytes bounds a request id on every endpoint (1 to 64 bytes).
const MaxIDBytes = 64

// AppendErrorFrame appends {"op":"error","code":…,"message":…[,"id":…] without the closing brace, so that
// an endpoint may add its own fields (/so adds the object) before it.
func AppendErrorFrame(b []byte, e *Error, id string) []byte {
	b = append(b, `{"op":"error","code":`...)
	b = jsonx.AppendString(b, e.Code)
	b = append(b, `,"message":`...)
	b = jsonx.AppendString(b, e.Message)
	if id != "" {
		b = append(b, `,"id":`...)
		b = jsonx.AppendString(b, id)
	}
	return b
}

// ErrorFrame is the error frame refusing the request id ("" when it had none that could be read).
func ErrorFrame(e *Error, id string) []byte {
	return append(AppendErrorFrame(make([]byte, 0, 96+len(e.Message)), e, id), '}')
}

// PongFrame answers a ping.
func PongFrame(id string) []byte {
	if id == "" {
		return []byte(`{"op":"pong"}`)
	}
	return append(jsonx.AppendString([]byte(`{"op":"pong","id":`), id), '}')
}

// PeekID finds a frame's request id without parsing the rest, so that a refused frame's request can be
// failed at once: a string of 1 to MaxIDBytes bytes, else "".
func PeekID(raw []byte) string {
	id := gjson.GetBytes(raw, "id")
	if id.Type == gjson.String && len(id.Str) > 0 && len(id.Str) <= MaxIDBytes {
		return id.Str
	}
	return ""
}

// MaxWhole is the largest whole number a frame may carry: every JSON implementation (JavaScript's
// included) represents integers up to 2^53 exactly.
const MaxWhole = 1 << 53

// Whole reads a JSON number written as plain decimal digits, from 0 to 2^53 (docs/PROTOCOL.md: numbers
// are whole numbers in plain digits). Exponents, fractions and signs are refused, so that a value is never
// rounded on its way through a float (2^53+1 would become 2^53).
func Whole(v gjson.Result) (uint64, bool) {
	if v.Type != gjson.Number {
		return 0, false
	}
	n, err := strconv.ParseUint(v.Raw, 10, 64)
	if err != nil || n > MaxWhole {
		return 0, false
	}
	return n, true
}
