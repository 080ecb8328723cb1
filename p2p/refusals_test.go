package p2p_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/p2p/messaging"
	"github.com/rso-server/rso/relay"
)

// Bad frames, unknown recipients, blocked senders, oversized messages and floods get clear error codes
// (with the frame's id) and lose nothing: every message that was answered "sent" is stored, in order, and
// nothing else is.
func TestRefusalsLoseNothing(t *testing.T) {
	c := newCluster(t, 1, "", func(_ *messaging.Config, r *relay.Config) {
		r.Limits.MessagesPerSecond = 5 // burst 11
		r.Limits.MaxFrameBytes = 32 << 10
	})
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[0], "bob", "")
	var stored []string
	send := func(text string) {
		t.Helper()
		alice.mustSend("bob", text)
		stored = append(stored, text)
	}
	send("before")

	cases := []struct {
		name, frame, code string
	}{
		{"not json", `{"op":"send",`, "bad_json"},
		{"not an object", `[1,2]`, "bad_json"},
		{"no op", `{"id":"x1"}`, "bad_frame"},
		{"unknown op", `{"op":"shout","id":"x2"}`, "unknown_op"},
		{"send without id", `{"op":"send","to":"bob","body":1}`, "bad_frame"},
		{"send without body", `{"op":"send","id":"x3","to":"bob"}`, "bad_frame"},
		{"wrong type", `{"op":"send","id":"x4","to":7,"body":1}`, "bad_frame"},
		{"unknown recipient", `{"op":"send","id":"x5","to":"nobody","body":"hi"}`, "unknown_user"},
		{"to self", `{"op":"send","id":"x6","to":"alice","body":"hi"}`, "bad_frame"},
		{"oversized body", `{"op":"send","id":"x7","to":"bob","body":"` + strings.Repeat("a", 17<<10) + `"}`, "message_too_large"},
		{"oversized frame", `{"op":"send","id":"x8","to":"bob","body":"` + strings.Repeat("a", 33<<10) + `"}`, "frame_too_large"},
		{"receipt beyond the end", `{"op":"receipt","id":"x9","peer":"bob","kind":"read","seq":99}`, "bad_seq"},
		{"bad receipt kind", `{"op":"receipt","id":"x10","peer":"bob","kind":"seen","seq":1}`, "bad_frame"},
		{"bad presence", `{"op":"presence","id":"x11","status":"busy"}`, "bad_frame"},
		{"accept without request", `{"op":"friend","id":"x12","action":"accept","user":"bob"}`, "not_found"},
		{"signal to offline", `{"op":"signal","id":"x13","to":"carol","data":{}}`, "unknown_user"},
		{"number with an exponent", `{"op":"history","id":"x14","peer":"bob","limit":1e1}`, "bad_frame"},
		{"number with a fraction", `{"op":"receipt","id":"x15","peer":"bob","kind":"read","seq":1.0}`, "bad_frame"},
	}
	for _, tc := range cases {
		alice.sendRaw(tc.frame)
		e := alice.expect(isOp("error"))
		if e.Get("code").Str != tc.code || e.Get("message").Str == "" {
			t.Errorf("%s: want %s, got %s", tc.name, tc.code, e.Raw)
		}
		if id := gjson.Get(tc.frame, "id").Str; id != "" && e.Get("id").Str != id && tc.code != "bad_json" {
			t.Errorf("%s: error without the frame's id: %s", tc.name, e.Raw)
		}
	}
	send("after the bad frames")

	// Blocks, both ways.
	bob.call(map[string]any{"op": "friend", "action": "block", "user": "alice"})
	wantError(t, alice.send("bob", "blocked"), "blocked")
	wantError(t, bob.send("alice", "blocked too"), "blocked")
	wantError(t, alice.call(map[string]any{"op": "friend", "action": "request", "user": "bob"}), "blocked")
	bob.call(map[string]any{"op": "friend", "action": "unblock", "user": "alice"})
	send("after the unblock")

	// A flood: some are refused with rate_limited (and their id), the rest stored, in order.
	const flood = 30
	for i := range flood {
		alice.sendJSON(map[string]any{"op": "send", "id": fmt.Sprintf("f%d", i), "to": "bob", "body": map[string]string{"text": fmt.Sprint("flood ", i)}})
	}
	limited := 0
	for i := range flood {
		id := fmt.Sprintf("f%d", i)
		a := alice.expect(func(f gjson.Result) bool { return f.Get("id").Str == id })
		switch {
		case a.Get("op").Str == "sent":
			stored = append(stored, fmt.Sprint("flood ", i))
		case a.Get("code").Str == "rate_limited":
			limited++
		default:
			t.Fatalf("flood answer: %s", a.Raw)
		}
	}
	if limited == 0 || limited == flood {
		t.Fatalf("%d of %d refused; want some", limited, flood)
	}
	alice.ping() // still connected

	h := alice.call(map[string]any{"op": "history", "peer": "bob", "limit": 200})
	var got []string
	for _, m := range h.Get("messages").Array() {
		got = append(got, m.Get("body.text").Str)
	}
	if fmt.Sprint(got) != fmt.Sprint(stored) {
		t.Fatalf("stored messages:\n got %q\nwant %q", got, stored)
	}
}

// With FriendsOnly, strangers are refused and friends may write.
func TestFriendsOnly(t *testing.T) {
	c := newCluster(t, 1, "", func(p *messaging.Config, _ *relay.Config) { p.FriendsOnly = true })
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[0], "bob", "")
	if !alice.hello.Get("limits.friends_only").Bool() {
		t.Fatalf("hello: %s", alice.hello.Raw)
	}
	wantError(t, alice.send("bob", "hello stranger"), "not_friends")
	wantError(t, alice.call(map[string]any{"op": "signal", "to": "bob", "data": map[string]string{}}), "not_friends")
	befriend(t, alice, bob)
	alice.mustSend("bob", "hello friend")
	bob.call(map[string]any{"op": "friend", "action": "remove", "user": "alice"})
	wantError(t, alice.send("bob", "still there?"), "not_friends")
}

// A client that keeps sending bad frames is disconnected with 4009.
func TestAbuseCloses(t *testing.T) {
	c := newCluster(t, 1, "", nil)
	for _, dial := range []func() *client{
		func() *client { return dialWS(t, c.nodes[0], "ws", "") },
		func() *client { return dialTCP(t, c.nodes[0], "tcp", "") },
	} {
		cl := dial()
		for range 60 {
			if cl.write([]byte(`nonsense`)) != nil {
				break
			}
		}
		if code := cl.closeCode(); code != 4009 {
			t.Fatalf("%s closed with %d, want 4009", cl.user, code)
		}
	}
	// Frames the messaging service refuses count as the relay's own refusals do.
	cl := dialWS(t, c.nodes[0], "svc", "")
	for i := range 60 {
		if cl.write(fmt.Appendf(nil, `{"op":"send","id":"m%d","to":"nobody","body":1}`, i)) != nil {
			break
		}
	}
	if code := cl.closeCode(); code != 4009 {
		t.Fatalf("a client refused by the service closed with %d, want 4009", code)
	}
}
