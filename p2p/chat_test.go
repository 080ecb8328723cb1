package p2p_test

import (
	"fmt"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/p2p/messaging"
	"github.com/rso-server/rso/relay"
)

// Alice on node 1, Bob on node 2: messages, receipts and presence cross nodes.
func TestMessagesReceiptsAndPresenceCrossNodes(t *testing.T) {
	c := newCluster(t, 2, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[1], "bob", "")
	if alice.hello.Get("user").Str != "alice" || alice.hello.Get("limits.max_message_bytes").Int() != 16<<10 {
		t.Fatalf("hello: %s", alice.hello.Raw)
	}
	befriend(t, alice, bob)
	// Each gets the new list pushed, with the other's presence.
	alice.expect(func(f gjson.Result) bool {
		return f.Get("op").Str == "friends" && f.Get(`presence.#(user=="bob").status`).Str == "online"
	})

	// A message, stored then delivered across nodes.
	sent := alice.send("bob", "hi bob")
	if sent.Get("op").Str != "sent" || sent.Get("seq").Uint() != 1 || sent.Get("to").Str != "bob" || sent.Get("ts").Int() == 0 {
		t.Fatalf("sent: %s", sent.Raw)
	}
	m := bob.expect(isMessage("alice", 1))
	if m.Get("to").Str != "bob" || m.Get("body.text").Str != "hi bob" || m.Get("cid").Str != sent.Get("id").Str {
		t.Fatalf("message: %s", m.Raw)
	}
	alice.none("echo of her own message", isOp("message"))

	// Receipts go back to Alice.
	if r := bob.call(map[string]any{"op": "receipt", "peer": "alice", "kind": "delivered", "seq": 1}); r.Get("op").Str != "ok" {
		t.Fatalf("receipt: %s", r.Raw)
	}
	alice.expect(func(f gjson.Result) bool {
		return f.Get("op").Str == "receipt" && f.Get("peer").Str == "bob" && f.Get("by").Str == "bob" && f.Get("kind").Str == "delivered" && f.Get("seq").Uint() == 1
	})
	bob.call(map[string]any{"op": "receipt", "peer": "alice", "kind": "read", "seq": 1})
	alice.expect(func(f gjson.Result) bool { return f.Get("op").Str == "receipt" && f.Get("kind").Str == "read" })
	// A receipt that does not advance anything is not forwarded again.
	bob.call(map[string]any{"op": "receipt", "peer": "alice", "kind": "delivered", "seq": 1})
	alice.none("a repeated receipt", isOp("receipt"))

	// The reply takes the next sequence of the same conversation.
	if seq := bob.mustSend("alice", "hi alice"); seq != 2 {
		t.Fatalf("reply seq %d, want 2", seq)
	}
	alice.expect(isMessage("bob", 2))

	// Presence: away and back, then offline after the grace period, online again on the other node.
	bob.call(map[string]any{"op": "presence", "status": "away"})
	alice.expect(isPresence("bob", "away"))
	bob.call(map[string]any{"op": "presence", "status": "online"})
	alice.expect(isPresence("bob", "online"))
	bob.close()
	alice.expect(isPresence("bob", "offline"))
	bob = dialWS(t, c.nodes[0], "bob", "")
	alice.expect(isPresence("bob", "online"))

	// The friends answer carries current presence; revisions only grow.
	f := alice.call(map[string]any{"op": "friends"})
	if st := f.Get(`presence.#(user=="bob")`); st.Get("status").Str != "online" || st.Get("rev").Uint() == 0 {
		t.Fatalf("friends: %s", f.Raw)
	}
}

// A reconnect within the grace period does not flash "offline" to friends.
func TestQuickReconnectKeepsPresence(t *testing.T) {
	c := newCluster(t, 2, "", func(_ *messaging.Config, r *relay.Config) { r.PresenceGrace = 2 * waitLimit })
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[0], "bob", "")
	befriend(t, alice, bob)
	bob.close()
	bob = dialWS(t, c.nodes[1], "bob", "") // another node, even
	bob.close()
	bob = dialWS(t, c.nodes[0], "bob", "")
	alice.none("presence change", isOp("presence"))
}

