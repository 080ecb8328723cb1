package sharedobject

import (
	"strconv"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/jsonx"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/sharedobject/internal/model"
)

// clientFrame is one decoded client frame. Fields not used by its op are zero.
type clientFrame struct {
	op         string
	obj        string
	persistent bool
	id         string
	version    uint64
	epoch      string
	changes    []model.Change
	handler    string
	args       []byte
}

// parseClientFrame validates one frame at the boundary: well-formed JSON, a known op, every field of the
// right type and size. It never touches state.
func parseClientFrame(data []byte, lim *Limits) (f clientFrame, werr *wire.Error) {
	if len(data) > lim.MaxFrameBytes {
		return f, wire.Errorf(wire.CodeFrameTooLarge, "frame is %d bytes; the limit is %d (max_frame_bytes)", len(data), lim.MaxFrameBytes)
	}
	if !gjson.ValidBytes(data) {
		return f, wire.Errorf(wire.CodeBadJSON, "frame is not valid JSON")
	}
	// JSON validity does not cover the bytes inside strings, and a value relayed to browsers must be
	// UTF-8 (RFC 6455 §8.1), or every subscriber's socket would fail on it.
	if !utf8.Valid(data) {
		return f, wire.Errorf(wire.CodeBadJSON, "frame is not valid UTF-8")
	}
	root := gjson.ParseBytes(data)
	if !root.IsObject() {
		return f, wire.Errorf(wire.CodeBadJSON, "frame must be a JSON object like {\"op\":\"sub\",...}")
	}
	var changes, args gjson.Result
	root.ForEach(func(key, v gjson.Result) bool {
		switch key.Str {
		case "op":
			werr = wantString(v, "op", &f.op)
		case "obj":
			werr = wantString(v, "obj", &f.obj)
		case "persistent":
			if v.Type != gjson.True && v.Type != gjson.False {
				werr = wire.Errorf(wire.CodeBadFrame, "field \"persistent\" must be true or false")
			}
			f.persistent = v.Type == gjson.True
		case "id":
			werr = wantString(v, "id", &f.id)
			if werr == nil && (len(f.id) == 0 || len(f.id) > wire.MaxIDBytes) {
				werr = wire.Errorf(wire.CodeBadFrame, "field \"id\" must be 1 to %d bytes", wire.MaxIDBytes)
			}
		case "version":
			f.version, werr = wantVersion(v, "version")
		case "epoch":
			werr = wantString(v, "epoch", &f.epoch)
		case "changes":
			changes = v
		case "handler":
			werr = wantString(v, "handler", &f.handler)
		case "args":
			args = v
		}
		return werr == nil
	})
	if werr != nil {
		return f, werr
	}
	switch f.op {
	case "ping":
		return f, nil
	case "sub", "unsub", "update", "send":
	case "":
		return f, wire.Errorf(wire.CodeBadFrame, "frame has no \"op\"; use one of sub, unsub, update, send, ping")
	default:
		return f, wire.Errorf(wire.CodeUnknownOp, "unknown op %q; use one of sub, unsub, update, send, ping", f.op)
	}
	if !validName(f.obj, lim.MaxNameBytes) {
		return f, wire.Errorf(wire.CodeBadName, "object name %q must be 1 to %d bytes of UTF-8 without spaces or control characters", clip(f.obj), lim.MaxNameBytes)
	}
	switch f.op {
	case "update":
		if f.id == "" {
			return f, wire.Errorf(wire.CodeBadFrame, "update needs an \"id\" so that its answer can be matched and a retry is applied once")
		}
		f.changes, werr = parseChanges(data, changes, lim)
	case "send":
		if !validName(f.handler, lim.MaxNameBytes) {
			return f, wire.Errorf(wire.CodeBadName, "handler %q must be 1 to %d bytes of UTF-8 without spaces or control characters", clip(f.handler), lim.MaxNameBytes)
		}
		switch {
		case !args.Exists():
			f.args = []byte("[]")
		case !args.IsArray():
			return f, wire.Errorf(wire.CodeBadFrame, "field \"args\" must be a JSON array")
		default:
			f.args = jsonx.Compact(jsonx.RawBytes(data, args))
		}
	}
	return f, werr
}

