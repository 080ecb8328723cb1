package messaging

import (
	"strconv"
)

// Number helpers for frames and stored messages; strings go through internal/jsonx.

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }
