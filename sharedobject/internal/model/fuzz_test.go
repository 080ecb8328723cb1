package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"
)

// Fuzz targets for the two places replicated bytes enter the model: batches applied on every replica (each
// must reach the same state), and log entries read back from JetStream.

// Model fuzzing. The fuzz bytes are read as a program over a small alphabet of slot names and values, so
// that batches collide; the resync window is small so that tombstones are pruned within short inputs.

var (
	fuzzNames  = []string{"a", "b", "c", "dé", "e/f"}
	fuzzValues = []string{`1`, `"x"`, `null`, `{"k":[1,2]}`, `true`, `""`, `"ü\n"`}
)

const (
	fuzzWindow   = 8
	fuzzMaxSlots = 3
	fuzzMaxBytes = 30
)

// program hands out fuzz bytes; past the end it reads zeros.
type program []byte

func (p *program) next() byte {
	if len(*p) == 0 {
		return 0
	}
	b := (*p)[0]
	*p = (*p)[1:]
	return b
}

func FuzzBatchApply(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x01, 0x10, 0x00, 0x00, 0x11, 0x40, 0x81, 0x20, 0x02, 0x8f, 0x00, 0x13, 0x22, 0x07})
	// Long enough to pass version 64, where tombstones outside the window are pruned.
	long := make([]byte, 0, 1024)
	for i := range 1024 {
		long = append(long, byte(i*37+i/7))
	}
	f.Add(long)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 2048 {
			t.Skip("long inputs add versions, not cases, and the checks are quadratic in the version")
		}
		m := newModelRun()
		p := program(data)
		for len(p) > 0 {
			if err := m.entry(&p); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.finish(); err != nil {
			t.Fatal(err)
		}
	})
}

// modelRun drives one State the way the write path does (draft a group of batches and messages, log them
// as one entry, apply) and keeps what is needed to check it: the log, and the slots at every version.
type modelRun struct {
	s        *State
	fromSnap *State              // rebuilt from the latest snapshot, then fed the same ops
	logged   []Entry             // entries as read back from the log, in order
	at       []map[string]string // slots at each version
	ids      []fuzzRequest       // every request committed with an id, oldest first
	nextID   int
	ts       int64 // the clock of the last entry
}

// fuzzRequest is what the memory of an object should answer for a committed request.
type fuzzRequest struct {
	id      string
	version uint64
	fp      uint64
	names   []string // for requests logged without a fingerprint
	ts      int64
}

// fuzzDupWindow is the duplicate window of the fuzzed objects, in the milliseconds of their entries' clock.
const fuzzDupWindow = 20 * time.Millisecond

func newFuzzState() *State { return NewStateWith(fuzzDupWindow, math.MaxInt) }

func newModelRun() *modelRun {
	return &modelRun{s: newFuzzState(), at: []map[string]string{{}}}
}

// applyOp applies a logged op to a replica as object.applyLocked does (after State.Advance).
func applyOp(s *State, o Op) {
	if o.Commit != nil {
		s.Apply(o.Commit, fuzzWindow)
	} else if o.Msg.ID != "" {
		s.RememberMessage(o.Msg)
	}
}

