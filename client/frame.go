package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rso-server/rso/internal/wire"
	"github.com/tidwall/gjson"
)

// Hello is the server's first frame: who the connection is and the limits it must respect.
type Hello struct {
	Session string
	User    string
	Limits  Limits
}

// Limits are the per-connection limits announced in hello (docs/PROTOCOL.md 1.1, 1.7).
type Limits struct {
	MaxFrameBytes    int     `json:"max_frame_bytes"`
	MaxValueBytes    int     `json:"max_value_bytes"`
	MaxSlots         int     `json:"max_slots"`
	MaxObjectBytes   int     `json:"max_object_bytes"`
	MaxChanges       int     `json:"max_changes"`
	MaxSubscriptions int     `json:"max_subscriptions"`
	MaxNameBytes     int     `json:"max_name_bytes"`
	FramesPerSecond  float64 `json:"frames_per_second"`
	ResyncWindow     int     `json:"resync_window"`
}

// Change is one slot change in an update: a set of Value, or a delete when Delete is true.
// Base is the object version the caller last saw. A nil Value in a set stores JSON null.
type Change struct {
	Name   string
	Base   uint64
	Value  json.RawMessage
	Delete bool
}

// Sync entry codes (docs/PROTOCOL.md 1.4).
const (
	CodeClear   = "clear"
	CodeChange  = "change"
	CodeDelete  = "delete"
	CodeSuccess = "success"
	CodeReject  = "reject"
)

// SyncEntry is one entry of a sync frame. Value and OldValue are nil when absent.
type SyncEntry struct {
	Code     string
	Name     string
	Value    json.RawMessage
	OldValue json.RawMessage
	Reason   string
}

// Sync is a sync frame: state changes, or the answer to a sub or an update (ID set for updates).
type Sync struct {
	Obj        string
	Persistent bool
	Epoch      string
	Version    uint64
	ID         string
	Changes    []SyncEntry
}

// Message is a message frame: a send by anyone on an object this connection subscribed, the sender included.
type Message struct {
	Obj        string
	Persistent bool
	Handler    string
	Args       json.RawMessage // the JSON array as sent
	From       string          // the sender's user id
	ID         string          // the sender's request id, if it gave one
}

// Error codes of error frames (docs/PROTOCOL.md 1.7): the server's own table.
const (
	ErrCodeBadJSON              = wire.CodeBadJSON
	ErrCodeBadFrame             = wire.CodeBadFrame
	ErrCodeUnknownOp            = wire.CodeUnknownOp
	ErrCodeBadName              = wire.CodeBadName
	ErrCodeFrameTooLarge        = wire.CodeFrameTooLarge
	ErrCodeValueTooLarge        = wire.CodeValueTooLarge
	ErrCodeTooManyChanges       = wire.CodeTooManyChanges
	ErrCodeTooManySlots         = wire.CodeTooManySlots
	ErrCodeObjectTooLarge       = wire.CodeObjectTooLarge
	ErrCodeTooManySubscriptions = wire.CodeTooManySubscriptions
	ErrCodeNotSubscribed        = wire.CodeNotSubscribed
	ErrCodeForbidden            = wire.CodeForbidden
	ErrCodeRateLimited          = wire.CodeRateLimited
	ErrCodeHookUnavailable      = wire.CodeHookUnavailable
	ErrCodeBusy                 = wire.CodeBusy
	ErrCodeUnavailable          = wire.CodeUnavailable
	ErrCodeInternal             = wire.CodeInternal
	ErrCodeUnauthorized         = wire.CodeUnauthorized // only in the body of a refused upgrade (HTTP 401)
)

// ServerError is an error frame: the server refused one frame and applied nothing of it.
type ServerError struct {
	Code       string
	Message    string
	ID         string
	Obj        string
	Persistent bool
}

func (e *ServerError) Error() string {
	if e.ID != "" {
		return fmt.Sprintf("server refused request %s: %s: %s", e.ID, e.Code, e.Message)
	}
	return fmt.Sprintf("server refused a frame: %s: %s", e.Code, e.Message)
}

// Event is a frame nobody waited for. Exactly one of Sync, Message and Error is set.
type Event struct {
	Sync    *Sync
	Message *Message
	Error   *ServerError
	Recv    time.Time // when the WebSocket message holding the frame was read
}