func parseChanges(data []byte, list gjson.Result, lim *Limits) ([]model.Change, *wire.Error) {
	if !list.IsArray() {
		return nil, wire.Errorf(wire.CodeBadFrame, "update needs \"changes\": a non-empty array of {\"name\",\"base\",\"value\"} or {\"name\",\"base\",\"delete\":true}")
	}
	var out []model.Change
	var werr *wire.Error
	seen := map[string]bool{}
	list.ForEach(func(_, item gjson.Result) bool {
		if len(out) >= lim.MaxChanges {
			werr = wire.Errorf(wire.CodeTooManyChanges, "update has more than %d changes (max_changes); split it", lim.MaxChanges)
			return false
		}
		if !item.IsObject() {
			werr = wire.Errorf(wire.CodeBadFrame, "changes[%d] must be an object", len(out))
			return false
		}
		var c model.Change
		var value gjson.Result
		haveBase := false
		item.ForEach(func(key, v gjson.Result) bool {
			switch key.Str {
			case "name":
				werr = wantString(v, "changes[].name", &c.Name)
			case "base":
				haveBase = true
				c.Base, werr = wantVersion(v, "changes[].base")
			case "value":
				value = v
			case "delete":
				if v.Type != gjson.True && v.Type != gjson.False {
					werr = wire.Errorf(wire.CodeBadFrame, "changes[%d].delete must be true or false", len(out))
				}
				c.Delete = v.Type == gjson.True
			}
			return werr == nil
		})
		if werr != nil {
			return false
		}
		switch {
		case !validName(c.Name, lim.MaxNameBytes):
			werr = wire.Errorf(wire.CodeBadName, "slot name %q must be 1 to %d bytes of UTF-8 without spaces or control characters", clip(c.Name), lim.MaxNameBytes)
		case !haveBase:
			werr = wire.Errorf(wire.CodeBadFrame, "changes[%d] has no \"base\": send the object version you last saw (0 if none)", len(out))
		case seen[c.Name]:
			werr = wire.Errorf(wire.CodeBadFrame, "slot %q appears twice in one update", c.Name)
		case c.Delete && value.Exists():
			werr = wire.Errorf(wire.CodeBadFrame, "changes[%d] has both \"value\" and \"delete\"; choose one", len(out))
		case !c.Delete && !value.Exists():
			werr = wire.Errorf(wire.CodeBadFrame, "changes[%d] has no \"value\"; to remove a slot send \"delete\":true", len(out))
		}
		if werr != nil {
			return false
		}
		if !c.Delete {
			c.Value = jsonx.Compact(jsonx.RawBytes(data, value))
			if len(c.Value) > lim.MaxValueBytes {
				werr = wire.Errorf(wire.CodeValueTooLarge, "slot %q value is %d bytes; the limit is %d (max_value_bytes)", c.Name, len(c.Value), lim.MaxValueBytes)
				return false
			}
		}
		seen[c.Name] = true
		out = append(out, c)
		return true
	})
	if werr == nil && len(out) == 0 {
		werr = wire.Errorf(wire.CodeBadFrame, "update has no changes")
	}
	return out, werr
}

func wantString(v gjson.Result, field string, dst *string) *wire.Error {
	if v.Type != gjson.String {
		return wire.Errorf(wire.CodeBadFrame, "field %q must be a string", field)
	}
	*dst = v.Str
	return nil
}

func wantVersion(v gjson.Result, field string) (uint64, *wire.Error) {
	n, ok := wire.Whole(v)
	if !ok {
		return 0, wire.Errorf(wire.CodeBadFrame, "field %q must be a whole number from 0 to 2^53 in plain digits", field)
	}
	return n, nil
}

