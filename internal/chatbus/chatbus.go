// Package chatbus is the contract between the relay (which holds the clients' sockets) and the messaging
// service on NATS (docs/PROTOCOL.md §3.10): the subjects, the headers and the messages both sides send,
// defined once. The relay and the messaging service never import each other; both import this.
package chatbus

import (
	"encoding/base64"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/jsonx"
	"github.com/rso-server/rso/internal/wire"
)

// Subjects and headers.
const (
	// Relay → messaging service (queue group QueueMessaging, so any instance serves).
	SubjFrame = "rso.p2p.frame" // request: an Envelope; the reply holds the frames for that connection
	SubjHello = "rso.p2p.hello" // request: Presence of a connection that opened; the reply is a Reply
	SubjBye   = "rso.p2p.bye"   // request: Presence of a user whose last connection on a node is gone (after the grace)

	// Messaging service → relays.
	SubjUserPrefix = "rso.p2p.user." // + UserToken: frames for every connection of that user
	SubjLivePrefix = "rso.p2p.live." // + UserToken: a request (a signal) each node with connections of the user answers once written

	QueueMessaging = "rso-p2p"

	// On SubjUserPrefix messages.
	HdrExceptConn = "Rso-Except-Conn" // skip this connection (the one that caused the frames)
	HdrDevice     = "Rso-Device"      // write only to connections of this device

	// HdrRefused on a reply to SubjFrame says that the frame was refused for what the client sent: the
	// reply is an error frame, and the relay counts it toward the client's budget of refused frames. A
	// refusal for the service's own state (busy, unavailable, internal) is not flagged.
	HdrRefused = "Rso-Refused"

	// BucketNodes holds one key per live relay node (memory, TTL), refreshed every heartbeat by the relay
	// and read by the messaging service to take a dead node's users offline.
	BucketNodes = "RSO_RELAY_NODES"
)

// UserToken turns a user id (any 1–200 bytes) into one subject token: unpadded base64url.
func UserToken(user string) string { return base64.RawURLEncoding.EncodeToString([]byte(user)) }

// Presence is the body of SubjHello and SubjBye: a connection (Conn, Device) of User on relay Node. A hello
// with Conn empty re-announces a user after a reconnect.
type Presence struct {
	User   string `json:"user"`
	Device string `json:"device,omitempty"`
	Conn   string `json:"conn,omitempty"`
	Node   string `json:"node"`
}

// Reply answers SubjHello (Limits) and SubjBye (nothing), or refuses either (Error).
type Reply struct {
	Limits *ServiceLimits `json:"limits,omitempty"`
	Error  *wire.Error    `json:"error,omitempty"`
}

// ServiceLimits are the messaging service's limits, which the relay adds to its hello frame
// (docs/PROTOCOL.md §3.1).
type ServiceLimits struct {
	DuplicateWindowMs int64 `json:"duplicate_window_ms"`
	FriendsOnly       bool  `json:"friends_only"`
	HistoryLimit      int   `json:"history_limit"`
	MaxHistoryLimit   int   `json:"max_history_limit"`
	MaxMessageBytes   int   `json:"max_message_bytes"`
	SyncMaxMessages   int   `json:"sync_max_messages"`
}

// Envelope is one checked client frame with who sent it, the body of SubjFrame.
type Envelope struct {
	User   string
	Device string
	Conn   string // the connection, unique in the cluster
	Node   string // the relay node that holds it
	Frame  []byte // the client's frame: a JSON object, as the client sent it
}

// AppendEnvelope appends e as {"user","device","conn","node","frame"}. The frame is copied as it is: the
// relay has checked it (valid UTF-8 JSON object, within its size).
func AppendEnvelope(b []byte, e *Envelope) []byte {
	b = append(b, `{"user":`...)
	b = jsonx.AppendString(b, e.User)
	b = append(b, `,"device":`...)
	b = jsonx.AppendString(b, e.Device)
	b = append(b, `,"conn":`...)
	b = jsonx.AppendString(b, e.Conn)
	b = append(b, `,"node":`...)
	b = jsonx.AppendString(b, e.Node)
	b = append(b, `,"frame":`...)
	b = append(b, e.Frame...)
	return append(b, '}')
}

var errBadEnvelope = errors.New(`relay envelope must be {"user","device","conn","node": strings, "frame": an object} with a user`)

// ParseEnvelope reads an envelope. data must already be valid UTF-8 JSON (checked at the boundary); an
// envelope of the wrong shape is refused, with the frame's id when it could be read.
func ParseEnvelope(data []byte) (*Envelope, string, error) {
	r := gjson.ParseBytes(data)
	frame := r.Get("frame")
	id := ""
	if frame.IsObject() {
		id = wire.PeekID([]byte(frame.Raw))
	}
	e := &Envelope{Frame: []byte(frame.Raw)}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"user", &e.User}, {"device", &e.Device}, {"conn", &e.Conn}, {"node", &e.Node}} {
		v := r.Get(f.name)
		if v.Exists() && v.Type != gjson.String {
			return nil, id, errBadEnvelope
		}
		*f.dst = v.Str
	}
	if !r.IsObject() || !frame.IsObject() || e.User == "" {
		return nil, id, errBadEnvelope
	}
	return e, id, nil
}

// FrameReply is the answer to an Envelope: frames for the sending connection, separated by '\n' (none:
// nothing to write), marked when they refuse the frame for what the client sent.
func FrameReply(frames []byte, refused bool) *nats.Msg {
	m := &nats.Msg{Data: frames}
	if refused {
		m.Header = nats.Header{HdrRefused: []string{"1"}}
	}
	return m
}

// Refused reports whether a reply to an Envelope refuses the frame.
func Refused(m *nats.Msg) bool { return m.Header.Get(HdrRefused) != "" }
