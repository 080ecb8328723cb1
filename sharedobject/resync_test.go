package sharedobject_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/sharedobject"
)

func TestReconnectGetsExactlyWhatItMissed(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a := dial(t, n.url, "")
	sub(t, a, "doc", true)
	update(t, a, "doc", true, set("keep", 0, 1), set("edit", 0, 1), set("drop", 0, 1))
	b := dial(t, n.url, "")
	seen := sub(t, b, "doc", true)
	b.Close()

	update(t, a, "doc", true, set("edit", 1, 2))
	update(t, a, "doc", true, del("drop", 2))
	update(t, a, "doc", true, set("new", 3, "n"))
	update(t, a, "doc", true, set("tmp", 4, 0))
	update(t, a, "doc", true, del("tmp", 5)) // created and deleted while b was away

	b = dial(t, n.url, "")
	s, err := b.Subscribe(ctxT(t), "doc", true, seen.Version, seen.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	if got := codes(s); got != `change:edit=2 change:new="n" delete:drop delete:tmp` || s.Version != 6 {
		t.Fatalf("delta %q v%d", got, s.Version)
	}
	// Applying the delta to what b had gives the server's state.
	r := client.Replica{}
	r.Apply(seen)
	r.Apply(s)
	if len(r.Slots) != 3 || string(r.Slots["edit"]) != "2" || string(r.Slots["new"]) != `"n"` || string(r.Slots["keep"]) != "1" {
		t.Fatalf("replica after delta: %v", r.Slots)
	}
	// Up to date: an empty delta.
	if s, _ := b.Subscribe(ctxT(t), "doc", true, 6, seen.Epoch); len(s.Changes) != 0 {
		t.Fatalf("up-to-date resync sent %q", codes(s))
	}
}

func TestResyncOutsideWindowOrOtherEpochIsFull(t *testing.T) {
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) { c.ResyncWindow = 3 })
	a := dial(t, n.url, "")
	first := sub(t, a, "doc", true)
	for i := range 5 {
		update(t, a, "doc", true, set("n", uint64(i), i))
	}
	b := dial(t, n.url, "")
	cases := []struct {
		name    string
		version uint64
		epoch   string
		full    bool
	}{
		{"inside the window", 3, "", false},
		{"outside the window", 1, "", true},
		{"another epoch", 4, "not-this-one", true},
		{"ahead of the server", 99, "", true},
	}
	sEpoch := update(t, a, "doc", true, set("x", 5, 0)).Epoch
	if sEpoch == "" || first.Epoch != "" {
		t.Fatalf("epoch: new object %q, after first write %q", first.Epoch, sEpoch)
	}
	for _, tc := range cases {
		epoch := tc.epoch
		if epoch == "" {
			epoch = sEpoch
		}
		s, err := b.Subscribe(ctxT(t), "doc", true, tc.version, epoch)
		if err != nil {
			t.Fatal(err)
		}
		full := len(s.Changes) > 0 && s.Changes[0].Code == client.CodeClear
		if full != tc.full {
			t.Errorf("%s: got %q, want full=%v", tc.name, codes(s), tc.full)
		}
	}
}

