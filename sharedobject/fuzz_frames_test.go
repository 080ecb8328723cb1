package sharedobject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/sharedobject/internal/model"
)

// Fuzz targets for the place untrusted bytes enter the server: client frames. The model and its log
// entries are fuzzed in internal/model.

// protocolFrames are the client frames of docs/PROTOCOL.md §1.3, verbatim.
var protocolFrames = []string{
	`{"op":"sub","obj":"room/42","persistent":true}`,
	`{"op":"sub","obj":"room/42","persistent":true,"version":17,"epoch":"k2Jq9"}`,
	`{"op":"update","obj":"room/42","persistent":true,"id":"Qx7c-1","changes":[{"name":"topic","base":17,"value":"Hello"},{"name":"draft","base":17,"delete":true}]}`,
	`{"op":"send","obj":"room/42","persistent":true,"id":"Qx7c-2","handler":"chat","args":["alice","hi all"]}`,
	`{"op":"unsub","obj":"room/42","persistent":true}`,
	`{"op":"ping","id":"p1"}`,
}

// fuzzLimits are small so that the fuzzer reaches every limit without huge inputs.
func fuzzLimits() Limits {
	l := DefaultLimits()
	l.MaxFrameBytes, l.MaxValueBytes, l.MaxChanges, l.MaxNameBytes = 4096, 64, 4, 16
	return l
}

func FuzzParseClientFrame(f *testing.F) {
	for _, s := range protocolFrames {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		` { "op" : "update" , "obj":"o","id":"1","changes":[ {"name":"n","base":0,"value": { "a" : [ 1 , {"b":null} ] } } ] } `,
		`{"op":"update","obj":"o","id":"1","changes":[{"name":"n","base":1e400,"value":1}]}`,
		`{"op":"update","obj":"o","id":"1","changes":[{"name":"n","base":9007199254740993,"value":1}]}`,
		`{"op":"update","obj":"o","id":"1","changes":[{"name":"n","base":-0,"value":123456789012345678901234567890e-5}]}`,
		`{"op":"update","obj":"o","id":"1","changes":[{"name":"n","base":1.5,"value":1}]}`,
		`{"op":"update","obj":"ü/☃","id":"1","changes":[{"name":"日本","base":0,"value":"\ud83d\ude00 é"}]}`,
		`{"op":"update","obj":"o","id":"1","changes":[{"name":"n","base":0,"value":1,"value":2}],"changes":[{"name":"m","base":0,"delete":true}]}`,
		`{"op":"update","obj":"o","id":"1","changes":[{"name":"n","base":0,"value":1},{"name":"n","base":0,"value":2}]}`,
		`{"op":"update","obj":"o","id":"1","changes":[{"name":"n\u0000","base":0,"value":"\u0000"}]}`,
		`{"op":"update","obj":"o","id":"1","changes":[{"name":"n","base":0,"delete":true,"value":null}]}`,
		`{"op":"update","obj":"o","id":"1","changes":[]}`,
		`{"op":"ping","op":"sub","obj":"o"}`,
		`{"o\u0070":"send","obj":"o","handler":"h","args":[ 1, [2, {"x" : "y"}] ]}`,
		`{"op":"send","obj":"o","handler":"h","args":{}}`,
		`{"op":"sub","obj":"a b","persistent":"yes"}`,
		`{"op":"sub","obj":"\u2028"}`,
		`[{"op":"ping"}]`,
		`{"op":"update","obj":"o","id":"1","changes":[{"name":"a","base":0,"value":{"k":{"k":{"k":[[[[[]]]]]}}}}]}`,
	} {
		f.Add([]byte(s))
	}
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, werr := parseClientFrame(data, &lim)
		if werr != nil {
			if werr.Code == "" || werr.Message == "" {
				t.Fatalf("refusal without code or message: %+v", werr)
			}
			if out := errorFrame(werr, wire.PeekID(data), fr.obj, fr.persistent); !validOutput(out) {
				t.Fatalf("refusal of %q is written as %q: not valid UTF-8 JSON", data, out)
			}
			return
		}
		if err := checkFrame(fr, data, &lim); err != nil {
			t.Fatalf("accepted %q: %v", data, err)
		}
		// Every frame the server writes from what it accepted is valid UTF-8 JSON (browsers fail the socket
		// on anything else).
		for _, out := range serverFramesFor(fr) {
			if !validOutput(out) {
				t.Fatalf("accepted %q, then wrote %q: not valid UTF-8 JSON", data, out)
			}
		}
	})
}

func validOutput(frame []byte) bool { return utf8.Valid(frame) && json.Valid(frame) }

// serverFramesFor builds the frames the server writes about an accepted client frame.
func serverFramesFor(fr clientFrame) [][]byte {
	out := [][]byte{wire.PongFrame(fr.id)}
	f := beginSync(fr.obj, fr.persistent, fr.epoch, fr.version, fr.id)
	for _, c := range fr.changes {
		if c.Delete {
			f.event(model.Event{Code: "delete", Name: c.Name})
			f.success(c.Name)
		} else {
			f.event(model.Event{Code: "change", Name: c.Name, Value: c.Value, OldValue: c.Value})
			f.reject(c.Name, c.Value, true, "conflict")
		}
	}
	out = append(out, f.end())
	if fr.op == "send" {
		out = append(out, messageFrame(fr.obj, fr.persistent, &model.Message{ID: fr.id, User: fr.obj, Handler: fr.handler, Args: fr.args}))
	}
	return out
}