// frame is one decoded server frame. Unknown ops come back with only op set, to be skipped.
type frame struct {
	op    string
	id    string // pong
	hello Hello
	ev    Event
}

// fields holds the top-level members of a frame; one pass over the object fills it.
type fields struct {
	op, obj, persistent, epoch, version, id, changes  gjson.Result
	handler, args, from, code, message, session, user gjson.Result
	limits                                            gjson.Result
}

// parseFrame decodes one frame (one '\n'-separated piece of a WebSocket message). It checks the fields the
// protocol requires for the op, so a server bug shows up as an error here rather than as a zero value later.
func parseFrame(s string) (frame, error) {
	if !gjson.Valid(s) {
		return frame{}, errors.New("not valid JSON")
	}
	root := gjson.Parse(s)
	if !root.IsObject() {
		return frame{}, errors.New("not a JSON object")
	}
	var f fields
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "op":
			f.op = v
		case "obj":
			f.obj = v
		case "persistent":
			f.persistent = v
		case "epoch":
			f.epoch = v
		case "version":
			f.version = v
		case "id":
			f.id = v
		case "changes":
			f.changes = v
		case "handler":
			f.handler = v
		case "args":
			f.args = v
		case "from":
			f.from = v
		case "code":
			f.code = v
		case "message":
			f.message = v
		case "session":
			f.session = v
		case "user":
			f.user = v
		case "limits":
			f.limits = v
		}
		return true
	})
	var p parser
	op := p.str(f.op, "op", true)
	if p.err != nil {
		return frame{}, p.err
	}
	fr := frame{op: op}
	switch op {
	case "hello":
		fr.hello.Session = p.str(f.session, "session", true)
		fr.hello.User = p.str(f.user, "user", true)
		if !f.limits.IsObject() {
			p.fail("limits", "an object")
		} else if err := json.Unmarshal([]byte(f.limits.Raw), &fr.hello.Limits); err != nil {
			p.fail("limits", "an object of numbers")
		}
	case "pong":
		fr.id = p.str(f.id, "id", false)
	case "sync":
		fr.ev.Sync = &Sync{
			Obj:        p.str(f.obj, "obj", true),
			Persistent: p.bool(f.persistent, "persistent"),
			Epoch:      p.str(f.epoch, "epoch", true),
			Version:    p.version(f.version),
			ID:         p.str(f.id, "id", false),
			Changes:    p.entries(f.changes),
		}
	case "message":
		fr.ev.Message = &Message{
			Obj:        p.str(f.obj, "obj", true),
			Persistent: p.bool(f.persistent, "persistent"),
			Handler:    p.str(f.handler, "handler", true),
			From:       p.str(f.from, "from", true),
			ID:         p.str(f.id, "id", false),
		}
		if !f.args.IsArray() {
			p.fail("args", "an array")
		}
		fr.ev.Message.Args = json.RawMessage(f.args.Raw)
	case "error":
		fr.ev.Error = &ServerError{
			Code:       p.str(f.code, "code", true),
			Message:    p.str(f.message, "message", true),
			ID:         p.str(f.id, "id", false),
			Obj:        p.str(f.obj, "obj", false),
			Persistent: p.bool(f.persistent, "persistent"),
		}
	}
	if p.err != nil {
		return frame{}, fmt.Errorf("%s frame: %w", op, p.err)
	}
	return fr, nil
}

// parser keeps the first field error so the decoding above reads as a list of fields.
type parser struct{ err error }

func (p *parser) fail(field, want string) {
	if p.err == nil {
		p.err = fmt.Errorf("field %q must be %s", field, want)
	}
}

func (p *parser) str(v gjson.Result, field string, required bool) string {
	if v.Type == gjson.String {
		return v.Str
	}
	if v.Exists() || required {
		p.fail(field, "a string")
	}
	return ""
}

// bool reads an optional boolean; absent means false (1.2: persistent false or absent).
func (p *parser) bool(v gjson.Result, field string) bool {
	if v.Exists() && !v.IsBool() {
		p.fail(field, "true or false")
	}
	return v.Bool()
}

func (p *parser) version(v gjson.Result) uint64 {
	// Parse the raw text: Num is a float64 and would accept 1.5 or round large values.
	n, err := strconv.ParseUint(v.Raw, 10, 64)
	if v.Type != gjson.Number || err != nil || n >= 1<<53 {
		p.fail("version", "an integer in [0, 2^53)")
	}
	return n
}