func TestRetriedRequestIsAppliedOnce(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	// A named user: its request ids outlive its connection (an unnamed one's do not, see atmostonce_test.go).
	a := dial(t, n.url+"?user=alice", "")
	sub(t, a, "ctr", true)
	first, err := a.UpdateWithID(ctxT(t), "retry-1", "ctr", true, []client.Change{set("n", 0, 1), del("none", 0)})
	if err != nil || first.Version != 1 {
		t.Fatalf("%v v%d", err, first.Version)
	}
	update(t, a, "ctr", true, set("other", 1, true))

	// The connection dropped before the answer arrived; the client re-sends on a new connection.
	a.Close()
	b := dial(t, n.url+"?user=alice", "")
	sub(t, b, "ctr", true)
	again, err := b.UpdateWithID(ctxT(t), "retry-1", "ctr", true, []client.Change{set("n", 0, 1), del("none", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if codes(again) != "success:n" || again.Version != 2 {
		t.Fatalf("retry answered %q v%d; want the original success and no new version", codes(again), again.Version)
	}
}

func TestTemporaryObjectVanishesAfterLastSubscriber(t *testing.T) {
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) { c.TempGrace = 50 * time.Millisecond })
	a := dial(t, n.url, "")
	sub(t, a, "lobby", false)
	sub(t, a, "kept", true)
	first := update(t, a, "lobby", false, set("who", 0, "a"))
	update(t, a, "kept", true, set("who", 0, "a"))
	a.Close()

	// Each probe subscribes, which keeps the object alive for another grace period: probe sparingly.
	waitFor(t, "the temporary object to vanish", func() bool {
		time.Sleep(200 * time.Millisecond)
		c := dial(t, n.url, "")
		defer c.Close()
		s := sub(t, c, "lobby", false)
		return codes(s) == "clear" && s.Version == 0
	})
	c := dial(t, n.url, "")
	if s := sub(t, c, "kept", true); codes(s) != `clear change:who="a"` {
		t.Fatalf("persistent object lost: %q", codes(s))
	}
	// A client that remembers the old epoch resyncs fully.
	s, _ := c.Subscribe(ctxT(t), "lobby", false, first.Version, first.Epoch)
	if codes(s) != "clear" {
		t.Fatalf("old-epoch resync: %q", codes(s))
	}
}

func TestTemporaryObjectStaysWhileAnotherNodeUsesIt(t *testing.T) {
	srv := startNATS(t, "")
	grace := func(c *sharedobject.Config) { c.TempGrace = 50 * time.Millisecond }
	n1, n2 := startNode(t, srv, grace), startNode(t, srv, grace)
	checked := make(chan struct{}, 1)
	sharedobject.OnVanishCheck(n1.node, func(string) { checked <- struct{}{} })
	a, b := dial(t, n1.url, ""), dial(t, n2.url, "")
	sub(t, a, "shared", false)
	sub(t, b, "shared", false)
	update(t, a, "shared", false, set("k", 0, 1))
	nextSync(t, b)
	a.Close()
	select { // node 1 dropped its replica and decided whether the object goes
	case <-checked:
	case <-time.After(waitLimit):
		t.Fatal("node 1 never dropped its replica")
	}
	c := dial(t, n1.url, "")
	if s := sub(t, c, "shared", false); codes(s) != "clear change:k=1" {
		t.Fatalf("object vanished while node 2 still had a subscriber: %q", codes(s))
	}
}

func TestPersistentObjectSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startNATS(t, dir)
	n := startNode(t, srv, nil)
	a := dial(t, n.url, "")
	sub(t, a, "keep", true)
	var last *client.Sync
	for i := range 300 { // past a snapshot: the log is rolled up on the way
		last = update(t, a, "keep", true, set("n", uint64(i), i), set("slot"+string(rune('a'+i%5)), uint64(i), i))
	}
	a.Close()
	n.stop()
	srv.Shutdown()
	srv.WaitForShutdown()

	srv2 := startNATS(t, dir)
	n2 := startNode(t, srv2, nil)
	b := dial(t, n2.url, "")
	s := sub(t, b, "keep", true)
	r := client.Replica{}
	r.Apply(s)
	if s.Version != last.Version || s.Epoch != last.Epoch || string(r.Slots["n"]) != "299" || len(r.Slots) != 6 {
		t.Fatalf("after restart v%d %q %v; want v%d %q n=299 and 6 slots", s.Version, s.Epoch, r.Slots, last.Version, last.Epoch)
	}
	// A client that saw version 295 gets only the delta, from the tombstones and versions kept.
	d, _ := b.Subscribe(ctxT(t), "keep", true, last.Version-5, last.Epoch)
	if len(d.Changes) == 0 || d.Changes[0].Code == client.CodeClear {
		t.Fatalf("delta after restart: %q", codes(d))
	}
}

func TestRetryQueuedBehindItsOriginalIsAppliedOnce(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a := dial(t, n.url, "")
	sub(t, a, "ctr", true)
	frame := []byte(`{"op":"update","obj":"ctr","persistent":true,"id":"u-1","changes":[{"name":"n","base":0,"value":1}]}`)
	a.WriteRaw(frame)
	a.WriteRaw(frame)
	for i := range 2 {
		s := nextSync(t, a)
		if s.ID != "u-1" || codes(s) != "success:n" || s.Version != 1 {
			t.Fatalf("answer %d: %q v%d, want success at v1 both times", i, codes(s), s.Version)
		}
	}
}

func TestUpdateFromAnEarlierEpochIsRejected(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a := dial(t, n.url, "")
	sub(t, a, "o", false)
	s := update(t, a, "o", false, set("x", 0, 1))
	frame := `{"op":"update","obj":"o","persistent":false,"id":"late","epoch":"old-life","changes":[{"name":"x","base":` +
		strconv.FormatUint(s.Version, 10) + `,"value":2}]}`
	a.WriteRaw([]byte(frame))
	if r := nextSync(t, a); r.ID != "late" || codes(r) != "reject:x=1" {
		t.Fatalf("update from another epoch: %q", codes(r))
	}
	frame = strings.Replace(frame, "old-life", s.Epoch, 1)
	frame = strings.Replace(frame, `"late"`, `"current"`, 1)
	a.WriteRaw([]byte(frame))
	if r := nextSync(t, a); r.ID != "current" || codes(r) != "success:x" {
		t.Fatalf("update with the current epoch: %q", codes(r))
	}
}

// Request ids are chosen by clients, so they are only unique per user: another user's request with the
// same id is a different request and must be applied, not answered as a duplicate.
func TestRequestIDsAreScopedToTheirUser(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	alice := dial(t, n.url+"?user=alice", "")
	bob := dial(t, n.url+"?user=bob", "")
	sub(t, alice, "ctr", true)
	sub(t, bob, "ctr", true)
	if _, err := alice.UpdateWithID(ctxT(t), "1", "ctr", true, []client.Change{set("a", 0, 1)}); err != nil {
		t.Fatal(err)
	}
	s, err := bob.UpdateWithID(ctxT(t), "1", "ctr", true, []client.Change{set("b", 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if codes(s) != "success:b" || s.Version != 2 {
		t.Fatalf("bob's request answered %q v%d, want success:b at v2 (not alice's request replayed)", codes(s), s.Version)
	}
}
