package relay

import (
	"encoding/json"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/jsonx"
)

// Error codes the relay itself sends (docs/PROTOCOL.md §3.7); the messaging service sends the others.
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

// peekID finds a refused frame's id, so that the client can fail that request at once.
func peekID(raw []byte) string {
	id := gjson.GetBytes(raw, "id")
	if id.Type == gjson.String && len(id.Str) > 0 && len(id.Str) <= maxIDBytes {
		return id.Str
	}
	return ""
}