func (p *parser) entries(v gjson.Result) []SyncEntry {
	if !v.IsArray() {
		p.fail("changes", "an array")
		return nil
	}
	var out []SyncEntry
	v.ForEach(func(_, e gjson.Result) bool {
		if !e.IsObject() {
			p.fail("changes", "an array of objects")
			return false
		}
		var se SyncEntry
		var name, value gjson.Result
		e.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "code":
				se.Code = p.str(v, "changes.code", true)
			case "name":
				name = v
			case "value":
				value = v
				se.Value = json.RawMessage(v.Raw)
			case "oldValue":
				se.OldValue = json.RawMessage(v.Raw)
			case "reason":
				se.Reason = p.str(v, "changes.reason", false)
			}
			return true
		})
		if se.Code == "" {
			p.fail("changes.code", "a string")
		}
		if se.Code != CodeClear { // an unknown code may lack a name (forward compatibility)
			se.Name = p.str(name, "changes.name", isKnownCode(se.Code))
		}
		if se.Code == CodeChange && !value.Exists() {
			p.fail("changes.value", "present in a change")
		}
		out = append(out, se)
		return p.err == nil
	})
	return out
}

func isKnownCode(c string) bool {
	return c == CodeChange || c == CodeDelete || c == CodeSuccess || c == CodeReject
}

// Frame builders append to b. Strings are escaped by gjson as encoding/json would: invalid UTF-8
// becomes U+FFFD.

func appendHead(b []byte, op, obj string, persistent bool) []byte {
	b = append(b, `{"op":"`...)
	b = append(b, op...)
	b = append(b, `","obj":`...)
	b = gjson.AppendJSONString(b, obj)
	b = append(b, `,"persistent":`...)
	return strconv.AppendBool(b, persistent)
}

func appendSub(b []byte, id, obj string, persistent bool, version uint64, epoch string) []byte {
	b = appendHead(b, "sub", obj, persistent)
	b = appendField(b, "id", id)
	if version > 0 || epoch != "" {
		b = append(b, `,"version":`...)
		b = strconv.AppendUint(b, version, 10)
	}
	if epoch != "" {
		b = appendField(b, "epoch", epoch)
	}
	return append(b, '}')
}

func appendUpdate(b []byte, id, obj string, persistent bool, changes []Change) ([]byte, error) {
	b = appendHead(b, "update", obj, persistent)
	b = appendField(b, "id", id)
	b = append(b, `,"changes":[`...)
	for i, c := range changes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = gjson.AppendJSONString(b, c.Name)
		b = append(b, `,"base":`...)
		b = strconv.AppendUint(b, c.Base, 10)
		if c.Delete {
			b = append(b, `,"delete":true}`...)
			continue
		}
		b = append(b, `,"value":`...)
		var err error
		if b, err = appendValue(b, c.Value); err != nil {
			return nil, fmt.Errorf("client: change %q: %w", c.Name, err)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...), nil
}

// appendValue appends a JSON value. It is checked here because an invalid value would make the whole frame
// invalid, and the server's bad_json answer could not name the request. Values with newlines are compacted:
// a raw '\n' would split the frame in two (1.1).
func appendValue(b []byte, v json.RawMessage) ([]byte, error) {
	if v == nil {
		return append(b, "null"...), nil
	}
	if !gjson.ValidBytes(v) {
		return nil, errors.New("value is not valid JSON; use WriteRaw to send malformed frames")
	}
	if bytes.ContainsAny(v, "\r\n") {
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			return nil, fmt.Errorf("value is not valid JSON: %w", err)
		}
		v = buf.Bytes()
	}
	return append(b, v...), nil
}

func appendSend(b []byte, id, obj string, persistent bool, handler string, args []byte) []byte {
	b = appendHead(b, "send", obj, persistent)
	b = appendField(b, "id", id)
	b = appendField(b, "handler", handler)
	b = append(b, `,"args":`...)
	return append(append(b, args...), '}')
}

func appendPing(b []byte, id string) []byte {
	b = append(b, `{"op":"ping"`...)
	return append(appendField(b, "id", id), '}')
}

func appendField(b []byte, name, value string) []byte {
	b = append(append(append(b, `,"`...), name...), `":`...)
	return gjson.AppendJSONString(b, value)
}
