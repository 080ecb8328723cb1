package messaging

import (
	"math"
	"strconv"

	"github.com/tidwall/gjson"
)

// Number helpers for frames and stored messages; strings go through internal/jsonx.

func appendUint(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) }

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

// wholeNumber reads a JSON number that is an integer from 0 to 2^53.
func wholeNumber(v gjson.Result) (uint64, bool) {
	if v.Type != gjson.Number || v.Num < 0 || v.Num > 1<<53 || v.Num != math.Trunc(v.Num) {
		return 0, false
	}
	return uint64(v.Num), true
}
