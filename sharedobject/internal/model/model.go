// Package model is the pure model of one shared object: its slots, versions, tombstones, the rules that
// accept or reject a change, the memory of committed request ids (at-most-once) and the encoding of the
// object's log entries. It does no I/O; every replica applies the same commits in the same order and so
// reaches the same state.
package model

import (
	"bytes"
	"sort"
	"time"
)

// Change is one slot change in a client batch.
type Change struct {
	Name   string
	Base   uint64 // the object version the client last saw
	Value  []byte // compact JSON; nil when Delete
	Delete bool
}

// Commit is one committed batch: what goes into the object's log and bumps its version by one.
type Commit struct {
	Version uint64
	Epoch   string // set on the first commit of an object (or of a new epoch)
	ID      string // request id; "" for server-side writes
	Origin  string // session that asked, so its node can answer it; "" for server-side writes
	User    string
	Sets    []SlotValue
	Deletes []string
	Clear   bool   // delete every slot first (server-side clear)
	FP      uint64 // fingerprint of the request (updateFingerprint); 0 for server-side writes
	Mask    []byte // which of the request's changes were committed (commitMask); nil = all
}

// SlotValue is a slot name with its compact JSON value.
type SlotValue struct {
	Name  string
	Value []byte
}

// Event is what a subscriber is told about one slot.
type Event struct {
	Code     string // "change" or "delete"
	Name     string
	Value    []byte
	OldValue []byte // nil when the slot did not exist
}

// Outcome is the verdict on one change of a batch.
type Outcome int8

const (
	Accepted Outcome = iota
	Rejected         // changed by someone else after the client's base version
	NoOp             // the slot already holds this value (or is already absent)
)

type slot struct {
	value   []byte
	version uint64
}

// State is one replica of an object.
type State struct {
	Epoch   string
	Version uint64
	slots   map[string]slot
	tombs   map[string]uint64 // deleted slot → version of the deletion
	horizon uint64            // deletions at or before this version are forgotten
	bytes   int               // sum of len(name)+len(value) over slots
	mem     requestMemory     // committed request ids (at-most-once)
	Lock    LockState
}

// LockState is a server-side lock: while held (and not expired), client writes wait.
type LockState struct {
	ID    string
	Until int64 // unix milliseconds
}

// NewState returns an empty object that remembers request ids for DefaultDuplicateWindow.
func NewState() *State {
	return NewStateWith(DefaultDuplicateWindow, DefaultRememberedBytes)
}

// NewStateWith returns an empty object that remembers request ids for window, in at most budget bytes.
func NewStateWith(window time.Duration, budget int) *State {
	return &State{slots: map[string]slot{}, tombs: map[string]uint64{}, mem: newRequestMemory(window, budget)}
}

// Len is the number of slots; Bytes the size used against MaxObjectBytes.
func (s *State) Len() int   { return len(s.slots) }
func (s *State) Bytes() int { return s.bytes }

// Get returns a slot's value and the version at which it last changed.
func (s *State) Get(name string) (value []byte, version uint64, ok bool) {
	sl, ok := s.slots[name]
	return sl.value, sl.version, ok
}

// Slots calls fn for every slot in name order (deterministic output for full syncs and snapshots).
func (s *State) Slots(fn func(name string, value []byte, version uint64)) {
	names := make([]string, 0, len(s.slots))
	for n := range s.slots {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sl := s.slots[n]
		fn(n, sl.value, sl.version)
	}
}

// Remembered returns the record of user's committed request id, if the object still remembers it.
func (s *State) Remembered(user, id string) *Record { return s.Recall(RequestKey(user, id)) }

// Recall returns the record of a committed request by its RequestKey, if the object still remembers it.
func (s *State) Recall(key uint64) *Record { return s.mem.lookup(key) }

// HasRoom reports whether extra bytes of records fit in the object's memory once an entry stamped ts has
// expired what it expires (RecordBytes is one record's cost).
func (s *State) HasRoom(extra int, ts int64) bool { return s.mem.wouldFit(extra, ts) }

