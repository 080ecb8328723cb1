package relay

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/jsonx"
	"github.com/rso-server/rso/internal/utf8x"
)

// Error codes the relay itself sends (docs/PROTOCOL.md §3.8); the messaging service sends the others.
// They are part of the protocol: never rename one.
const (
	CodeBadJSON       = "bad_json"
	CodeBadFrame      = "bad_frame"
	CodeFrameTooLarge = "frame_too_large"
	CodeRateLimited   = "rate_limited"
	CodeUnauthorized  = "unauthorized"
	CodeTokenExpired  = "token_expired"
	CodeUnavailable   = "unavailable"
)

const (
	maxIDBytes     = 64
	maxDeviceBytes = 64
)

func errorFrame(code, message, id string) []byte {
	b := make([]byte, 0, 96+len(message))
	b = append(b, `{"op":"error","code":`...)
	b = jsonx.AppendString(b, code)
	b = append(b, `,"message":`...)
	b = jsonx.AppendString(b, message)
	if id != "" {
		b = append(b, `,"id":`...)
		b = jsonx.AppendString(b, id)
	}
	return append(b, '}')
}

func pongFrame(id string) []byte {
	if id == "" {
		return []byte(`{"op":"pong"}`)
	}
	return append(jsonx.AppendString([]byte(`{"op":"pong","id":`), id), '}')
}

// closeFrame is the last frame a TCP client gets: the close code and reason a WebSocket carries in its
// close message.
func closeFrame(code int, text string) []byte {
	b, _ := json.Marshal(map[string]any{"op": "close", "code": code, "message": text})
	return b
}

// resyncFrame tells a client that deliveries may have been lost (the node lost NATS for a while).
var resyncFrame = []byte(`{"op":"resync"}`)

func (s *Server) helloFrame(c *conn, serviceLimits json.RawMessage) []byte {
	l := s.cfg.Limits
	limits := map[string]any{}
	json.Unmarshal(serviceLimits, &limits)
	limits["max_frame_bytes"] = l.MaxFrameBytes
	limits["frames_per_second"] = l.FramesPerSecond
	limits["messages_per_second"] = l.MessagesPerSecond
	limits["presence_grace_ms"] = s.cfg.PresenceGrace.Milliseconds()
	b, _ := json.Marshal(struct {
		Op      string         `json:"op"`
		Session string         `json:"session"`
		User    string         `json:"user"`
		Device  string         `json:"device"`
		Limits  map[string]any `json:"limits"`
	}{"hello", c.id, c.ident.User, c.device, limits})
	return b
}

// refusal is why a client frame is refused: a code of docs/PROTOCOL.md §3.8 and what to fix.
type refusal struct{ code, message string }

// checkFrame is the relay's boundary check of one client frame, the same for WebSocket and TCP: its size,
// JSON, UTF-8 (gjson does not look inside strings, and a browser fails its socket on a text frame that
// is not UTF-8, so nothing invalid may be stored or relayed), an object, and an "id", when there is one,
// of 1 to maxIDBytes bytes. It returns the frame's op and id; id is set for a refusal too when it could be read.
func checkFrame(raw []byte, maxFrame int) (op, id string, r *refusal) {
	if len(raw) > maxFrame {
		return "", peekID(raw), &refusal{CodeFrameTooLarge, tooLargeText(len(raw), maxFrame)}
	}
	if !gjson.ValidBytes(raw) {
		return "", "", &refusal{CodeBadJSON, "frame is not valid JSON"}
	}
	id = peekID(raw)
	if !utf8.Valid(raw) {
		return "", id, &refusal{CodeBadJSON, utf8x.InvalidFrame}
	}
	root := gjson.ParseBytes(raw)
	if !root.IsObject() {
		return "", "", &refusal{CodeBadJSON, `frame must be a JSON object like {"op":"send",...}`}
	}
	if v := root.Get("id"); v.Exists() && (v.Type != gjson.String || len(v.Str) == 0 || len(v.Str) > maxIDBytes) {
		return "", "", &refusal{CodeBadFrame, fmt.Sprintf(`field "id" must be a string of 1 to %d bytes`, maxIDBytes)}
	}
	return root.Get("op").Str, id, nil
}

func tooLargeText(size, max int) string {
	return fmt.Sprintf("frame is %d bytes; the limit is %d (max_frame_bytes)", size, max)
}

// peekID finds a refused frame's id, so that the client can fail that request at once.
func peekID(raw []byte) string {
	id := gjson.GetBytes(raw, "id")
	if id.Type == gjson.String && len(id.Str) > 0 && len(id.Str) <= maxIDBytes {
		return id.Str
	}
	return ""
}
