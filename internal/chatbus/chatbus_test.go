package chatbus_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/rso-server/rso/internal/chatbus"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	in := &chatbus.Envelope{User: "al\"ice\n", Device: "d-1", Conn: "n1-7", Node: "n1", Frame: []byte(`{"op":"send","to":"bob","id":"r1"}`)}
	b := chatbus.AppendEnvelope(nil, in)
	if !json.Valid(b) {
		t.Fatalf("envelope is not JSON: %s", b)
	}
	out, id, err := chatbus.ParseEnvelope(b)
	if err != nil || id != "r1" {
		t.Fatalf("ParseEnvelope = %v, %q, %v", out, id, err)
	}
	if out.User != in.User || out.Device != in.Device || out.Conn != in.Conn || out.Node != in.Node || !bytes.Equal(out.Frame, in.Frame) {
		t.Fatalf("round trip gave %+v, want %+v", out, in)
	}
}

func TestEnvelopeOfTheWrongShapeIsRefused(t *testing.T) {
	for _, tt := range []struct{ env, id string }{
		{`[]`, ""},
		{`{"frame":{"op":"ping","id":"x"}}`, "x"},                    // no user
		{`{"user":7,"frame":{"op":"ping"}}`, ""},                     // user not a string
		{`{"user":"a","frame":"ping"}`, ""},                          // frame not an object
		{`{"user":"a","node":["n"],"frame":{"id":"q"}}`, "q"},        // node not a string
		{`{"user":"a","conn":null,"frame":{"op":"ping"}}`, ""},       // conn not a string
		{`{"user":"a","device":true,"frame":{"id":"long"}}`, "long"}, // device not a string
	} {
		if e, id, err := chatbus.ParseEnvelope([]byte(tt.env)); err == nil || id != tt.id {
			t.Errorf("ParseEnvelope(%s) = %+v, %q, %v; want an error and id %q", tt.env, e, id, err, tt.id)
		}
	}
}

func TestRefusedFlag(t *testing.T) {
	if chatbus.Refused(chatbus.FrameReply([]byte(`{"op":"sent"}`), false)) {
		t.Error("an answer reads as refused")
	}
	if !chatbus.Refused(chatbus.FrameReply([]byte(`{"op":"error"}`), true)) {
		t.Error("a refusal does not read as refused")
	}
}

// Whatever a relay (or anything on NATS) sends, ParseEnvelope does not panic, and an accepted envelope
// carries a user and an object frame, and writes back the same.
func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"user":"a","device":"d","conn":"c","node":"n","frame":{"op":"ping"}}`))
	f.Add([]byte(`{"user":"","frame":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) || !utf8.Valid(data) {
			return // checked at the boundary before
		}
		e, _, err := chatbus.ParseEnvelope(data)
		if err != nil {
			return
		}
		if e.User == "" || len(e.Frame) == 0 || e.Frame[0] != '{' {
			t.Fatalf("accepted %s as %+v", data, e)
		}
		again, _, err := chatbus.ParseEnvelope(chatbus.AppendEnvelope(nil, e))
		if err != nil || again.User != e.User || !bytes.Equal(again.Frame, e.Frame) {
			t.Fatalf("re-encoded envelope of %s reads as %+v, %v", data, again, err)
		}
	})
}