// entry drafts 1–3 batches or messages into one log entry, checks the round trip through the log, and
// applies it.
func (m *modelRun) entry(p *program) error {
	h := p.next()
	d := m.s.NewDraft()
	var ops []Op
	commits := 0
	for range 1 + int(h%3) {
		o, err := m.batch(p, d)
		if err != nil {
			return err
		}
		m.nextID++
		switch c := o.Commit; {
		case o.Msg != nil:
			o.Msg.ID = "m" + strconv.Itoa(m.nextID)
		case c == nil:
			continue
		case c.Version != m.s.Version+uint64(commits)+1:
			return fmt.Errorf("draft gave version %d, want %d", c.Version, m.s.Version+uint64(commits)+1)
		default:
			commits++
			if m.s.Epoch == "" && commits == 1 {
				c.Epoch = "ep-é"
			}
			if m.nextID%3 != 0 { // every third commit is a server-side write, without an id
				c.ID, c.Origin, c.User = "r"+strconv.Itoa(m.nextID), "node/s1", "ü"
				if m.nextID%5 != 0 { // every fifth as logged before fingerprints
					c.FP = uint64(m.nextID)*0x9e3779b97f4a7c15 | 1
					if h&0x10 != 0 {
						c.Mask = []byte{byte(m.nextID), 1}
					}
				}
			}
		}
		ops = append(ops, o)
	}
	if len(ops) == 0 {
		return nil
	}
	if prev := m.ts; prev == 0 && h%7 != 0 {
		// Requests of entries without a clock (ts 0) are dated by the first entry with one, as the memory
		// adopts them: remembered a whole window from then, never for less.
		for i := range m.ids {
			m.ids[i].ts = int64(h % 7)
		}
	}
	m.ts += int64(h % 7)
	data := EncodeEntry(m.ts, ops)
	e, err := DecodeEntry(data)
	if err != nil {
		return fmt.Errorf("decode %s: %v", data, err)
	}
	if len(e.Ops) != len(ops) {
		return fmt.Errorf("entry %s decodes to %d ops, want %d", data, len(e.Ops), len(ops))
	}
	if e.TS != m.ts {
		return fmt.Errorf("entry %s decodes with ts %d", data, e.TS)
	}
	lenBefore, bytesBefore := m.s.Len(), m.s.Bytes()
	m.s.Advance(e.TS)
	if m.fromSnap != nil {
		m.fromSnap.Advance(e.TS)
	}
	m.logged = append(m.logged, *e)
	for i, o := range ops {
		if err := sameOp(o, e.Ops[i]); err != nil {
			return fmt.Errorf("entry %s: %v", data, err)
		}
		if err := m.apply(o); err != nil {
			return err
		}
		if m.fromSnap != nil {
			applyOp(m.fromSnap, e.Ops[i])
		}
	}
	switch {
	case d.count != m.s.Len() || d.bytes != m.s.Bytes():
		return fmt.Errorf("draft predicted %d slots / %d bytes, state has %d / %d", d.count, d.bytes, m.s.Len(), m.s.Bytes())
	case m.s.Len() > max(fuzzMaxSlots, lenBefore) || m.s.Bytes() > max(fuzzMaxBytes, bytesBefore):
		return fmt.Errorf("limits broken: %d slots / %d bytes", m.s.Len(), m.s.Bytes())
	}
	if h&0xe0 == 0xe0 { // now and then, as the write path does
		snap, err := DecodeEntry(EncodeSnapshot(m.s))
		if err != nil || snap.Snap == nil {
			return fmt.Errorf("snapshot does not decode: %v", err)
		}
		m.fromSnap = snap.Snap
		m.fromSnap.mem.window = fuzzDupWindow.Milliseconds()
		if err := m.sameState("snapshot", m.fromSnap); err != nil {
			return err
		}
	}
	return nil
}