// Alice's second device sees what she sends; receipts and replies reach both devices.
func TestMultiDevice(t *testing.T) {
	c := newCluster(t, 2, "", nil)
	phone := dialWS(t, c.nodes[0], "alice", "phone")
	laptop := dialTCP(t, c.nodes[1], "alice", "laptop")
	bob := dialWS(t, c.nodes[1], "bob", "")
	if phone.hello.Get("device").Str != "phone" || laptop.hello.Get("device").Str != "laptop" {
		t.Fatalf("hello devices: %s / %s", phone.hello.Raw, laptop.hello.Raw)
	}
	seq := phone.mustSend("bob", "from my phone")
	laptop.expect(func(f gjson.Result) bool {
		return isMessage("alice", seq)(f) && f.Get("to").Str == "bob" && f.Get("body.text").Str == "from my phone"
	})
	bob.expect(isMessage("alice", seq))
	phone.none("echo on the sending device", isOp("message"))

	bob.call(map[string]any{"op": "receipt", "peer": "alice", "kind": "read", "seq": seq})
	for _, d := range []*client{phone, laptop} {
		d.expect(func(f gjson.Result) bool {
			return f.Get("op").Str == "receipt" && f.Get("kind").Str == "read" && f.Get("seq").Uint() == seq
		})
	}
	bob.mustSend("alice", "got it")
	phone.expect(isMessage("bob", seq+1))
	laptop.expect(isMessage("bob", seq+1))

	// Alice reads on the laptop: the phone learns it (peer = bob, by = alice).
	laptop.call(map[string]any{"op": "receipt", "peer": "bob", "kind": "read", "seq": seq + 1})
	phone.expect(func(f gjson.Result) bool {
		return f.Get("op").Str == "receipt" && f.Get("peer").Str == "bob" && f.Get("by").Str == "alice"
	})
	bob.expect(func(f gjson.Result) bool { return f.Get("op").Str == "receipt" && f.Get("by").Str == "alice" })

	// Signals can target one device.
	if r := bob.call(map[string]any{"op": "signal", "to": "alice", "device": "laptop", "data": map[string]string{"type": "offer", "sdp": "v=0"}}); r.Get("op").Str != "ok" {
		t.Fatalf("signal: %s", r.Raw)
	}
	s := laptop.expect(isOp("signal"))
	if s.Get("from").Str != "bob" || s.Get("data.type").Str != "offer" || s.Get("device").Str != bob.hello.Get("device").Str {
		t.Fatalf("signal frame: %s", s.Raw)
	}
	phone.none("a signal for the laptop", isOp("signal"))
}

// A resend with the same id is stored once and answered with the original sequence; another message under
// a used id is refused rather than lost.
func TestResendIsStoredOnce(t *testing.T) {
	c := newCluster(t, 1, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[0], "bob", "")
	frame := func() map[string]any {
		return map[string]any{"op": "send", "id": "m-1", "to": "bob", "body": map[string]string{"text": "once"}}
	}
	first := alice.call(frame())
	again := alice.call(frame())
	if first.Get("seq").Uint() != 1 || again.Get("seq").Uint() != 1 || !again.Get("duplicate").Bool() || first.Get("duplicate").Bool() {
		t.Fatalf("first %s, again %s", first.Raw, again.Raw)
	}
	if first.Get("ts").Int() != again.Get("ts").Int() {
		t.Fatalf("a resend reports the original time: %s vs %s", first.Raw, again.Raw)
	}
	other := frame()
	other["body"] = "something else"
	wantError(t, alice.call(other), "id_reused")
	if seq := alice.mustSend("bob", "next"); seq != 2 {
		t.Fatalf("next seq %d, want 2", seq)
	}
	h := bob.call(map[string]any{"op": "history", "peer": "alice"})
	if n := len(h.Get("messages").Array()); n != 2 || h.Get("last").Uint() != 2 {
		t.Fatalf("history: %s", h.Raw)
	}
}

// A raw TCP client and a WebSocket client talk to each other.
func TestTCPAndWebSocketTalk(t *testing.T) {
	c := newCluster(t, 2, "", nil)
	native := dialTCP(t, c.nodes[0], "nat", "")
	web := dialWS(t, c.nodes[1], "web", "")
	for i := 1; i <= 5; i++ {
		native.mustSend("web", fmt.Sprintf("tcp %d", i))
		web.expect(func(f gjson.Result) bool {
			return isMessage("nat", uint64(2*i-1))(f) && f.Get("body.text").Str == fmt.Sprintf("tcp %d", i)
		})
		web.mustSend("nat", fmt.Sprintf("ws %d", i))
		native.expect(func(f gjson.Result) bool {
			return isMessage("web", uint64(2*i))(f) && f.Get("body.text").Str == fmt.Sprintf("ws %d", i)
		})
	}
	native.ping()
	// Several frames in one TCP write, one per line, answered in order.
	native.sendRaw(`{"op":"ping","id":"a"}` + "\n" + `{"op":"ping","id":"b"}`)
	native.expectNext("pong a", func(f gjson.Result) bool { return f.Get("id").Str == "a" })
	native.expectNext("pong b", func(f gjson.Result) bool { return f.Get("id").Str == "b" })
}

