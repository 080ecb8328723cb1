package relay

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/chatbus"
	"github.com/rso-server/rso/internal/wire"
)

// The relay's boundary: what it takes from clients and what it writes to them.

// notUTF8 is a send whose body holds bytes that are not UTF-8 inside a string: valid JSON for gjson.
const notUTF8 = "{\"op\":\"send\",\"id\":\"m-1\",\"to\":\"bob\",\"body\":{\"text\":\"caf\xe9\xff\"}}"

// dialBoth connects user over the WebSocket and over TCP and waits for both hellos.
func dialBoth(t *testing.T, f *fixture, user string) []*peer {
	t.Helper()
	ws, _, err := dialWS(t, f.wsURL("user="+user), nil)
	if err != nil {
		t.Fatal(err)
	}
	tcp := dialTCP(t, f.tcp)
	tcp.write(`{"op":"auth","user":"` + user + `"}`)
	for _, p := range []*peer{ws, tcp} {
		p.nextOp("hello")
	}
	return []*peer{ws, tcp}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (f *fixture) forwarded(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.envelopes {
		if e.Get("frame.id").Str == id {
			return true
		}
	}
	return false
}

// A frame that is not valid UTF-8 is refused at the boundary (bad_json, as on /so) and never reaches the
// messaging service: stored, it would make every frame carrying it fail the recipient's socket.
func TestFramesMustBeUTF8(t *testing.T) {
	f := newFixture(t, nil, true, nil)
	for i, p := range dialBoth(t, f, "alice") {
		signal := fmt.Sprintf("{\"op\":\"signal\",\"id\":\"g-%d\",\"to\":\"bob\",\"data\":{\"sdp\":\"\xc3\"}}", i)
		for _, frame := range []string{notUTF8, signal} {
			p.write(frame)
			e := p.nextOp("error")
			if id := gjson.Get(frame, "id").Str; e.Get("code").Str != wire.CodeBadJSON || e.Get("message").Str != "frame is not valid UTF-8" || e.Get("id").Str != id {
				t.Fatalf("%q: %s", frame, e.Raw)
			}
		}
		// Frames are handled in order: once a later frame is answered, a forwarded one would be recorded.
		after := fmt.Sprintf("after-%d", i)
		p.write(`{"op":"send","id":"` + after + `","to":"bob","body":"ok"}`)
		if e := p.nextOp("echo"); e.Get("id").Str != after {
			t.Fatalf("after: %s", e.Raw)
		}
		p.nextOp("second")
		if f.forwarded("m-1") || f.forwarded(fmt.Sprintf("g-%d", i)) {
			t.Fatal("a frame that is not UTF-8 was forwarded to the messaging service")
		}
	}
}

// Whatever arrives on NATS — an answer or a delivery — a client gets valid UTF-8 (invalid bytes become
// U+FFFD), so that no publisher can break a socket.
func TestOutboundFramesAreUTF8(t *testing.T) {
	f := newFixture(t, nil, true, nil)
	for _, p := range dialBoth(t, f, "alice") {
		p.write(`{"op":"invalid","id":"i1"}`)
		if a := p.nextOp("invalid"); a.Get("text").Str != "caf\uFFFD\uFFFD" {
			t.Fatalf("answer: %s", a.Raw)
		}
	}
	peers := dialBoth(t, f, "bob")
	if err := f.nc.Publish(chatbus.SubjUserPrefix+chatbus.UserToken("bob"), []byte("{\"op\":\"message\",\"body\":{\"text\":\"caf\xe9\xff\"}}")); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if m := p.nextOp("message"); m.Get("body.text").Str != "caf\uFFFD\uFFFD" {
			t.Fatalf("delivery: %s", m.Raw)
		}
	}
}

// One rule for every frame's id, the relay's own ping included: a string of 1 to 64 bytes.
func TestOneIDRule(t *testing.T) {
	f := newFixture(t, nil, true, nil)
	id64, id65 := strings.Repeat("i", 64), strings.Repeat("j", 65)
	for _, p := range dialBoth(t, f, "alice") {
		p.write(`{"op":"ping","id":"` + id64 + `"}`)
		if pong := p.nextOp("pong"); pong.Get("id").Str != id64 {
			t.Fatalf("64-byte id: %s", pong.Raw)
		}
		for _, frame := range []string{
			`{"op":"ping","id":"` + id65 + `"}`,
			`{"op":"ping","id":""}`,
			`{"op":"ping","id":7}`,
			`{"op":"send","id":"` + id65 + `","to":"bob","body":1}`,
		} {
			p.write(frame)
			if e := p.nextOp("error"); e.Get("code").Str != wire.CodeBadFrame || e.Get("message").Str != `field "id" must be a string of 1 to 64 bytes` {
				t.Fatalf("%s: %s", frame, e.Raw)
			}
		}
	}
	if f.forwarded(id65) {
		t.Fatal("a send with a 65-byte id was forwarded")
	}
}

