package p2p_test

import (
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// The seed's friend-list hash, counted at the friends service: a client that presents the hash of the
// cached list costs no request; any other hash makes the messaging service fetch the list.
func TestFriendListHashAvoidsRequests(t *testing.T) {
	c := newCluster(t, 2, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[1], "bob", "")
	carol := dialWS(t, c.nodes[1], "carol", "")
	befriend(t, alice, bob)
	alice.expect(isOp("friends")) // pushed after the accept
	gets := func() uint64 { return c.friendsStats().Gets }

	// 1. No hash: fetched; the list and h1.
	before := gets()
	r := alice.call(map[string]any{"op": "friends"})
	h1 := r.Get("hash").Str
	if len(h1) != 32 || r.Get("not_modified").Bool() || !contains(r.Get("friends"), "bob") || gets() != before+1 {
		t.Fatalf("fetch without hash: %s (gets %d → %d)", r.Raw, before, gets())
	}
	// 2. h1: not modified, from the cache.
	before = gets()
	r = alice.call(map[string]any{"op": "friends", "hash": h1})
	if !r.Get("not_modified").Bool() || r.Get("hash").Str != h1 || r.Get("friends").Exists() || gets() != before {
		t.Fatalf("fetch with h1: %s (gets %d → %d)", r.Raw, before, gets())
	}
	if st := r.Get(`presence.#(user=="bob").status`).Str; st != "online" {
		t.Fatalf("not_modified still carries presence: %s", r.Raw)
	}
	// 3. Add a friend.
	befriend(t, alice, carol)
	alice.expect(func(f gjson.Result) bool { return f.Get("op").Str == "friends" && contains(f.Get("friends"), "carol") })
	// 4. h1 again: the list changed, so it is fetched; the new list and h2.
	before = gets()
	r = alice.call(map[string]any{"op": "friends", "hash": h1})
	h2 := r.Get("hash").Str
	if r.Get("not_modified").Bool() || h2 == h1 || !contains(r.Get("friends"), "carol") || gets() != before+1 {
		t.Fatalf("fetch with h1 after the change: %s (gets %d → %d)", r.Raw, before, gets())
	}
	// 5. h2: not modified.
	before = gets()
	r = alice.call(map[string]any{"op": "friends", "hash": h2})
	if !r.Get("not_modified").Bool() || gets() != before {
		t.Fatalf("fetch with h2: %s (gets %d → %d)", r.Raw, before, gets())
	}
}

// Requests, accepts, removals and blocks change both lists and reach both users' devices.
func TestFriendActions(t *testing.T) {
	c := newCluster(t, 2, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	alicePhone := dialTCP(t, c.nodes[1], "alice", "phone")
	bob := dialWS(t, c.nodes[1], "bob", "")

	r := alice.call(map[string]any{"op": "friend", "action": "request", "user": "bob"})
	if !contains(r.Get("outgoing"), "bob") {
		t.Fatalf("request: %s", r.Raw)
	}
	bob.expect(func(f gjson.Result) bool { return isOp("friends")(f) && contains(f.Get("incoming"), "alice") })
	alicePhone.expect(func(f gjson.Result) bool { return isOp("friends")(f) && contains(f.Get("outgoing"), "bob") })
	alice.none("her own change pushed back to the asking connection", isOp("friends"))

	// Asking back is accepting.
	r = bob.call(map[string]any{"op": "friend", "action": "request", "user": "alice"})
	if !contains(r.Get("friends"), "alice") || len(r.Get("incoming").Array()) != 0 {
		t.Fatalf("request back: %s", r.Raw)
	}
	alice.expect(func(f gjson.Result) bool {
		return isOp("friends")(f) && contains(f.Get("friends"), "bob") && f.Get(`presence.#(user=="bob").status`).Str == "online"
	})

	r = alice.call(map[string]any{"op": "friend", "action": "remove", "user": "bob"})
	if len(r.Get("friends").Array()) != 0 {
		t.Fatalf("remove: %s", r.Raw)
	}
	bob.expect(func(f gjson.Result) bool { return isOp("friends")(f) && len(f.Get("friends").Array()) == 0 })
	// Removed friends are no longer told about presence.
	alicePhone.call(map[string]any{"op": "presence", "status": "away"})
	bob.none("presence of a removed friend", isOp("presence"))

	wantError(t, alice.call(map[string]any{"op": "friend", "action": "request", "user": "nobody"}), "unknown_user")
	wantError(t, alice.call(map[string]any{"op": "friend", "action": "poke", "user": "bob"}), "bad_frame")
	wantError(t, alice.call(map[string]any{"op": "friend", "action": "request", "user": "alice"}), "bad_frame")
}

// A relay node that dies (no shutdown: its NATS connection is cut, its heartbeats stop) takes its users
// offline within the node TTL plus the sweep interval.
func TestDeadNodeTakesUsersOffline(t *testing.T) {
	c := newCluster(t, 2, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[1], "bob", "")
	befriend(t, alice, bob)

	dead := c.nodes[1]
	start := time.Now()
	dead.nc.Close() // no bye, no heartbeat, no cleanup
	alice.expect(isPresence("bob", "offline"))
	elapsed := time.Since(start)
	// The documented bound: NodeTTL + SweepInterval + JetStream's expiry check (at most every 250 ms);
	// plus a second of scheduling slack for -race on a small machine.
	if bound := testNodeTTL + testSweep + 250*time.Millisecond + time.Second; elapsed > bound {
		t.Fatalf("offline after %s; the bound is %s", elapsed, bound)
	}
	t.Logf("offline %s after the node died (NodeTTL %s + sweep %s + expiry check 250ms)", elapsed.Round(time.Millisecond), testNodeTTL, testSweep)
	wantError(t, alice.call(map[string]any{"op": "signal", "to": "bob", "data": map[string]string{"type": "offer"}}), "offline")
	// Messages still go through: they wait for Bob.
	alice.mustSend("bob", "for later")

	// Bob comes back on the live node.
	bob = dialWS(t, c.nodes[0], "bob", "")
	alice.expect(isPresence("bob", "online"))
	if s := bob.call(map[string]any{"op": "sync"}); s.Get(`convs.#(peer=="alice").messages.0.body.text`).Str != "for later" {
		t.Fatalf("sync: %s", s.Raw)
	}
}

// A node that was only cut off for longer than its TTL (and swept) announces its users again when it
// comes back.
func TestNodeBackFromTheDeadAnnouncesItsUsers(t *testing.T) {
	c := newCluster(t, 2, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[1], "bob", "")
	befriend(t, alice, bob)
	// Delete the node's key as an expiry would: the sweep takes Bob offline, the next heartbeat restores it.
	ctx := t.Context()
	js := jetStream(t, c.nodes[0].nc)
	kv, err := js.KeyValue(ctx, "RSO_RELAY_NODES")
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, c.nodes[1].relay.NodeID()); err != nil {
		t.Fatal(err)
	}
	alice.expect(isPresence("bob", "offline"))
	alice.expect(isPresence("bob", "online"))
	bob.ping()
}

// A presence change right after a friendship starts reaches the new friend: the instance that ran the
// action caches both new lists at once, without waiting for the change notices.
func TestPresenceReachesANewFriendAtOnce(t *testing.T) {
	c := newCluster(t, 1, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[0], "bob", "")
	alice.call(map[string]any{"op": "friend", "action": "request", "user": "bob"})
	for i := range 20 {
		r := bob.call(map[string]any{"op": "friend", "action": "accept", "user": "alice"})
		if !contains(r.Get("friends"), "alice") {
			t.Fatalf("accept: %s", r.Raw)
		}
		alice.call(map[string]any{"op": "presence", "status": "away"})
		bob.expect(func(f gjson.Result) bool {
			return isOp("presence")(f) && f.Get("user").Str == "alice" && f.Get("status").Str == "away"
		})
		alice.call(map[string]any{"op": "presence", "status": "online"})
		bob.expect(func(f gjson.Result) bool {
			return isOp("presence")(f) && f.Get("user").Str == "alice" && f.Get("status").Str == "online"
		})
		if i < 19 { // and again, from scratch
			bob.call(map[string]any{"op": "friend", "action": "remove", "user": "alice"})
			alice.call(map[string]any{"op": "friend", "action": "request", "user": "bob"})
		}
	}
}