// Clock is the timestamp (unix ms) of the newest entry applied: the next entry is stamped no earlier.
func (s *State) Clock() int64 { return s.mem.lastTS }

// SetMemoryBounds sets how long request ids are remembered and in how many bytes at most, as a node does
// with a state read from a snapshot.
func (s *State) SetMemoryBounds(window time.Duration, budget int) {
	s.mem.window, s.mem.budget = window.Milliseconds(), budget
}

// Advance moves the object's clock to a log entry's timestamp (unix ms): request ids older than the
// duplicate window are forgotten. Every entry is applied with its timestamp, before its operations.
func (s *State) Advance(ts int64) { s.mem.advance(ts) }

// Delivered reports whether a message with m's id and content was delivered before and is still
// remembered: a second copy of it in the log (stored twice around a JetStream leader change) is not
// delivered again.
func (s *State) Delivered(m *Message) bool {
	rec := s.Recall(RequestKey(m.User, m.ID))
	return rec != nil && rec.fp == MessageFingerprint(m.Handler, m.Args)
}

// RememberMessage records a delivered message's id, so that a re-sent copy is not delivered twice.
func (s *State) RememberMessage(m *Message) {
	s.mem.add(&Record{key: RequestKey(m.User, m.ID), fp: MessageFingerprint(m.Handler, m.Args), version: s.Version})
}

// Apply applies a commit and returns what subscribers are told. The commit must be the next version.
func (s *State) Apply(c *Commit, resyncWindow uint64) []Event {
	if c.Epoch != "" {
		s.Epoch = c.Epoch
	}
	s.Version = c.Version
	var events []Event
	if c.Clear {
		s.Slots(func(name string, value []byte, _ uint64) {
			events = append(events, Event{Code: "delete", Name: name, OldValue: value})
			s.remove(name, c.Version)
		})
	}
	for _, d := range c.Deletes {
		sl, ok := s.slots[d]
		if !ok {
			continue
		}
		events = append(events, Event{Code: "delete", Name: d, OldValue: sl.value})
		s.remove(d, c.Version)
	}
	for _, sv := range c.Sets {
		old, existed := s.slots[sv.Name]
		if existed {
			s.bytes -= len(old.value)
		} else {
			s.bytes += len(sv.Name)
		}
		s.bytes += len(sv.Value)
		s.slots[sv.Name] = slot{value: sv.Value, version: c.Version}
		delete(s.tombs, sv.Name)
		ev := Event{Code: "change", Name: sv.Name, Value: sv.Value}
		if existed {
			ev.OldValue = old.value
		}
		events = append(events, ev)
	}
	if c.ID != "" {
		s.remember(c)
	}
	s.pruneTombs(resyncWindow)
	return events
}

func (s *State) remove(name string, version uint64) {
	sl := s.slots[name]
	s.bytes -= len(name) + len(sl.value)
	delete(s.slots, name)
	s.tombs[name] = version
}

func (s *State) remember(c *Commit) {
	r := &Record{key: RequestKey(c.User, c.ID), fp: c.FP, version: c.Version, mask: c.Mask}
	if c.FP == 0 { // a commit logged before fingerprints: keep what it committed by name
		r.id, r.user = c.ID, c.User
		for _, sv := range c.Sets {
			r.names = append(r.names, sv.Name)
		}
		r.names = append(r.names, c.Deletes...)
	}
	s.mem.add(r)
}

// pruneTombs forgets deletions older than the resync window. It runs every 64 versions so that the
// cost stays amortised; the horizon it leaves is a function of the version alone, the same on every replica.
func (s *State) pruneTombs(window uint64) {
	if s.Version%64 != 0 || s.Version <= window {
		return
	}
	h := s.Version - window
	for name, v := range s.tombs {
		if v <= h {
			delete(s.tombs, name)
		}
	}
	if h > s.horizon {
		s.horizon = h
	}
}

