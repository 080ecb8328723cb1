package model

import (
	"encoding/base64"
	"fmt"
	"math"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/jsonx"
	"github.com/rso-server/rso/internal/utf8x"
)

// An object's log in JetStream holds entries. An entry is either a list of operations committed together
// (group commit: several client batches, messages, lock changes), a snapshot that rolls the log up, or a
// reset that ends the object's epoch (a temporary object nobody uses any more).
//
//	{"ts":1767225600000,"ops":[{"t":"c","v":13,"e":"ep","id":"r1","o":"node/s1","u":"alice","fp":"9c0e…","m":"Aw","clear":true,"set":[["a",1]],"del":["b"]},
//	        {"t":"m","id":"r2","o":"node/s1","u":"alice","h":"chat","a":["hi"]},
//	        {"t":"l","lock":"L1","until":1767225600000},{"t":"u","lock":"L1"}]}
//	{"snap":{"e":"ep","v":13,"h":0,"ts":1767225600000,"slots":[["a",13,1]],"tombs":[["b",13]],"req":"<base64>","recent":[["r1",13,["a","b"],"alice"]],"lock":["L1",0]}}
//	{"reset":true}
//
// "ts" is the writer's clock (unix ms, never behind the previous entry's): request ids expire by it.
// "fp" and "m" are a request's fingerprint and which of its changes were committed (remembered.go); "req"
// packs the remembered requests, and "recent" holds those remembered from before fingerprints.

// Message is a send(): delivered to every subscriber, never stored in the object's data.
type Message struct {
	ID      string
	Origin  string
	User    string
	Handler string
	Args    []byte // a JSON array
}

// Entry is one decoded log entry: operations, a snapshot, or a reset.
type Entry struct {
	TS    int64 // unix ms; 0 in entries written before timestamps
	Ops   []Op
	Snap  *State
	Reset bool
}

// Op is one operation of an entry; exactly one field is set.
type Op struct {
	Commit *Commit
	Msg    *Message
	Lock   *LockState // acquire
	Unlock string     // release the lock with this id
}

