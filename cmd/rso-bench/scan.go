package main

import "bytes"

// Reading server frames with as little work as possible: the generator shares the CPUs with the server,
// so it does not parse JSON. Every frame RSO writes is compact JSON that starts with {"op":"…" (frames are
// appended by hand in sharedobject/frames.go), values are stored as the compact text the client sent, and
// the hub relays the publisher's bytes; so fixed keys can be found with bytes.Index and numbers read in
// place. A frame that does not have the expected shape counts as a protocol error where it matters.

// Server frame kinds, by the first letter of op.
const (
	opSync    = 's'
	opMessage = 'm'
	opError   = 'e'
	opHello   = 'h'
)

var opPrefix = []byte(`{"op":"`)

// frameOp returns the first letter of a frame's op, or 0 when the frame does not start with {"op":".
func frameOp(f []byte) byte {
	if len(f) > len(opPrefix) && bytes.HasPrefix(f, opPrefix) {
		return f[len(opPrefix)]
	}
	return 0
}

// uintAt reads the decimal digits at the start of b.
func uintAt(b []byte) (v uint64, n int, ok bool) {
	for n < len(b) && b[n] >= '0' && b[n] <= '9' && n < 20 {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n, n > 0
}

// uintAfter finds key in f and reads the number right after it.
func uintAfter(f, key []byte) (uint64, bool) {
	i := bytes.Index(f, key)
	if i < 0 {
		return 0, false
	}
	v, _, ok := uintAt(f[i+len(key):])
	return v, ok
}

// stringAfter finds key (ending in a quote) in f and returns the text up to the next quote. Used for ids
// the tool chose itself, which never contain a quote or a backslash.
func stringAfter(f, key []byte) ([]byte, bool) {
	i := bytes.Index(f, key)
	if i < 0 {
		return nil, false
	}
	rest := f[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil, false
	}
	return rest[:j], true
}

var (
	keyID      = []byte(`"id":"`)
	keyVersion = []byte(`"version":`)
	keyCode    = []byte(`"code":"`)
	keyTS      = []byte(`,"ts":`)
	keyFrom    = []byte(`,"from":`)
)

// stamped reads a value {"seq":N,"ts":T…} found right after key at f[i:]: the fan-out and chat payloads.
// It returns where the scan may continue.
func stamped(f []byte, i int) (seq uint64, ts int64, next int, ok bool) {
	seq, n, ok := uintAt(f[i:])
	if !ok {
		return 0, 0, i, false
	}
	i += n
	if !bytes.HasPrefix(f[i:], keyTS) {
		return 0, 0, i, false
	}
	i += len(keyTS)
	t, n, ok := uintAt(f[i:])
	return seq, int64(t), i + n, ok
}

// idNumber parses an id the tool made as prefix followed by a decimal number ("u42").
func idNumber(id []byte, prefix byte) (uint64, bool) {
	if len(id) < 2 || id[0] != prefix {
		return 0, false
	}
	v, n, ok := uintAt(id[1:])
	return v, ok && n == len(id)-1
}

// idPair parses an id the tool made as prefix, a connection number, '.', and a request number ("b7.42").
// Ids must be unique per object (the server deduplicates retries by id alone), hence the connection number.
func idPair(id []byte, prefix byte) (conn, n uint64, ok bool) {
	if len(id) < 4 || id[0] != prefix {
		return 0, 0, false
	}
	conn, i, ok := uintAt(id[1:])
	if !ok || 1+i >= len(id) || id[1+i] != '.' {
		return 0, 0, false
	}
	rest := id[2+i:]
	n, j, ok := uintAt(rest)
	return conn, n, ok && j == len(rest)
}