// batch reads one client batch, a clear or a message, judges it like the write path and adds it to the
// draft. It returns a zero op when nothing is to be logged.
func (m *modelRun) batch(p *program, d *Draft) (Op, error) {
	bh := p.next()
	switch bh % 16 {
	case 15:
		return Op{Commit: d.AddClear()}, nil
	case 14:
		return Op{Msg: &Message{Origin: "node/s1", User: "ü", Handler: "chat", Args: []byte(`["hi",{"n":1}]`)}}, nil
	}
	force := bh&0xc0 == 0xc0
	var changes []Change
	for range 1 + int(bh>>4&3) {
		c, b := p.next(), p.next()
		ch := Change{Name: fuzzNames[int(c)%len(fuzzNames)]}
		if slices.ContainsFunc(changes, func(x Change) bool { return x.Name == ch.Name }) {
			continue // the parser refuses a slot twice in one batch
		}
		if c&0x80 != 0 {
			ch.Delete = true
		} else {
			ch.Value = []byte(fuzzValues[int(c>>3)%len(fuzzValues)])
		}
		// A client's base is a version it saw: mostly the committed one, sometimes an older one (stale).
		if b%4 == 0 {
			ch.Base = m.s.Version - min(uint64(b>>2%8), m.s.Version)
		} else {
			ch.Base = m.s.Version
		}
		changes = append(changes, ch)
	}
	outcomes := d.Judge(changes, force)
	for i, ch := range changes {
		cur := d.get(ch.Name)
		stale := !force && cur.version > ch.Base
		same := ch.Delete && !cur.exists || !ch.Delete && cur.exists && bytes.Equal(cur.value, ch.Value)
		want := Accepted
		if stale {
			want = Rejected
		} else if same {
			want = NoOp
		}
		if outcomes[i] != want {
			return Op{}, fmt.Errorf("%+v on slot at v%d (exists %v): judged %d, want %d", ch, cur.version, cur.exists, outcomes[i], want)
		}
	}
	slots, size := d.Fits(changes, outcomes)
	if slots > fuzzMaxSlots && slots > m.s.Len() || size > fuzzMaxBytes && size > m.s.Bytes() {
		return Op{}, nil // refused whole, as the write path does
	}
	c := d.Add(changes, outcomes)
	accepted := 0
	for _, o := range outcomes {
		if o == Accepted {
			accepted++
		}
	}
	switch {
	case c == nil && accepted > 0, c != nil && len(c.Sets)+len(c.Deletes) != accepted:
		return Op{}, fmt.Errorf("%d accepted changes gave commit %+v", accepted, c)
	case d.count != slots || d.bytes != size:
		return Op{}, fmt.Errorf("Fits said %d/%d, Add recorded %d/%d", slots, size, d.count, d.bytes)
	}
	return Op{Commit: c}, nil
}

// apply applies one op and checks a commit's events and the state against the previous version.
func (m *modelRun) apply(o Op) error {
	if o.Msg != nil {
		applyOp(m.s, o)
		m.ids = append(m.ids, fuzzRequest{id: o.Msg.ID, version: m.s.Version, fp: MessageFingerprint(o.Msg.Handler, o.Msg.Args), ts: m.ts})
		return nil
	}
	c := o.Commit
	prev := m.at[len(m.at)-1]
	events := m.s.Apply(c, fuzzWindow)
	if m.s.Version != uint64(len(m.at)) {
		return fmt.Errorf("version %d after %d commits", m.s.Version, len(m.at))
	}
	cur := maps.Clone(prev)
	for _, ev := range events {
		old, existed := cur[ev.Name]
		if existed != (ev.OldValue != nil) || existed && old != string(ev.OldValue) {
			return fmt.Errorf("v%d: event %s %q has oldValue %q, the slot held %q (exists %v)", c.Version, ev.Code, ev.Name, ev.OldValue, old, existed)
		}
		if ev.Code == "delete" {
			delete(cur, ev.Name)
		} else {
			cur[ev.Name] = string(ev.Value)
		}
	}
	if got := slotMap(m.s); !maps.Equal(got, cur) {
		return fmt.Errorf("v%d: state %v, events lead to %v", c.Version, got, cur)
	}
	m.at = append(m.at, cur)
	if c.ID != "" {
		r := fuzzRequest{id: c.ID, version: c.Version, fp: c.FP, ts: m.ts}
		if c.FP == 0 {
			r.names = append(slotNames(c.Sets), c.Deletes...)
		}
		m.ids = append(m.ids, r)
	}
	n, size := 0, 0
	m.s.Slots(func(name string, value []byte, _ uint64) { n, size = n+1, size+len(name)+len(value) })
	if n != m.s.Len() || size != m.s.Bytes() {
		return fmt.Errorf("v%d: Len/Bytes %d/%d, recount %d/%d", c.Version, m.s.Len(), m.s.Bytes(), n, size)
	}
	return nil
}

