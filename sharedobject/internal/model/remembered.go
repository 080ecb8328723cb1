package model

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"slices"
	"strconv"
	"time"
)

// The memory of committed requests behind at-most-once (docs/PROTOCOL.md §1.6). Every replica keeps the
// same memory: records are added by the commits they belong to and expire by the timestamps of the log's
// entries, never by a clock of their own, so every node forgets a request at the same point of the log.
//
// A record is what a retry needs and no more: a hash of (user, id), a fingerprint of what the request asked
// (the same id with other content is refused, not answered as a retry), the version it reached, and which of
// its changes were committed. The memory is bounded by bytes; while it is full of records younger than the
// window, new requests with an id are refused busy rather than forgetting a request early.

const (
	// DefaultDuplicateWindow is how long an object remembers a committed request id.
	DefaultDuplicateWindow = 2 * time.Minute
	// RecordBytes is what one record costs against the budget (its encoding in a snapshot, without the mask).
	RecordBytes = 4*8 + 1
	// DefaultRememberedBytes bounds the memory of one object of a State made by NewState.
	DefaultRememberedBytes = 256 << 10
)

// Record is one committed request (an update or a message with an id).
type Record struct {
	key     uint64 // RequestKey(user, id)
	fp      uint64 // fingerprint of the request; 0 = unknown (records written before fingerprints)
	version uint64 // the version its commit reached
	ts      int64  // unix ms of its log entry; 0 = not yet known (adopted from the next entry)
	mask    []byte // bit i set: changes[i] was committed; nil = every change was
	dead    bool   // superseded by a later record of the same key: costs nothing, waits to leave the list

	// Records read from snapshots written before fingerprints: what they committed by name.
	id, user string
	names    []string
}

func (r *Record) size() int { return RecordBytes + len(r.mask) }

// FP is the fingerprint of the request (UpdateFingerprint, MessageFingerprint); 0 when it was logged
// before fingerprints, so any content matches it.
func (r *Record) FP() uint64 { return r.fp }

// CommittedNames returns the names of the changes the original request committed.
func (r *Record) CommittedNames(changes []Change) []string {
	if r.fp == 0 {
		return r.names // an old record: the names were kept instead of a mask
	}
	names := make([]string, 0, len(changes))
	for i, c := range changes {
		if r.mask == nil || i/8 < len(r.mask) && r.mask[i/8]&(1<<(i%8)) != 0 {
			names = append(names, c.Name)
		}
	}
	return names
}

// requestMemory holds the records of one object, oldest first.
type requestMemory struct {
	window int64 // ms
	budget int   // bytes
	list   []*Record
	head   int // list[:head] are gone
	byKey  map[uint64]*Record
	bytes  int
	lastTS int64 // the newest entry timestamp applied
	adopt  bool  // some records have ts 0
}

func newRequestMemory(window time.Duration, budget int) requestMemory {
	return requestMemory{window: window.Milliseconds(), budget: budget, byKey: map[uint64]*Record{}}
}

func (m *requestMemory) lookup(key uint64) *Record { return m.byKey[key] }

func (m *requestMemory) len() int { return len(m.list) - m.head }

// advance moves the memory's clock to an entry's timestamp and forgets what is older than the window.
func (m *requestMemory) advance(ts int64) {
	if ts <= m.lastTS {
		return
	}
	m.lastTS = ts
	if m.adopt {
		for _, r := range m.list[m.head:] {
			if r.ts == 0 {
				r.ts = ts
			}
		}
		m.adopt = false
		m.sort()
	}
	for m.head < len(m.list) && m.list[m.head].ts < ts-m.window {
		m.drop()
	}
}

func (m *requestMemory) drop() {
	r := m.list[m.head]
	m.list[m.head] = nil
	m.head++
	if !r.dead {
		m.bytes -= r.size()
		delete(m.byKey, r.key)
	}
	if m.head > 64 && m.head > len(m.list)/2 {
		m.list = append(m.list[:0], m.list[m.head:]...)
		m.head = 0
	}
}

// add records a committed request at the current clock. Past the budget the oldest records go: a writer
// checks room first (wouldFit), so this happens only when nodes are configured with different budgets.
func (m *requestMemory) add(r *Record) {
	if r.ts == 0 {
		r.ts = m.lastTS
	}
	if r.ts == 0 {
		m.adopt = true
	}
	if old := m.byKey[r.key]; old != nil { // only from a log written by hand: writers refuse a known id
		old.dead = true
		m.bytes -= old.size()
	}
	m.list = append(m.list, r)
	m.byKey[r.key] = r
	m.bytes += r.size()
	for m.bytes > m.budget && m.len() > 1 {
		m.drop()
	}
}

