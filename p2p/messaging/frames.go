package messaging

import (
	"github.com/rso-server/rso/internal/jsonx"
	"github.com/rso-server/rso/internal/wire"
)

const (
	maxDeviceBytes = 64
	maxNodeIDBytes = 64 // a relay node id, as cmd/rso -node-id allows
	maxHashBytes   = 64
)

// Receipt kinds.
const (
	KindDelivered = "delivered"
	KindRead      = "read"
)

// Presence statuses.
const (
	StatusOnline  = "online"
	StatusAway    = "away"
	StatusOffline = "offline"
)

// Server → client frames, appended by hand.

func errorFrame(e *wire.Error, id string) []byte { return wire.ErrorFrame(e, id) }

func okFrame(id string) []byte {
	if id == "" {
		return nil // nothing to answer: the client did not ask for an answer
	}
	return append(jsonx.AppendString([]byte(`{"op":"ok","id":`), id), '}')
}

func sentFrame(id, to string, seq uint64, ts int64, duplicate bool) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"op":"sent","id":`...)
	b = jsonx.AppendString(b, id)
	b = append(b, `,"to":`...)
	b = jsonx.AppendString(b, to)
	b = append(b, `,"seq":`...)
	b = jsonx.AppendUint(b, seq)
	b = append(b, `,"ts":`...)
	b = appendInt(b, ts)
	if duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	return append(b, '}')
}

// storedRecord is a message as kept in the stream: {"from","to","cid","ts","body"}. The sequence is the
// last token of its subject.
func storedRecord(from, to, cid string, ts int64, body []byte) []byte {
	b := make([]byte, 0, 64+len(from)+len(to)+len(cid)+len(body))
	b = append(b, `{"from":`...)
	b = jsonx.AppendString(b, from)
	b = append(b, `,"to":`...)
	b = jsonx.AppendString(b, to)
	b = append(b, `,"cid":`...)
	b = jsonx.AppendString(b, cid)
	b = append(b, `,"ts":`...)
	b = appendInt(b, ts)
	b = append(b, `,"body":`...)
	b = append(b, body...)
	return append(b, '}')
}

// appendMessage appends a stored record with its sequence: {"seq":7,"from":…}. With op set it is a
// message frame, else an item of a sync or history answer.
func appendMessage(b []byte, withOp bool, seq uint64, record []byte) []byte {
	if withOp {
		b = append(b, `{"op":"message","seq":`...)
	} else {
		b = append(b, `{"seq":`...)
	}
	b = jsonx.AppendUint(b, seq)
	if len(record) > 2 && record[0] == '{' {
		b = append(b, ',')
		return append(b, record[1:]...)
	}
	return append(b, '}')
}

func receiptFrame(peer, by, kind string, seq uint64) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"op":"receipt","peer":`...)
	b = jsonx.AppendString(b, peer)
	b = append(b, `,"by":`...)
	b = jsonx.AppendString(b, by)
	b = append(b, `,"kind":"`...)
	b = append(b, kind...)
	b = append(b, `","seq":`...)
	b = jsonx.AppendUint(b, seq)
	return append(b, '}')
}

func presenceFrame(user, status string, rev uint64) []byte {
	b := make([]byte, 0, 80)
	b = append(b, `{"op":"presence","user":`...)
	b = jsonx.AppendString(b, user)
	b = append(b, `,"status":"`...)
	b = append(b, status...)
	b = append(b, `","rev":`...)
	b = jsonx.AppendUint(b, rev)
	return append(b, '}')
}

func signalFrame(from, device string, data []byte) []byte {
	b := make([]byte, 0, 64+len(data))
	b = append(b, `{"op":"signal","from":`...)
	b = jsonx.AppendString(b, from)
	if device != "" {
		b = append(b, `,"device":`...)
		b = jsonx.AppendString(b, device)
	}
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}')
}
