package relay

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/chatbus"
	"github.com/rso-server/rso/internal/utf8x"
	"github.com/rso-server/rso/internal/wire"
)

const maxDeviceBytes = 64

// errorFrame refuses the request id (docs/PROTOCOL.md §3.8).
func errorFrame(code, message, id string) []byte {
	return wire.ErrorFrame(&wire.Error{Code: code, Message: message}, id)
}

// closeFrame is the last frame a TCP client gets: the close code and reason a WebSocket carries in its
// close message.
func closeFrame(code int, text string) []byte {
	b, _ := json.Marshal(map[string]any{"op": "close", "code": code, "message": text})
	return b
}

// resyncFrame tells a client that deliveries may have been lost (the node lost NATS for a while).
var resyncFrame = []byte(`{"op":"resync"}`)

func (s *Server) helloFrame(c *conn, service *chatbus.ServiceLimits) []byte {
	l := s.cfg.Limits
	b, _ := json.Marshal(struct {
		Op      string `json:"op"`
		Session string `json:"session"`
		User    string `json:"user"`
		Device  string `json:"device"`
		Limits  any    `json:"limits"`
	}{"hello", c.id, c.ident.User, c.device, struct {
		*chatbus.ServiceLimits
		MaxFrameBytes     int     `json:"max_frame_bytes"`
		FramesPerSecond   float64 `json:"frames_per_second"`
		MessagesPerSecond float64 `json:"messages_per_second"`
		PresenceGraceMs   int64   `json:"presence_grace_ms"`
	}{service, l.MaxFrameBytes, l.FramesPerSecond, l.MessagesPerSecond, s.cfg.PresenceGrace.Milliseconds()}})
	return b
}

// refusal is why a client frame is refused: a code of docs/PROTOCOL.md §3.8 and what to fix.
type refusal struct{ code, message string }

// checkFrame is the relay's boundary check of one client frame, the same for WebSocket and TCP: its size,
// JSON, UTF-8 (gjson does not look inside strings, and a browser fails its socket on a text frame that
// is not UTF-8, so nothing invalid may be stored or relayed), an object, and an "id", when there is one,
// of 1 to wire.MaxIDBytes bytes. It returns the frame's op and id; id is set for a refusal too when it could be read.
func checkFrame(raw []byte, maxFrame int) (op, id string, r *refusal) {
	if len(raw) > maxFrame {
		return "", wire.PeekID(raw), &refusal{wire.CodeFrameTooLarge, tooLargeText(len(raw), maxFrame)}
	}
	if !gjson.ValidBytes(raw) {
		return "", "", &refusal{wire.CodeBadJSON, "frame is not valid JSON"}
	}
	id = wire.PeekID(raw)
	if !utf8.Valid(raw) {
		return "", id, &refusal{wire.CodeBadJSON, utf8x.InvalidFrame}
	}
	root := gjson.ParseBytes(raw)
	if !root.IsObject() {
		return "", "", &refusal{wire.CodeBadJSON, `frame must be a JSON object like {"op":"send",...}`}
	}
	if v := root.Get("id"); v.Exists() && (v.Type != gjson.String || len(v.Str) == 0 || len(v.Str) > wire.MaxIDBytes) {
		return "", "", &refusal{wire.CodeBadFrame, fmt.Sprintf(`field "id" must be a string of 1 to %d bytes`, wire.MaxIDBytes)}
	}
	return root.Get("op").Str, id, nil
}

func tooLargeText(size, max int) string {
	return fmt.Sprintf("frame is %d bytes; the limit is %d (max_frame_bytes)", size, max)
}