// clip shortens untrusted text quoted back in an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Server → client frames, appended by hand: they are built once per event and shared by every subscriber.

func appendObjHeader(b []byte, op, obj string, persistent bool) []byte {
	b = append(b, `{"op":"`...)
	b = append(b, op...)
	b = append(b, `","obj":`...)
	b = jsonx.AppendString(b, obj)
	b = append(b, `,"persistent":`...)
	return appendBool(b, persistent)
}

// syncFrame builds a sync frame; entries are appended by the caller between begin and end.
type syncFrame struct{ b []byte }

func beginSync(obj string, persistent bool, epoch string, version uint64, id string) syncFrame {
	b := make([]byte, 0, 256)
	b = appendObjHeader(b, "sync", obj, persistent)
	b = append(b, `,"epoch":`...)
	b = jsonx.AppendString(b, epoch)
	b = append(b, `,"version":`...)
	b = jsonx.AppendUint(b, version)
	if id != "" {
		b = append(b, `,"id":`...)
		b = jsonx.AppendString(b, id)
	}
	b = append(b, `,"changes":[`...)
	return syncFrame{b}
}

func (s *syncFrame) sep() {
	if s.b[len(s.b)-1] != '[' {
		s.b = append(s.b, ',')
	}
}

func (s *syncFrame) clear() {
	s.sep()
	s.b = append(s.b, `{"code":"clear"}`...)
}

func (s *syncFrame) event(e model.Event) {
	s.sep()
	s.b = append(s.b, `{"code":"`...)
	s.b = append(s.b, e.Code...)
	s.b = append(s.b, `","name":`...)
	s.b = jsonx.AppendString(s.b, e.Name)
	if e.Code == "change" {
		s.b = append(s.b, `,"value":`...)
		s.b = append(s.b, e.Value...)
	}
	if e.OldValue != nil {
		s.b = append(s.b, `,"oldValue":`...)
		s.b = append(s.b, e.OldValue...)
	}
	s.b = append(s.b, '}')
}

func (s *syncFrame) success(name string) {
	s.sep()
	s.b = append(s.b, `{"code":"success","name":`...)
	s.b = jsonx.AppendString(s.b, name)
	s.b = append(s.b, '}')
}

func (s *syncFrame) reject(name string, value []byte, exists bool, reason string) {
	s.sep()
	s.b = append(s.b, `{"code":"reject","name":`...)
	s.b = jsonx.AppendString(s.b, name)
	if exists {
		s.b = append(s.b, `,"value":`...)
		s.b = append(s.b, value...)
	}
	s.b = append(s.b, `,"reason":`...)
	s.b = jsonx.AppendString(s.b, reason)
	s.b = append(s.b, '}')
}

func (s *syncFrame) end() []byte { return append(s.b, "]}"...) }

func messageFrame(obj string, persistent bool, m *model.Message) []byte {
	b := make([]byte, 0, 128+len(m.Args))
	b = appendObjHeader(b, "message", obj, persistent)
	b = append(b, `,"handler":`...)
	b = jsonx.AppendString(b, m.Handler)
	b = append(b, `,"args":`...)
	b = append(b, m.Args...)
	b = append(b, `,"from":`...)
	b = jsonx.AppendString(b, m.User)
	if m.ID != "" {
		b = append(b, `,"id":`...)
		b = jsonx.AppendString(b, m.ID)
	}
	return append(b, '}')
}

func appendBool(b []byte, v bool) []byte { return strconv.AppendBool(b, v) }

func errorFrame(e *wire.Error, id, obj string, persistent bool) []byte {
	b := wire.AppendErrorFrame(make([]byte, 0, 128), e, id)
	if obj != "" {
		b = append(b, `,"obj":`...)
		b = jsonx.AppendString(b, obj)
		b = append(b, `,"persistent":`...)
		b = appendBool(b, persistent)
	}
	return append(b, '}')
}
