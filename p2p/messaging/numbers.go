package messaging

import (
	"strconv"
)

// Number helpers for frames and stored messages; strings go through internal/jsonx.

func appendUint(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) }

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }
