package messaging

import (
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/p2p/internal/proto"
)

var knownCodes = map[string]bool{
	wire.CodeBadJSON: true, wire.CodeBadFrame: true, wire.CodeUnknownOp: true, wire.CodeMessageTooLarge: true,
}

// validOut fails unless b is valid UTF-8 and valid JSON, as every frame the service writes must be.
func validOut(t *testing.T, what string, b []byte) {
	t.Helper()
	if !utf8.Valid(b) || !gjson.ValidBytes(b) {
		t.Fatalf("%s is not valid UTF-8 JSON: %q", what, b)
	}
}

// FuzzParseRequest: any input is either refused with a known code and a message, or accepted with every
// field within its limits and valid UTF-8; the frames built from either are valid UTF-8 JSON.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"send","id":"m1","to":"bob","body":{"text":"hi"}}`,
		`{"op":"send","id":"m1","to":"bob","body":"  spaced  out  "}`,
		`{"op":"receipt","peer":"bob","kind":"read","seq":3}`,
		`{"op":"sync","after":{"bob":2,"carol":0},"limit":10}`,
		`{"op":"history","peer":"bob","before":10,"limit":5}`,
		`{"op":"friends","hash":"0123456789abcdef0123456789abcdef"}`,
		`{"op":"friend","action":"request","user":"bob"}`,
		`{"op":"presence","status":"away"}`,
		`{"op":"signal","to":"bob","device":"d-1","data":{"sdp":"v=0\r\n"}}`,
		`{"op":"send","id":"\u0000","to":"\ud800","body":[1,2,{"a":null}]}`,
		`{"op":1}`, `[]`, `{"op":"send","seq":-1}`, `{"op":"history","limit":1e300}`, `{"op":"sync","after":[]}`,
		"{\"op\":\"send\",\"id\":\"m-1\",\"to\":\"bob\",\"body\":{\"text\":\"caf\xe9\xff\"}}",
		"{\"op\":\"signal\",\"id\":\"\xff\",\"to\":\"bob\",\"data\":\"\xc3\"}",
	} {
		f.Add([]byte(s))
	}
	cfg := DefaultConfig()
	cfg.MaxMessageBytes = 64
	f.Fuzz(func(t *testing.T, data []byte) {
		r, werr := parseRequest(data, &cfg)
		if werr != nil {
			if !knownCodes[werr.Code] || werr.Message == "" {
				t.Fatalf("refusal %+v", werr)
			}
			validOut(t, "error frame", errorFrame(werr, wire.PeekID(data)))
			return
		}
		if !utf8.Valid(data) {
			t.Fatalf("accepted a frame that is not UTF-8: %q", data)
		}
		if len(r.id) > wire.MaxIDBytes || len(r.to) > proto.MaxUserBytes || len(r.peer) > proto.MaxUserBytes || len(r.user) > proto.MaxUserBytes {
			t.Fatalf("accepted oversized field: %+v", r)
		}
		switch r.op {
		case "send":
			if r.id == "" || r.to == "" || len(r.body) > cfg.MaxMessageBytes || !gjson.ValidBytes(r.body) {
				t.Fatalf("accepted send %+v", r)
			}
			rec := storedRecord("alice", r.to, r.id, 1, r.body)
			for _, b := range [][]byte{rec, appendMessage(nil, true, 7, rec), appendMessages(nil, []seqRecord{{1, rec}, {2, rec}}),
				sentFrame(r.id, r.to, 1, 2, true)} {
				validOut(t, "frame", b)
			}
			if got := gjson.GetBytes(rec, "cid").Str; got != r.id && gjson.Valid(fmt.Sprintf("%q", r.id)) {
				t.Fatalf("cid %q stored as %q", r.id, got)
			}
		case "signal":
			if r.to == "" || len(r.data) > cfg.MaxMessageBytes {
				t.Fatalf("accepted signal %+v", r)
			}
			validOut(t, "signal frame", signalFrame("a", r.device, r.data))
		case "receipt":
			if r.seq == 0 || r.peer == "" || (r.kind != KindDelivered && r.kind != KindRead) {
				t.Fatalf("accepted receipt %+v", r)
			}
			validOut(t, "receipt frame", receiptFrame(r.peer, "a", r.kind, r.seq))
		case "sync", "history", "friends", "friend", "presence":
			if ok := okFrame(r.id); ok != nil { // nil: nothing to answer
				validOut(t, "ok frame", ok)
			}
		default:
			t.Fatalf("accepted op %q", r.op)
		}
	})
}

// FuzzServable: whatever a stored record holds (records stored before frames were checked, or written into
// the stream by someone else), the message frames and answers built from it are valid UTF-8 JSON.
func FuzzServable(f *testing.F) {
	for _, s := range []string{
		"{\"from\":\"alice\",\"to\":\"bob\",\"cid\":\"m-1\",\"ts\":1,\"body\":{\"text\":\"caf\xe9\xff\"}}",
		`{"from":"alice","to":"bob","cid":"m-1","ts":1,"body":"ok"}`, `{}`, `[]`, `{"from":`, "", "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stored []byte) {
		rec := servable(stored)
		validOut(t, "record", rec)
		validOut(t, "message frame", appendMessage(nil, true, 7, rec))
		validOut(t, "messages", appendMessages(nil, []seqRecord{{1, rec}, {2, rec}}))
	})
}