// Size and rate refusals say the numbers, as /so's do.
func TestLimitErrorsStateTheNumbers(t *testing.T) {
	f := newFixture(t, nil, true, nil)
	big := `{"op":"send","id":"big","to":"bob","body":"`
	big += strings.Repeat("x", 70000-len(big)-2) + `"}`
	want := "frame is 70000 bytes; the limit is 65536 (max_frame_bytes)"
	peers := dialBoth(t, f, "alice")
	peers[0].write(big)
	peers[1].write(big + "\r") // a "\r\n" line end is not part of the frame
	for _, p := range peers {
		if e := p.nextOp("error"); e.Get("code").Str != wire.CodeFrameTooLarge || e.Get("message").Str != want {
			t.Fatalf("oversized frame: %s", e.Raw)
		}
	}

	for _, tc := range []struct {
		limits         Limits
		frame, message string
	}{
		{Limits{MessagesPerSecond: 1}, `{"op":"send","id":"s%d","to":"bob","body":1}`, "more than 1 messages per second (messages_per_second); slow down and re-send (same id)"},
		{Limits{FramesPerSecond: 1}, `{"op":"ping","id":"p%d"}`, "more than 1 frames per second (frames_per_second); slow down and re-send (same id)"},
	} {
		rates := newFixture(t, nil, true, func(c *Config) { c.Limits = tc.limits })
		for _, p := range dialBoth(t, rates, "alice") {
			const n = 8 // a burst of 3 at most is allowed; 8 frames go out well within a second
			for i := range n {
				p.write(fmt.Sprintf(tc.frame, i))
			}
			refused := 0
			for answered := 0; answered < n; {
				switch fr := p.next(); fr.Get("op").Str {
				case "second":
				case "error":
					if fr.Get("code").Str != wire.CodeRateLimited || fr.Get("message").Str != tc.message || fr.Get("id").Str == "" {
						t.Fatalf("refusal: %s", fr.Raw)
					}
					refused++
					answered++
				default:
					answered++
				}
			}
			if refused == 0 {
				t.Fatalf("%d frames at once, none refused", n)
			}
		}
	}
}

// A node answers on a user's live subject (signals) only while it has connections of the user, and only
// when one of them got the frame; it stops at once when the last connection closes, even though the
// user's presence lingers for the grace period.
func TestLiveSubjectFollowsConnections(t *testing.T) {
	f := newFixture(t, nil, true, func(c *Config) { c.PresenceGrace = time.Minute })
	ask := func(device string, timeout time.Duration) error {
		m := &nats.Msg{Subject: chatbus.SubjLivePrefix + chatbus.UserToken("alice"), Data: []byte(`{"op":"signal","from":"bob","data":{}}`), Header: nats.Header{}}
		if device != "" {
			m.Header.Set(chatbus.HdrDevice, device)
		}
		_, err := f.nc.RequestMsg(m, timeout)
		return err
	}
	phone, _, err := dialWS(t, f.wsURL("user=alice&device=phone"), nil)
	if err != nil {
		t.Fatal(err)
	}
	phone.nextOp("hello")
	for _, device := range []string{"", "phone"} {
		if err := ask(device, waitLimit); err != nil {
			t.Fatalf("signal to device %q: %v", device, err)
		}
		phone.nextOp("signal")
	}
	if err := ask("laptop", 300*time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("a node without the device answered: %v", err)
	}
	phone.close()
	waitFor(t, "no responders once the last connection is gone", func() bool {
		// (a request that comes between the connection's removal and the unsubscribe is not answered)
		return errors.Is(ask("", 200*time.Millisecond), nats.ErrNoResponders)
	})
	f.mu.Lock()
	byes := len(f.byes)
	f.mu.Unlock()
	if byes != 0 {
		t.Fatal("bye before the grace period ended")
	}
	laptop, _, err := dialWS(t, f.wsURL("user=alice&device=laptop"), nil)
	if err != nil {
		t.Fatal(err)
	}
	laptop.nextOp("hello")
	if err := ask("laptop", waitLimit); err != nil { // back within the grace period: live again
		t.Fatalf("after reconnecting: %v", err)
	}
	laptop.nextOp("signal")
}

func wantValidJSON(t *testing.T, what string, b []byte) {
	t.Helper()
	if !utf8.Valid(b) || !gjson.ValidBytes(b) {
		t.Fatalf("%s is not valid UTF-8 JSON: %q", what, b)
	}
}

// FuzzCheckFrame: any client frame is refused with an error frame, or accepted as valid UTF-8 JSON with an
// id of 1 to 64 bytes; every frame the relay writes or forwards for it is valid UTF-8 JSON.
func FuzzCheckFrame(f *testing.F) {
	for _, s := range []string{
		`{"op":"ping","id":"p1"}`, `{"op":"send","id":"m1","to":"bob","body":{"text":"hi"}}`, notUTF8,
		"{\"op\":\"ping\",\"id\":\"\xff\"}", `{"op":"ping","id":""}`, `{"id":["x"]}`, `[]`, `{"op":`, `"\u00e9"`,
		`{"op":"ping","id":"` + strings.Repeat("i", 65) + `"}`,
	} {
		f.Add([]byte(s))
	}
	c := &conn{srv: &Server{node: "n1-ABCDEFGH"}, ident: &auth.Identity{User: "alice"}, device: "phone", id: "n1-ABCDEFGH-1"}
	const max = 200
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, id, r := checkFrame(raw, max)
		if r != nil {
			if r.code == "" || r.message == "" {
				t.Fatalf("refusal %+v", r)
			}
			wantValidJSON(t, "error frame", errorFrame(r.code, r.message, id))
			return
		}
		if len(raw) > max || !utf8.Valid(raw) || !gjson.ValidBytes(raw) || !gjson.ParseBytes(raw).IsObject() {
			t.Fatalf("accepted %q", raw)
		}
		if v := gjson.GetBytes(raw, "id"); v.Exists() && (id != v.Str || id == "" || len(id) > wire.MaxIDBytes) {
			t.Fatalf("accepted id %q of %q", id, raw)
		}
		wantValidJSON(t, "pong", wire.PongFrame(id))
		wantValidJSON(t, "envelope", c.envelope(raw))
	})
}
