package p2p_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/p2p/messaging"
	"github.com/rso-server/rso/relay"
)

// Bob is offline; Alice's messages wait. Everything stops (relays, services, NATS) and starts again on the
// same data folder. Bob signs in and gets every message, once, in order.
func TestOfflineMessagesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, 2, dir, nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[1], "bob", "")
	carol := dialTCP(t, c.nodes[1], "carol", "")
	bob.close()
	const n = 30
	for i := 1; i <= n; i++ {
		alice.mustSend("bob", fmt.Sprintf("while you were away %d", i))
	}
	carol.mustSend("bob", "from carol")
	alice.close()
	carol.close()

	c.stop()
	c.start(2)

	bob = dialWS(t, c.nodes[1], "bob", "")
	s := bob.call(map[string]any{"op": "sync"})
	convs := s.Get("convs").Array()
	if len(convs) != 2 {
		t.Fatalf("sync: want 2 conversations, got %s", s.Raw)
	}
	fromAlice := s.Get(`convs.#(peer=="alice")`)
	msgs := fromAlice.Get("messages").Array()
	if fromAlice.Get("last").Uint() != n || len(msgs) != n || fromAlice.Get("more").Bool() || fromAlice.Get("delivered").Uint() != 0 {
		t.Fatalf("conversation with alice: %s", fromAlice.Raw)
	}
	for i, m := range msgs {
		if m.Get("seq").Uint() != uint64(i+1) || m.Get("from").Str != "alice" || m.Get("body.text").Str != fmt.Sprintf("while you were away %d", i+1) {
			t.Fatalf("message %d: %s", i, m.Raw)
		}
	}
	if m := s.Get(`convs.#(peer=="carol").messages.0`); m.Get("body.text").Str != "from carol" {
		t.Fatalf("conversation with carol: %s", s.Raw)
	}
	// Once: nothing is delivered live as well, and after the receipt a new sync has nothing more.
	bob.none("a live copy of a stored message", isOp("message"))
	bob.call(map[string]any{"op": "receipt", "peer": "alice", "kind": "delivered", "seq": n})
	bob.call(map[string]any{"op": "receipt", "peer": "carol", "kind": "read", "seq": 1})
	again := bob.call(map[string]any{"op": "sync"})
	for _, cv := range again.Get("convs").Array() {
		if len(cv.Get("messages").Array()) != 0 || cv.Get("more").Bool() {
			t.Fatalf("second sync: %s", again.Raw)
		}
	}
	if d := again.Get(`convs.#(peer=="alice").delivered`).Uint(); d != n {
		t.Fatalf("delivered mark %d, want %d", d, n)
	}

	// Alice, after her own login, sees Bob's marks in her sync.
	alice = dialWS(t, c.nodes[0], "alice", "")
	a := alice.call(map[string]any{"op": "sync", "after": map[string]any{"bob": n}})
	if cv := a.Get(`convs.#(peer=="bob")`); cv.Get("peer_delivered").Uint() != n || cv.Get("peer_read").Uint() != 0 || len(cv.Get("messages").Array()) != 0 {
		t.Fatalf("alice's sync: %s", a.Raw)
	}
	// The conversation goes on from where it was.
	if seq := alice.mustSend("bob", "welcome back"); seq != n+1 {
		t.Fatalf("seq after restart %d, want %d", seq, n+1)
	}
	bob.expect(isMessage("alice", n+1))
}

// A sync answer is bounded; the rest follows after the receipts (or with "after").
func TestSyncPages(t *testing.T) {
	c := newCluster(t, 1, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[0], "bob", "")
	bob.close()
	for i := 1; i <= 12; i++ {
		alice.mustSend("bob", fmt.Sprint(i))
	}
	bob = dialWS(t, c.nodes[0], "bob", "")
	var got []uint64
	after := uint64(0)
	for {
		s := bob.call(map[string]any{"op": "sync", "limit": 5, "after": map[string]any{"alice": after}})
		cv := s.Get(`convs.#(peer=="alice")`)
		cv.Get("messages").ForEach(func(_, m gjson.Result) bool {
			got = append(got, m.Get("seq").Uint())
			after = m.Get("seq").Uint()
			return true
		})
		if !cv.Get("more").Bool() {
			break
		}
	}
	if fmt.Sprint(got) != "[1 2 3 4 5 6 7 8 9 10 11 12]" {
		t.Fatalf("paged sync got %v", got)
	}
}

// A backlog larger than a client's outbound queue comes in pages of bounded size: a sync answer must never
// be so large that the relay closes the client as slow (4008), or the next login would fail the same way.
func TestLargeBacklogSyncsInBoundedPages(t *testing.T) {
	c := newCluster(t, 1, "", func(_ *messaging.Config, r *relay.Config) {
		r.Limits.MessagesPerSecond, r.Limits.FramesPerSecond = 10000, 10000
	})
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[0], "bob", "")
	bob.close()
	text := strings.Repeat("x", 15000)
	const n = 300 // 4.5 MB in all: more than the 4 MiB outbound queue
	for i := 1; i <= n; i++ {
		alice.mustSend("bob", text)
	}
	bob = dialWS(t, c.nodes[0], "bob", "")
	count, pages, after := 0, 0, uint64(0)
	for {
		s := bob.call(map[string]any{"op": "sync", "after": map[string]any{"alice": after}})
		if s.Get("op").Str != "sync" {
			t.Fatalf("sync after %d: %s", after, s.Raw)
		}
		pages++
		cv := s.Get(`convs.#(peer=="alice")`)
		cv.Get("messages").ForEach(func(_, m gjson.Result) bool {
			if m.Get("seq").Uint() != after+1 {
				t.Fatalf("seq %d after %d", m.Get("seq").Uint(), after)
			}
			after = m.Get("seq").Uint()
			count++
			return true
		})
		if !cv.Get("more").Bool() {
			break
		}
	}
	if count != n || pages < 5 {
		t.Fatalf("got %d messages in %d pages, want %d in pages of at most 1 MiB", count, pages, n)
	}
}