// checkFrame states what an accepted frame promises to the rest of the package.
func checkFrame(fr clientFrame, data []byte, lim *Limits) error {
	if len(data) > lim.MaxFrameBytes || !json.Valid(data) {
		return fmt.Errorf("frame too large or not JSON")
	}
	if len(fr.id) > wire.MaxIDBytes {
		return fmt.Errorf("id of %d bytes", len(fr.id))
	}
	switch fr.op {
	case "ping":
		return nil
	case "sub", "unsub", "update", "send":
	default:
		return fmt.Errorf("op %q", fr.op)
	}
	if !validName(fr.obj, lim.MaxNameBytes) {
		return fmt.Errorf("object name %q", fr.obj)
	}
	switch fr.op {
	case "update":
		return checkChanges(fr, data, lim)
	case "send":
		if !validName(fr.handler, lim.MaxNameBytes) {
			return fmt.Errorf("handler %q", fr.handler)
		}
		if len(fr.args) == 0 || fr.args[0] != '[' || !isCompactJSON(fr.args) {
			return fmt.Errorf("args %q are not a compact JSON array", fr.args)
		}
	}
	return nil
}

func checkChanges(fr clientFrame, data []byte, lim *Limits) error {
	if fr.id == "" || len(fr.changes) == 0 || len(fr.changes) > lim.MaxChanges {
		return fmt.Errorf("update with id %q and %d changes", fr.id, len(fr.changes))
	}
	// encoding/json reads the same frame independently: the parser must agree on names, values and bases.
	var raw struct {
		Changes []map[string]json.RawMessage `json:"changes"`
	}
	if err := json.Unmarshal(data, &raw); err != nil || len(raw.Changes) != len(fr.changes) {
		return fmt.Errorf("encoding/json reads %d changes (%v)", len(raw.Changes), err)
	}
	seen := map[string]bool{}
	for i, c := range fr.changes {
		want := raw.Changes[i]
		var name string
		json.Unmarshal(want["name"], &name)
		var base json.Number
		json.Unmarshal(want["base"], &base)
		switch {
		case !validName(c.Name, lim.MaxNameBytes) || seen[c.Name]:
			return fmt.Errorf("slot name %q invalid or repeated", c.Name)
		case c.Name != name:
			return fmt.Errorf("slot name %q; encoding/json reads %q", c.Name, name)
		case !sameNumber(base, c.Base):
			return fmt.Errorf("slot %q base %d; the frame says %s", c.Name, c.Base, base)
		case c.Delete != (c.Value == nil):
			return fmt.Errorf("slot %q: delete=%v with value %q", c.Name, c.Delete, c.Value)
		case c.Delete:
		case len(c.Value) > lim.MaxValueBytes || !isCompactJSON(c.Value):
			return fmt.Errorf("slot %q value %q is too large or not compact JSON", c.Name, c.Value)
		case !bytes.Equal(c.Value, compact(want["value"])):
			return fmt.Errorf("slot %q value %q; the frame says %q", c.Name, c.Value, want["value"])
		}
		seen[c.Name] = true
	}
	return nil
}

// sameNumber reports whether the JSON number n, read as a float64 like the parser does, is v. (Exactly
// would be stricter: see TestKnownBugs, base 2^53+1.)
func sameNumber(n json.Number, v uint64) bool {
	f, err := n.Float64()
	return err == nil && f == float64(v)
}

func compact(v []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return nil
	}
	return b.Bytes()
}

func isCompactJSON(v []byte) bool { return json.Valid(v) && bytes.Equal(v, compact(v)) }

// TestFuzzFindingsAreRefused pins what the fuzzers found: frames that were once accepted and must not be.
func TestFuzzFindingsAreRefused(t *testing.T) {
	lim := DefaultLimits()
	for _, tc := range []struct{ name, frame string }{
		// Values and args are relayed verbatim in WebSocket text messages, which must be UTF-8: a browser
		// that receives one fails the connection, and the full sync on reconnect fails it again.
		{"value with invalid UTF-8", "{\"op\":\"update\",\"obj\":\"o\",\"id\":\"1\",\"changes\":[{\"name\":\"n\",\"base\":0,\"value\":\"\xff\"}]}"},
		{"args with invalid UTF-8", "{\"op\":\"send\",\"obj\":\"o\",\"handler\":\"h\",\"args\":[\"\xc3(\"]}"},
		// A base is a whole number from 0 to 2^53 (§1.3); these are read as 2^53 and 1.
		{"base 2^53+1", `{"op":"update","obj":"o","id":"1","changes":[{"name":"n","base":9007199254740993,"value":1}]}`},
		{"fractional base", `{"op":"update","obj":"o","id":"1","changes":[{"name":"n","base":1.0000000000000001,"value":1}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f, werr := parseClientFrame([]byte(tc.frame), &lim); werr == nil {
				t.Errorf("accepted %q as %+v; want it refused", tc.frame, f)
			}
		})
	}
}