// finish checks the end state against a replay of the log, the snapshot replica, and every resync.
func (m *modelRun) finish() error {
	replay := newFuzzState()
	for _, e := range m.logged {
		replay.Advance(e.TS)
		for _, o := range e.Ops {
			applyOp(replay, o)
		}
	}
	if err := m.sameState("replay", replay); err != nil {
		return err
	}
	if m.fromSnap != nil {
		if err := m.sameState("snapshot replica", m.fromSnap); err != nil {
			return err
		}
	}
	// The request ids of the duplicate window are remembered, with what they committed; older ones are not.
	for _, r := range m.ids {
		rec := m.s.Remembered("ü", r.id)
		if want := r.ts >= m.ts-fuzzDupWindow.Milliseconds(); (rec != nil) != want {
			return fmt.Errorf("request %q of ts %d at ts %d: remembered %v, want %v", r.id, r.ts, m.ts, rec != nil, want)
		}
		if rec != nil && (rec.version != r.version || rec.fp != r.fp || !slices.Equal(rec.names, r.names)) {
			return fmt.Errorf("request %q remembered as %+v, want %+v", r.id, rec, r)
		}
	}
	return m.checkDeltas()
}

// checkDeltas checks, for a client at every past version, that the delta brings it to the current slots,
// and that it gets a full sync exactly when the protocol says so.
func (m *modelRun) checkDeltas() error {
	s := m.s
	if _, full := s.Delta(s.Epoch+"x", s.Version, fuzzWindow); !full {
		return fmt.Errorf("a client from another epoch got a delta")
	}
	for v := uint64(1); v <= s.Version; v++ {
		events, full := s.Delta(s.Epoch, v, fuzzWindow)
		if want := v < s.horizon || s.Version-v > fuzzWindow; full != want {
			return fmt.Errorf("client at v%d of v%d (horizon %d): full=%v", v, s.Version, s.horizon, full)
		}
		if full {
			continue
		}
		got := maps.Clone(m.at[v])
		for _, ev := range events {
			if ev.Code == "delete" {
				delete(got, ev.Name)
			} else {
				got[ev.Name] = string(ev.Value)
			}
		}
		if want := m.at[s.Version]; !maps.Equal(got, want) {
			return fmt.Errorf("client at v%d: delta %v leads to %v, want %v", v, events, got, want)
		}
	}
	return nil
}

// sameState compares another replica with the run's state: what it stores and what it answers.
func (m *modelRun) sameState(what string, r *State) error {
	s := m.s
	switch {
	case r.Epoch != s.Epoch || r.Version != s.Version || r.horizon != s.horizon:
		return fmt.Errorf("%s: epoch/version/horizon %q/%d/%d, want %q/%d/%d", what, r.Epoch, r.Version, r.horizon, s.Epoch, s.Version, s.horizon)
	case r.Len() != s.Len() || r.Bytes() != s.Bytes():
		return fmt.Errorf("%s: %d slots / %d bytes, want %d / %d", what, r.Len(), r.Bytes(), s.Len(), s.Bytes())
	case !reflect.DeepEqual(r.slots, s.slots):
		return fmt.Errorf("%s: slots %v, want %v", what, r.slots, s.slots)
	case !maps.Equal(r.tombs, s.tombs):
		return fmt.Errorf("%s: tombstones %v, want %v", what, r.tombs, s.tombs)
	}
	for key, a := range s.mem.byKey {
		b := r.mem.lookup(key)
		if b == nil || a.version != b.version || a.fp != b.fp || a.ts != b.ts || !bytes.Equal(a.mask, b.mask) || !slices.Equal(a.names, b.names) {
			return fmt.Errorf("%s: request %x remembered as %+v, want %+v", what, key, b, a)
		}
	}
	if len(r.mem.byKey) != len(s.mem.byKey) || r.mem.lastTS != s.mem.lastTS {
		return fmt.Errorf("%s: remembers %d request ids at ts %d, want %d at %d", what, len(r.mem.byKey), r.mem.lastTS, len(s.mem.byKey), s.mem.lastTS)
	}
	// Older versions get a full sync (checkDeltas checks the rule); the window is where answers differ.
	for v := s.Version - min(s.Version, fuzzWindow+2); v <= s.Version; v++ {
		e1, f1 := s.Delta(s.Epoch, v, fuzzWindow)
		e2, f2 := r.Delta(s.Epoch, v, fuzzWindow)
		if f1 != f2 || !reflect.DeepEqual(e1, e2) {
			return fmt.Errorf("%s: Delta from v%d = %v %v, want %v %v", what, v, e2, f2, e1, f1)
		}
	}
	return nil
}