// History pages backwards by sequence.
func TestHistoryPagesBackwards(t *testing.T) {
	c := newCluster(t, 1, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	dialWS(t, c.nodes[0], "bob", "")
	for i := 1; i <= 25; i++ {
		alice.mustSend("bob", fmt.Sprint(i))
	}
	before := uint64(0)
	var pages []string
	for {
		req := map[string]any{"op": "history", "peer": "bob", "limit": 10}
		if before > 0 {
			req["before"] = before
		}
		h := alice.call(req)
		msgs := h.Get("messages").Array()
		pages = append(pages, fmt.Sprintf("%d-%d more=%v", msgs[0].Get("seq").Uint(), msgs[len(msgs)-1].Get("seq").Uint(), h.Get("more").Bool()))
		for i, m := range msgs {
			if m.Get("body.text").Str != fmt.Sprint(m.Get("seq").Uint()) || i > 0 && m.Get("seq").Uint() != msgs[i-1].Get("seq").Uint()+1 {
				t.Fatalf("page %s", h.Raw)
			}
		}
		if !h.Get("more").Bool() {
			break
		}
		before = msgs[0].Get("seq").Uint()
	}
	if got := fmt.Sprint(pages); got != "[16-25 more=true 6-15 more=true 1-5 more=false]" {
		t.Fatalf("pages %s", got)
	}
	if h := alice.call(map[string]any{"op": "history", "peer": "nobody-yet"}); h.Get("last").Uint() != 0 || len(h.Get("messages").Array()) != 0 {
		t.Fatalf("empty history: %s", h.Raw)
	}
}

// Both users write to one conversation at once, through two relay nodes and two service instances: every
// message gets its own sequence, the sequence has no gaps, and history holds each message once in that order.
func TestConcurrentSendersShareOneGapFreeSequence(t *testing.T) {
	c := newCluster(t, 2, "", func(_ *messaging.Config, r *relay.Config) {
		r.Limits.MessagesPerSecond, r.Limits.FramesPerSecond = 1e6, 1e6
	})
	writers := []*client{
		dialWS(t, c.nodes[0], "alice", "a1"), dialTCP(t, c.nodes[1], "alice", "a2"),
		dialWS(t, c.nodes[1], "bob", "b1"), dialTCP(t, c.nodes[0], "bob", "b2"),
	}
	const each = 40
	for i, w := range writers {
		to := map[string]string{"alice": "bob", "bob": "alice"}[w.user]
		for n := range each {
			w.sendJSON(map[string]any{"op": "send", "id": fmt.Sprintf("w%d-%d", i, n), "to": to, "body": fmt.Sprintf("w%d-%d", i, n)})
		}
	}
	bySeq := map[uint64]string{}
	for i, w := range writers {
		for n := range each {
			id := fmt.Sprintf("w%d-%d", i, n)
			a := w.expect(func(f gjson.Result) bool { return f.Get("id").Str == id && f.Get("op").Str != "message" })
			if a.Get("op").Str != "sent" {
				t.Fatalf("%s: %s", id, a.Raw)
			}
			if prev, dup := bySeq[a.Get("seq").Uint()]; dup {
				t.Fatalf("seq %d given to %s and %s", a.Get("seq").Uint(), prev, id)
			}
			bySeq[a.Get("seq").Uint()] = id
		}
	}
	total := uint64(len(writers) * each)
	h := writers[0].call(map[string]any{"op": "history", "peer": "bob", "limit": 200})
	msgs := h.Get("messages").Array()
	if h.Get("last").Uint() != total || uint64(len(msgs)) != total {
		t.Fatalf("last %d, %d messages; want %d", h.Get("last").Uint(), len(msgs), total)
	}
	for i, m := range msgs {
		if seq := m.Get("seq").Uint(); seq != uint64(i+1) || m.Get("body").Str != bySeq[seq] {
			t.Fatalf("history[%d] = %s, want seq %d = %s", i, m.Raw, i+1, bySeq[uint64(i+1)])
		}
	}
}
