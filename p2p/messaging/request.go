package messaging

import (
	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/ids"
	"github.com/rso-server/rso/internal/jsonx"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/proto"
)

// Client frames: parsed and checked at the boundary, before anything touches state.

// request is one decoded client frame. Fields not used by its op are zero.
type request struct {
	op      string
	id      string
	to      string // send, signal
	peer    string // receipt, history
	user    string // friend
	body    []byte // send: compact JSON
	data    []byte // signal: compact JSON
	device  string // signal: only this device of the recipient
	kind    string // receipt
	seq     uint64 // receipt
	before  uint64 // history: messages below this sequence (0: the newest)
	limit   int    // history, sync
	hash    string // friends
	action  string // friend
	status  string // presence
	after   map[string]uint64
	hasBody bool
	hasData bool
}

var ops = "send, receipt, sync, history, friends, friend, presence, signal, ping"

// parseRequest validates one client frame at the boundary: well-formed JSON, a known op, every field of the
// right type and size. It never touches state. The relay has checked the frame's size already.
func parseRequest(data []byte, cfg *Config) (f request, werr *wire.Error) {
	if werr := proto.CheckJSON(data, "frame"); werr != nil {
		return f, werr
	}
	root := gjson.ParseBytes(data)
	if !root.IsObject() {
		return f, wire.Errorf(wire.CodeBadJSON, `frame must be a JSON object like {"op":"send",...}`)
	}
	var body, sigData, after gjson.Result
	root.ForEach(func(key, v gjson.Result) bool {
		switch key.Str {
		case "op":
			werr = wantString(v, "op", &f.op, 0)
		case "id":
			werr = wantString(v, "id", &f.id, wire.MaxIDBytes)
		case "to":
			werr = wantString(v, "to", &f.to, proto.MaxUserBytes)
		case "peer":
			werr = wantString(v, "peer", &f.peer, proto.MaxUserBytes)
		case "user":
			werr = wantString(v, "user", &f.user, proto.MaxUserBytes)
		case "device":
			werr = wantString(v, "device", &f.device, maxDeviceBytes)
		case "kind":
			werr = wantString(v, "kind", &f.kind, 0)
		case "hash":
			werr = wantString(v, "hash", &f.hash, maxHashBytes)
		case "action":
			werr = wantString(v, "action", &f.action, 0)
		case "status":
			werr = wantString(v, "status", &f.status, 0)
		case "seq":
			werr = wantNumber(v, "seq", &f.seq)
		case "before":
			werr = wantNumber(v, "before", &f.before)
		case "limit":
			var n uint64
			if werr = wantNumber(v, "limit", &n); werr == nil {
				f.limit = int(min(n, 1<<20))
			}
		case "body":
			body = v
		case "data":
			sigData = v
		case "after":
			after = v
		}
		return werr == nil
	})
	if werr != nil {
		return f, werr
	}
	switch f.op {
	case "send":
		werr = needAll(f.id != "", "send needs an \"id\": it matches the answer and makes a resend safe",
			f.to != "", `send needs "to": the user id of the recipient`,
			body.Exists(), `send needs "body": any JSON value, such as {"text":"hi"}`)
		if werr == nil {
			f.body, werr = sizedJSON(data, body, "body", cfg.MaxMessageBytes)
		}
	case "receipt":
		werr = needAll(f.peer != "", `receipt needs "peer": the other user of the conversation`,
			f.kind == KindDelivered || f.kind == KindRead, `receipt needs "kind": "delivered" or "read"`,
			f.seq > 0, `receipt needs "seq": the highest message sequence it covers (1 or more)`)
	case "sync":
		if after.Exists() {
			f.after, werr = parseAfter(after)
		}
	case "history":
		werr = needAll(f.peer != "", `history needs "peer": the other user of the conversation`)
	case "friends":
	case "friend":
		werr = needAll(f.user != "", `friend needs "user": whom the action is about`,
			f.action != "", `friend needs "action": request, accept, remove, block or unblock`)
	case "presence":
		werr = needAll(f.status == StatusAway || f.status == StatusOnline, `presence needs "status": "away" or "online"`)
	case "signal":
		werr = needAll(f.to != "", `signal needs "to": the user id of the peer`,
			sigData.Exists(), `signal needs "data": the offer, answer or ICE candidate (any JSON)`)
		if werr == nil {
			f.data, werr = sizedJSON(data, sigData, "data", cfg.MaxMessageBytes)
		}
		if werr == nil && f.device != "" && !ids.Valid(f.device, maxDeviceBytes) {
			werr = wire.Errorf(wire.CodeBadFrame, `"device" must be 1 to %d letters, digits, '-' or '_'`, maxDeviceBytes)
		}
	case "":
		werr = wire.Errorf(wire.CodeBadFrame, `frame has no "op"; use one of %s`, ops)
	default:
		werr = wire.Errorf(wire.CodeUnknownOp, "unknown op %q; use one of %s", proto.Clip(f.op), ops)
	}
	return f, werr
}

// needAll takes pairs (condition, message) and refuses with the first message whose condition is false.
func needAll(pairs ...any) *wire.Error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if !pairs[i].(bool) {
			return wire.Errorf(wire.CodeBadFrame, "%s", pairs[i+1].(string))
		}
	}
	return nil
}

func sizedJSON(data []byte, v gjson.Result, field string, max int) ([]byte, *wire.Error) {
	b := jsonx.Compact(jsonx.RawBytes(data, v))
	if len(b) > max {
		return nil, wire.Errorf(wire.CodeMessageTooLarge, "%q is %d bytes; the limit is %d (max_message_bytes)", field, len(b), max)
	}
	return b, nil
}

func parseAfter(v gjson.Result) (map[string]uint64, *wire.Error) {
	if !v.IsObject() {
		return nil, wire.Errorf(wire.CodeBadFrame, `"after" must be an object {"peer": sequence, …}`)
	}
	out := map[string]uint64{}
	var werr *wire.Error
	v.ForEach(func(k, n gjson.Result) bool {
		seq, ok := wire.Whole(n)
		if !ok || len(k.Str) == 0 || len(k.Str) > proto.MaxUserBytes {
			werr = wire.Errorf(wire.CodeBadFrame, `"after" must map user ids to whole numbers`)
			return false
		}
		out[k.Str] = seq
		return true
	})
	return out, werr
}

func wantString(v gjson.Result, field string, dst *string, max int) *wire.Error {
	if v.Type != gjson.String {
		return wire.Errorf(wire.CodeBadFrame, "field %q must be a string", field)
	}
	if max > 0 && (len(v.Str) == 0 || len(v.Str) > max) {
		return wire.Errorf(wire.CodeBadFrame, "field %q must be 1 to %d bytes", field, max)
	}
	*dst = v.Str
	return nil
}

func wantNumber(v gjson.Result, field string, dst *uint64) *wire.Error {
	n, ok := wire.Whole(v)
	if !ok {
		return wire.Errorf(wire.CodeBadFrame, "field %q must be a whole number from 0 to 2^53 in plain digits", field)
	}
	*dst = n
	return nil
}