func sameOp(a, b Op) error {
	if a.Msg != nil {
		if b.Msg == nil || !reflect.DeepEqual(*a.Msg, *b.Msg) {
			return fmt.Errorf("message %+v decodes as %+v", a.Msg, b)
		}
		return nil
	}
	return sameCommit(a.Commit, b.Commit)
}

func sameCommit(a, b *Commit) error {
	if b == nil {
		return fmt.Errorf("commit v%d decodes as another op", a.Version)
	}
	x, y := *a, *b
	x.Sets, y.Sets = nil, nil
	if !reflect.DeepEqual(x, y) || len(a.Sets) != len(b.Sets) || !slices.Equal(a.Deletes, b.Deletes) {
		return fmt.Errorf("commit %+v decodes as %+v", a, b)
	}
	for i := range a.Sets {
		if a.Sets[i].Name != b.Sets[i].Name || !bytes.Equal(a.Sets[i].Value, b.Sets[i].Value) {
			return fmt.Errorf("set %d %q=%s decodes as %q=%s", i, a.Sets[i].Name, a.Sets[i].Value, b.Sets[i].Name, b.Sets[i].Value)
		}
	}
	return nil
}

func slotMap(s *State) map[string]string {
	out := map[string]string{}
	s.Slots(func(name string, value []byte, _ uint64) { out[name] = string(value) })
	return out
}

func slotNames(sets []SlotValue) []string {
	var out []string
	for _, sv := range sets {
		out = append(out, sv.Name)
	}
	return out
}

func FuzzDecodeEntry(f *testing.F) {
	s := NewState()
	s.Apply(&Commit{Version: 1, Epoch: "ep", ID: "r1", Sets: []SlotValue{{"a", []byte(`{"x":[1]}`)}, {"b", []byte(`2`)}}}, 8)
	s.Apply(&Commit{Version: 2, ID: "r2", Deletes: []string{"b"}}, 8)
	s.Lock = LockState{ID: "L1", Until: 1767225600000}
	f.Add(EncodeSnapshot(s))
	f.Add(EncodeEntry(1767225600000, []Op{
		{Commit: &Commit{Version: 13, Epoch: "ep", ID: "r1", Origin: "node/s1", User: "alice", Clear: true,
			Sets: []SlotValue{{"a", []byte(`1`)}}, Deletes: []string{"b"}, FP: 0xfeed, Mask: []byte{5}}},
		{Msg: &Message{ID: "r2", Origin: "node/s1", User: "alice", Handler: "chat", Args: []byte(`["hi"]`)}},
		{Lock: &LockState{ID: "L1", Until: 1767225600000}},
		{Unlock: "L1"},
	}))
	f.Add(ResetEntry)
	for _, s := range []string{
		`{"ops":[{"t":"c","v":1,"set":[["a"],["b",1,2],[1,2]]}]}`,
		`{"ops":[{"t":"m","a":{}}]}`,
		`{"ops":[{"t":"x"}]}`,
		`{"ops":{}}`,
		`{"snap":{"slots":[["a",1]],"tombs":[1,[2,3]],"recent":[["r",1,"a"]],"lock":[1]}}`,
		`{"snap":[]}`,
		`[]`,
		`{"reset":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEntry(data)
		if err != nil {
			return
		}
		// What was decoded can be written again, and read back (a node re-logs what it applied).
		var again []byte
		switch {
		case e.Snap != nil:
			again = EncodeSnapshot(e.Snap)
		case e.Reset:
			return
		default:
			again = EncodeEntry(e.TS, e.Ops)
		}
		if !json.Valid(again) || !utf8.Valid(again) {
			t.Fatalf("%q decodes, but re-encodes as invalid JSON or UTF-8 %q", data, again)
		}
		if _, err := DecodeEntry(again); err != nil {
			t.Fatalf("%q decodes, but its re-encoding %q does not: %v", data, again, err)
		}
	})
}