// EncodeEntry writes the entry of ops, stamped ts.
func EncodeEntry(ts int64, ops []Op) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"ts":`...)
	b = jsonx.AppendUint(b, uint64(ts))
	b = append(b, `,"ops":[`...)
	for i, o := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		switch {
		case o.Commit != nil:
			c := o.Commit
			b = append(b, `{"t":"c","v":`...)
			b = jsonx.AppendUint(b, c.Version)
			b = appendField(b, "e", c.Epoch)
			b = appendField(b, "id", c.ID)
			b = appendField(b, "o", c.Origin)
			b = appendField(b, "u", c.User)
			if c.FP != 0 {
				b = appendField(b, "fp", formatFP(c.FP))
			}
			if c.Mask != nil {
				b = appendField(b, "m", base64.RawStdEncoding.EncodeToString(c.Mask))
			}
			if c.Clear {
				b = append(b, `,"clear":true`...)
			}
			if len(c.Sets) > 0 {
				b = append(b, `,"set":[`...)
				for j, sv := range c.Sets {
					if j > 0 {
						b = append(b, ',')
					}
					b = append(b, '[')
					b = jsonx.AppendString(b, sv.Name)
					b = append(b, ',')
					b = append(b, sv.Value...)
					b = append(b, ']')
				}
				b = append(b, ']')
			}
			if len(c.Deletes) > 0 {
				b = append(b, `,"del":`...)
				b = appendStrings(b, c.Deletes)
			}
			b = append(b, '}')
		case o.Msg != nil:
			m := o.Msg
			b = append(b, `{"t":"m"`...)
			b = appendField(b, "id", m.ID)
			b = appendField(b, "o", m.Origin)
			b = appendField(b, "u", m.User)
			b = appendField(b, "h", m.Handler)
			b = append(b, `,"a":`...)
			b = append(b, m.Args...)
			b = append(b, '}')
		case o.Lock != nil:
			b = append(b, `{"t":"l","lock":`...)
			b = jsonx.AppendString(b, o.Lock.ID)
			b = append(b, `,"until":`...)
			b = jsonx.AppendUint(b, uint64(o.Lock.Until))
			b = append(b, '}')
		default:
			b = append(b, `{"t":"u","lock":`...)
			b = jsonx.AppendString(b, o.Unlock)
			b = append(b, '}')
		}
	}
	return append(b, "]}"...)
}

func appendField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return jsonx.AppendString(b, v)
}

func appendStrings(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonx.AppendString(b, s)
	}
	return append(b, ']')
}

// EncodeSnapshot writes a snapshot entry of s, which rolls the log up.
func EncodeSnapshot(s *State) []byte {
	b := make([]byte, 0, 64+s.bytes+len(s.slots)*16)
	b = append(b, `{"snap":{"e":`...)
	b = jsonx.AppendString(b, s.Epoch)
	b = append(b, `,"v":`...)
	b = jsonx.AppendUint(b, s.Version)
	b = append(b, `,"h":`...)
	b = jsonx.AppendUint(b, s.horizon)
	b = append(b, `,"ts":`...)
	b = jsonx.AppendUint(b, uint64(s.mem.lastTS))
	b = append(b, `,"slots":[`...)
	first := true
	s.Slots(func(name string, value []byte, version uint64) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '[')
		b = jsonx.AppendString(b, name)
		b = append(b, ',')
		b = jsonx.AppendUint(b, version)
		b = append(b, ',')
		b = append(b, value...)
		b = append(b, ']')
	})
	b = append(b, `],"tombs":[`...)
	first = true
	for name, v := range s.tombs {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '[')
		b = jsonx.AppendString(b, name)
		b = append(b, ',')
		b = jsonx.AppendUint(b, v)
		b = append(b, ']')
	}
	b = append(b, `],"req":`...)
	b = jsonx.AppendString(b, s.mem.encodeRecords())
	b = append(b, `,"recent":[`...)
	first = true
	for _, r := range s.mem.list[s.mem.head:] {
		if r.fp != 0 || r.dead {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '[')
		b = jsonx.AppendString(b, r.id)
		b = append(b, ',')
		b = jsonx.AppendUint(b, r.version)
		b = append(b, ',')
		b = appendStrings(b, r.names)
		b = append(b, ',')
		b = jsonx.AppendString(b, r.user)
		b = append(b, ',')
		b = jsonx.AppendUint(b, uint64(r.ts))
		b = append(b, ']')
	}
	b = append(b, `],"lock":[`...)
	b = jsonx.AppendString(b, s.Lock.ID)
	b = append(b, ',')
	b = jsonx.AppendUint(b, uint64(s.Lock.Until))
	return append(b, "]}}"...)
}

// ResetEntry ends an object's epoch.
var ResetEntry = []byte(`{"reset":true}`)

// DecodeEntry reads a log entry. Entries are written only by nodes, but the stream is reachable by anyone
// with NATS access, so a malformed entry is an error, never a panic.
func DecodeEntry(data []byte) (*Entry, error) {
	if !gjson.ValidBytes(data) {
		return nil, fmt.Errorf("log entry is not valid JSON")
	}
	// Values go verbatim into text frames, which must be UTF-8, and the log is writable by anyone on NATS
	// (and by server-API writes of earlier versions, which did not check): invalid bytes, which valid JSON
	// can only hold inside strings, are replaced with U+FFFD on every replica alike.
	data = utf8x.Repair(data)
	root := gjson.ParseBytes(data)
	if root.Get("reset").Bool() {
		return &Entry{Reset: true}, nil
	}
	if snap := root.Get("snap"); snap.Exists() {
		s, err := decodeSnapshot(data, snap)
		return &Entry{Snap: s}, err
	}
	ops := root.Get("ops")
	if !ops.IsArray() {
		return nil, fmt.Errorf("log entry has neither ops, snap nor reset")
	}
	e := &Entry{TS: root.Get("ts").Int()}
	var err error
	ops.ForEach(func(_, o gjson.Result) bool {
		switch o.Get("t").Str {
		case "c":
			c := &Commit{
				Version: o.Get("v").Uint(), Epoch: o.Get("e").Str, ID: o.Get("id").Str,
				Origin: o.Get("o").Str, User: o.Get("u").Str, Clear: o.Get("clear").Bool(),
				FP: parseFP(o.Get("fp").Str),
			}
			if m := o.Get("m"); m.Exists() {
				if c.Mask, err = base64.RawStdEncoding.DecodeString(m.Str); err != nil {
					err = fmt.Errorf("log entry has a malformed mask")
					return false
				}
			}
			o.Get("set").ForEach(func(_, kv gjson.Result) bool {
				pair := kv.Array()
				if len(pair) != 2 || !validJSONName(pair[0]) {
					err = fmt.Errorf("log entry has a malformed set")
					return false
				}
				c.Sets = append(c.Sets, SlotValue{Name: pair[0].Str, Value: jsonx.RawBytes(data, pair[1])})
				return true
			})
			o.Get("del").ForEach(func(_, n gjson.Result) bool {
				c.Deletes = append(c.Deletes, n.Str)
				return true
			})
			e.Ops = append(e.Ops, Op{Commit: c})
		case "m":
			args := o.Get("a")
			if !args.IsArray() {
				err = fmt.Errorf("log entry has a message without args")
				return false
			}
			e.Ops = append(e.Ops, Op{Msg: &Message{
				ID: o.Get("id").Str, Origin: o.Get("o").Str, User: o.Get("u").Str,
				Handler: o.Get("h").Str, Args: jsonx.RawBytes(data, args),
			}})
		case "l":
			e.Ops = append(e.Ops, Op{Lock: &LockState{ID: o.Get("lock").Str, Until: o.Get("until").Int()}})
		case "u":
			e.Ops = append(e.Ops, Op{Unlock: o.Get("lock").Str})
		default:
			err = fmt.Errorf("log entry has an unknown op %q", o.Get("t").Str)
		}
		return err == nil
	})
	return e, err
}

func validJSONName(r gjson.Result) bool { return r.Type == gjson.String && r.Str != "" }

func decodeSnapshot(data []byte, snap gjson.Result) (*State, error) {
	s := NewState()
	s.mem.budget = math.MaxInt // the node that applies the snapshot sets its own bounds
	s.Epoch = snap.Get("e").Str
	s.Version = snap.Get("v").Uint()
	s.horizon = snap.Get("h").Uint()
	s.mem.lastTS = snap.Get("ts").Int()
	lastTS := s.mem.lastTS
	var err error
	snap.Get("slots").ForEach(func(_, t gjson.Result) bool {
		a := t.Array()
		if len(a) != 3 || !validJSONName(a[0]) {
			err = fmt.Errorf("snapshot has a malformed slot")
			return false
		}
		v := jsonx.RawBytes(data, a[2])
		s.slots[a[0].Str] = slot{value: v, version: a[1].Uint()}
		s.bytes += len(a[0].Str) + len(v)
		return true
	})
	snap.Get("tombs").ForEach(func(_, t gjson.Result) bool {
		a := t.Array()
		if len(a) == 2 {
			s.tombs[a[0].Str] = a[1].Uint()
		}
		return true
	})
	snap.Get("recent").ForEach(func(_, t gjson.Result) bool {
		a := t.Array()
		if len(a) < 3 || len(a) > 5 { // the user and the time came later; missing ones read as "" and 0
			return true
		}
		var names []string
		a[2].ForEach(func(_, n gjson.Result) bool {
			names = append(names, n.Str)
			return true
		})
		user, ts := "", int64(0)
		if len(a) >= 4 {
			user = a[3].Str
		}
		if len(a) == 5 {
			ts = a[4].Int()
		}
		s.mem.lastTS, lastTS = ts, s.mem.lastTS // remembered at their own time
		s.remember(&Commit{ID: a[0].Str, User: user, Version: a[1].Uint(), Deletes: names})
		s.mem.lastTS = lastTS
		return true
	})
	if req := snap.Get("req"); req.Exists() && !s.mem.decodeRecords(req.Str) {
		return s, fmt.Errorf("snapshot has malformed request records")
	}
	s.mem.sort()
	lock := snap.Get("lock").Array()
	if len(lock) == 2 {
		s.Lock = LockState{ID: lock[0].Str, Until: lock[1].Int()}
	}
	return s, err
}