// wouldFit reports whether extra bytes of records fit once an entry stamped ts has expired what it expires.
func (m *requestMemory) wouldFit(extra int, ts int64) bool {
	bytes := m.bytes
	for _, r := range m.list[m.head:] {
		if bytes+extra <= m.budget || r.ts == 0 || r.ts >= ts-m.window {
			break
		}
		if !r.dead {
			bytes -= r.size()
		}
	}
	return bytes+extra <= m.budget
}

// RequestKey scopes a request id to its user: ids are chosen by clients, so one user's id must never
// answer another user's request. An unnamed anonymous client is a new "anon-…" user on every connection,
// so its scope is its connection.
func RequestKey(user, id string) uint64 {
	var buf [512]byte // users and ids are short: hashed without an allocation
	b := append(append(append(buf[:0], user...), 0), id...)
	sum := sha256.Sum256(b)
	return hashSum(sum[:])
}

// UpdateFingerprint identifies what an update asked: the same id with another fingerprint is another request.
func UpdateFingerprint(changes []Change) uint64 {
	h := sha256.New()
	var n [8]byte
	for _, c := range changes {
		h.Write([]byte(c.Name))
		binary.BigEndian.PutUint64(n[:], c.Base)
		h.Write(n[:])
		if c.Delete {
			h.Write([]byte{0, 'd'})
		} else {
			h.Write([]byte{0, 'v'})
			h.Write(c.Value)
		}
		h.Write([]byte{0})
	}
	return hashSum(h.Sum(nil))
}

// MessageFingerprint identifies what a send asked.
func MessageFingerprint(handler string, args []byte) uint64 {
	h := sha256.New()
	h.Write([]byte(handler))
	h.Write([]byte{0})
	h.Write(args)
	return hashSum(h.Sum(nil))
}

func hashSum(b []byte) uint64 {
	v := binary.BigEndian.Uint64(b)
	if v == 0 {
		v = 1 // 0 means "unknown"
	}
	return v
}

// CommitMask records which changes of a request were accepted (nil when all were).
func CommitMask(outcomes []Outcome) []byte {
	all := true
	for _, o := range outcomes {
		all = all && o == Accepted
	}
	if all {
		return nil
	}
	mask := make([]byte, (len(outcomes)+7)/8)
	for i, o := range outcomes {
		if o == Accepted {
			mask[i/8] |= 1 << (i % 8)
		}
	}
	return mask
}

// Records travel in log entries as hex fingerprints and base64 masks, and in snapshots packed in binary.

func formatFP(fp uint64) string { return strconv.FormatUint(fp, 16) }

func parseFP(s string) uint64 {
	v, _ := strconv.ParseUint(s, 16, 64)
	return v
}

// sort puts the records in the order of their timestamps (stable), as expiry needs: after decoding a
// snapshot, whose records of the two forms come in two lists, and after adopting timestamps.
func (m *requestMemory) sort() {
	slices.SortStableFunc(m.list[m.head:], func(a, b *Record) int { return cmp.Compare(a.ts, b.ts) })
}

// encodeRecords packs the records of a memory (oldest first) for a snapshot.
func (m *requestMemory) encodeRecords() string {
	b := make([]byte, 0, m.bytes)
	for _, r := range m.list[m.head:] {
		if r.fp == 0 || r.dead {
			continue // old records without a fingerprint travel in the names form
		}
		b = binary.BigEndian.AppendUint64(b, r.key)
		b = binary.BigEndian.AppendUint64(b, r.fp)
		b = binary.BigEndian.AppendUint64(b, r.version)
		b = binary.BigEndian.AppendUint64(b, uint64(r.ts))
		b = binary.AppendUvarint(b, uint64(len(r.mask)))
		b = append(b, r.mask...)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// decodeRecords adds the records packed by encodeRecords; malformed input ends the list.
func (m *requestMemory) decodeRecords(s string) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return false
	}
	for len(b) > 0 {
		if len(b) < 4*8 {
			return false
		}
		r := &Record{
			key: binary.BigEndian.Uint64(b), fp: binary.BigEndian.Uint64(b[8:]),
			version: binary.BigEndian.Uint64(b[16:]), ts: int64(binary.BigEndian.Uint64(b[24:])),
		}
		n, w := binary.Uvarint(b[32:])
		if w <= 0 || n > uint64(len(b)-32-w) || r.fp == 0 {
			return false
		}
		b = b[32+w:]
		if n > 0 {
			r.mask = append([]byte(nil), b[:n]...)
		}
		b = b[n:]
		m.add(r)
	}
	return true
}
