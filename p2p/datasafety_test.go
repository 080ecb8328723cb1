package p2p_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/p2p/messaging"
	"github.com/rso-server/rso/relay"
)

// Data safety: nothing that is not UTF-8 gets in, and nothing that is not UTF-8 gets out, whatever was
// stored before. (Every frame a test client reads is checked for valid JSON and UTF-8: harness_test.go.)

// Names as docs/PROTOCOL.md §3.10 defines them, for writing to the stream the way the service does.
func docUserToken(user string) string { return base64.RawURLEncoding.EncodeToString([]byte(user)) }

func docHash(a, b string) string {
	h := sha256.New()
	h.Write(binary.AppendUvarint(nil, uint64(len(a))))
	h.Write([]byte(a))
	h.Write([]byte(b))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func docConvID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return docHash(a, b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); !cond(); time.Sleep(25 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A send or a signal with bytes that are not UTF-8 inside a string (valid JSON for gjson) is refused on
// the WebSocket and on TCP; nothing is stored or delivered.
func TestFramesMustBeUTF8(t *testing.T) {
	c := newCluster(t, 1, "", nil)
	phone := dialWS(t, c.nodes[0], "alice", "phone")
	laptop := dialTCP(t, c.nodes[0], "alice", "laptop")
	bob := dialWS(t, c.nodes[0], "bob", "")
	for i, cl := range []*client{phone, laptop} {
		for _, frame := range []string{
			fmt.Sprintf("{\"op\":\"send\",\"id\":\"m-%d\",\"to\":\"bob\",\"body\":{\"text\":\"caf\xe9\xff\"}}", i),
			fmt.Sprintf("{\"op\":\"signal\",\"id\":\"g-%d\",\"to\":\"bob\",\"data\":{\"sdp\":\"caf\xe9\xff\"}}", i),
		} {
			cl.sendRaw(frame)
			id := gjson.Get(frame, "id").Str
			e := cl.expect(func(f gjson.Result) bool { return f.Get("id").Str == id })
			if e.Get("code").Str != "bad_json" || e.Get("message").Str != "frame is not valid UTF-8" {
				t.Fatalf("%q: %s", frame, e.Raw)
			}
		}
	}
	bob.none("a message or signal that is not UTF-8", func(f gjson.Result) bool {
		return f.Get("op").Str == "message" || f.Get("op").Str == "signal"
	})
	if h := bob.call(map[string]any{"op": "history", "peer": "alice"}); h.Get("last").Uint() != 0 {
		t.Fatalf("stored: %s", h.Raw)
	}
}

// Every request the services take from NATS is checked too, not only what comes through a relay: a
// backend on NATS cannot store bytes that are not UTF-8 either.
func TestNATSRequestsMustBeUTF8(t *testing.T) {
	c := newCluster(t, 1, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	carol := dialWS(t, c.nodes[0], "carol", "")
	dialWS(t, c.nodes[0], "bob", "")
	nc := c.connect("backend")
	for _, tc := range []struct{ subject, data, code string }{
		{"rso.p2p.frame", "{\"user\":\"alice\",\"device\":\"d\",\"conn\":\"x\",\"node\":\"n\",\"frame\":{\"op\":\"send\",\"id\":\"m-1\",\"to\":\"bob\",\"body\":\"caf\xe9\"}}", "code"},
		{"rso.p2p.hello", "{\"user\":\"eve\xe9\",\"node\":\"n\"}", "error.code"},
		{"rso.p2p.bye", "{\"user\":\"eve\xe9\",\"node\":\"n\"}", "error.code"},
		{"rso.friends.get", "{\"user\":\"eve\xe9\"}", "error.code"},
		{"rso.friends.update", "{\"user\":\"alice\",\"action\":\"block\",\"other\":\"bob\xe9\"}", "error.code"},
	} {
		m, err := nc.Request(tc.subject, []byte(tc.data), waitLimit)
		if err != nil {
			t.Fatalf("%s: %v", tc.subject, err)
		}
		if code := gjson.GetBytes(m.Data, tc.code).Str; code != "bad_json" {
			t.Fatalf("%s: %s", tc.subject, m.Data)
		}
	}
	// A change notice that is not UTF-8 is not cached, nor pushed to the user's devices. Notices are
	// cached in order: once a later one for carol is seen, alice's would have been cached.
	notice := func(user, list string) {
		t.Helper()
		if err := nc.Publish("rso.friends.changed."+docUserToken(user), []byte(`{"user":"`+user+`","hash":"x","list":`+list+`,"rev":99}`)); err != nil {
			t.Fatal(err)
		}
	}
	notice("alice", "{\"friends\":[],\"incoming\":[],\"outgoing\":[],\"blocked\":[\"bob\xe9\"]}")
	notice("carol", `{"friends":[],"incoming":[],"outgoing":[],"blocked":["dave"]}`)
	waitFor(t, "the notice for carol", func() bool {
		return carol.call(map[string]any{"op": "friends"}).Get("blocked.0").Str == "dave"
	})
	if l := alice.call(map[string]any{"op": "friends"}); l.Get("blocked.#").Int() != 0 {
		t.Fatalf("list: %s", l.Raw)
	}
	alice.none("a pushed list from a notice that is not UTF-8", isOp("friends"))
	// Nothing was stored: no user "eve\uFFFD", as json.Unmarshal would have made of the hello.
	users, err := jetStream(t, nc).KeyValue(t.Context(), "RSO_CHAT_USERS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(t.Context(), docUserToken("eve\uFFFD")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("a hello that is not UTF-8 recorded a user: %v", err)
	}
}

// Messages stored before frames were checked for UTF-8 are in the stream with their invalid bytes. They
// come out repaired (U+FFFD for each invalid byte) in history, sync and live delivery, so that a client
// can read its conversation again.
func TestStoredInvalidUTF8IsServedRepaired(t *testing.T) {
	c := newCluster(t, 1, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[0], "bob", "")
	nc := c.connect("old-version")
	js := jetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	// As the service stored it: both index entries, then the message with its de-duplication id.
	conv := docConvID("alice", "bob")
	index, err := js.KeyValue(ctx, "RSO_DM_INDEX")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]string{{"alice", "bob"}, {"bob", "alice"}} {
		if _, err := index.Create(ctx, docUserToken(p[0])+"."+conv, []byte(`{"peer":"`+p[1]+`","delivered":0,"read":0}`)); err != nil {
			t.Fatal(err)
		}
	}
	m := nats.NewMsg("rso.dm." + conv + ".1")
	m.Data = []byte("{\"from\":\"alice\",\"to\":\"bob\",\"cid\":\"m-1\",\"ts\":1767225600123,\"body\":{\"text\":\"caf\xe9\xff\"}}")
	m.Header.Set(jetstream.MsgIDHeader, docHash("alice", "m-1"))
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	const want = "caf\uFFFD\uFFFD"

	h := bob.call(map[string]any{"op": "history", "peer": "alice"})
	if h.Get("last").Uint() != 1 || h.Get("messages.0.body.text").Str != want {
		t.Fatalf("history: %s", h.Raw)
	}
	s := bob.call(map[string]any{"op": "sync"})
	if s.Get(`convs.#(peer=="alice").messages.0.body.text`).Str != want {
		t.Fatalf("sync: %s", s.Raw)
	}
	// Live: Alice resends the message as she now sees it; it is recognised and delivered again.
	a := alice.call(map[string]any{"op": "send", "id": "m-1", "to": "bob", "body": map[string]string{"text": want}})
	if a.Get("op").Str != "sent" || !a.Get("duplicate").Bool() || a.Get("seq").Uint() != 1 || a.Get("ts").Int() != 1767225600123 {
		t.Fatalf("resend: %s", a.Raw)
	}
	if live := bob.expect(isMessage("alice", 1)); live.Get("body.text").Str != want {
		t.Fatalf("live: %s", live.Raw)
	}
}

// A signal reaches a connection or is refused offline (PROTOCOL §3.7): in the grace period after the
// peer's last connection closed its presence still shows online, but nobody would get the signal.
func TestSignalToPeerInGraceIsOffline(t *testing.T) {
	c := newCluster(t, 1, "", func(_ *messaging.Config, r *relay.Config) { r.PresenceGrace = 2 * waitLimit })
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[0], "bob", "phone")
	befriend(t, alice, bob)
	signal := func(device string) gjson.Result {
		f := map[string]any{"op": "signal", "to": "bob", "data": map[string]string{"type": "offer"}}
		if device != "" {
			f["device"] = device
		}
		return alice.call(f)
	}
	if r := signal(""); r.Get("op").Str != "ok" {
		t.Fatalf("signal: %s", r.Raw)
	}
	bob.expect(isOp("signal"))
	wantError(t, signal("laptop"), "offline") // a device that is not connected
	bob.close()
	waitFor(t, "a signal to bob refused offline", func() bool { return signal("").Get("code").Str == "offline" })
	alice.none("bob offline within the grace period", isPresence("bob", "offline"))
	bob = dialWS(t, c.nodes[0], "bob", "phone")
	if r := signal("phone"); r.Get("op").Str != "ok" {
		t.Fatalf("signal after bob came back: %s", r.Raw)
	}
	bob.expect(isOp("signal"))
}