// Delta returns the events a client at (epoch, version) missed, or full=true when it must take
// clear + full state instead (other epoch, outside the resync window, or ahead of this replica).
func (s *State) Delta(epoch string, version, window uint64) (events []Event, full bool) {
	if epoch != s.Epoch || version > s.Version || version < s.horizon || s.Version-version > window {
		return nil, true
	}
	if version == s.Version {
		return nil, false
	}
	s.Slots(func(name string, value []byte, v uint64) {
		if v > version {
			events = append(events, Event{Code: "change", Name: name, Value: value})
		}
	})
	names := make([]string, 0)
	for name, v := range s.tombs {
		if v > version {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		events = append(events, Event{Code: "delete", Name: name})
	}
	return events, false
}

// Draft validates a sequence of batches against the state plus the effect of the batches before it,
// so that several client batches can be committed in one log entry (group commit).
type Draft struct {
	s       *State
	version uint64
	over    map[string]draftSlot
	count   int // slots after the drafted batches
	bytes   int
}

type draftSlot struct {
	value   []byte
	version uint64
	exists  bool
}

// NewDraft starts drafting on top of the current state.
func (s *State) NewDraft() *Draft {
	return &Draft{s: s, version: s.Version, over: map[string]draftSlot{}, count: len(s.slots), bytes: s.bytes}
}

// Version is the version the drafted batches reach.
func (d *Draft) Version() uint64 { return d.version }

func (d *Draft) get(name string) draftSlot {
	if o, ok := d.over[name]; ok {
		return o
	}
	sl, ok := d.s.slots[name]
	return draftSlot{value: sl.value, version: sl.version, exists: ok}
}

// Current returns a slot's value as of the drafted batches.
func (d *Draft) Current(name string) (value []byte, exists bool) {
	o := d.get(name)
	return o.value, o.exists
}

// Judge decides each change of a batch without committing it: Accepted, Rejected (a newer version
// than the client's base) or NoOp (the value is already there). force skips the version check (server writes).
func (d *Draft) Judge(changes []Change, force bool) []Outcome {
	out := make([]Outcome, len(changes))
	for i, c := range changes {
		cur := d.get(c.Name)
		switch {
		case !force && cur.version > c.Base:
			out[i] = Rejected
		case c.Delete && !cur.exists, !c.Delete && cur.exists && bytes.Equal(cur.value, c.Value):
			out[i] = NoOp
		default:
			out[i] = Accepted
		}
	}
	return out
}

// Fits reports the slot count and byte size the object would have after also applying the accepted changes.
func (d *Draft) Fits(changes []Change, outcomes []Outcome) (slots, size int) {
	slots, size = d.count, d.bytes
	for i, c := range changes {
		if outcomes[i] != Accepted {
			continue
		}
		cur := d.get(c.Name)
		if cur.exists {
			size -= len(c.Name) + len(cur.value)
			slots--
		}
		if !c.Delete {
			size += len(c.Name) + len(c.Value)
			slots++
		}
	}
	return slots, size
}

// Add records the accepted changes of a batch in the draft and returns its commit (nil when nothing was accepted).
func (d *Draft) Add(changes []Change, outcomes []Outcome) *Commit {
	var c *Commit
	for i, ch := range changes {
		if outcomes[i] != Accepted {
			continue
		}
		if c == nil {
			d.version++
			c = &Commit{Version: d.version}
		}
		if ch.Delete {
			c.Deletes = append(c.Deletes, ch.Name)
		} else {
			c.Sets = append(c.Sets, SlotValue{Name: ch.Name, Value: ch.Value})
		}
	}
	if c != nil {
		d.count, d.bytes = d.Fits(changes, outcomes)
		for i, ch := range changes {
			if outcomes[i] == Accepted {
				d.over[ch.Name] = draftSlot{value: ch.Value, version: d.version, exists: !ch.Delete}
			}
		}
	}
	return c
}

// AddClear drafts a server-side clear: every slot deleted in one commit.
func (d *Draft) AddClear() *Commit {
	d.version++
	for name := range d.s.slots {
		d.over[name] = draftSlot{version: d.version}
	}
	for name, o := range d.over {
		o.exists, o.value, o.version = false, nil, d.version
		d.over[name] = o
	}
	d.count, d.bytes = 0, 0
	return &Commit{Version: d.version, Clear: true}
}
