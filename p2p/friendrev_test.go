package p2p_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"
)

// Friend lists travel with their RSO_FRIENDS revision (get replies, update replies, change notices), and
// a list older than the cached one never replaces it: a stale notice (or a slow get reply, which the
// service handles the same way) arriving after a block must not let the blocked user write.
func TestStaleFriendListDoesNotUndoABlock(t *testing.T) {
	c := newCluster(t, 1, "", nil)
	alice := dialWS(t, c.nodes[0], "alice", "")
	bob := dialWS(t, c.nodes[0], "bob", "")
	nc := c.connect("test")
	bobToken := base64.RawURLEncoding.EncodeToString([]byte("bob"))
	notices, err := nc.SubscribeSync("rso.friends.changed." + bobToken)
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	bob.call(map[string]any{"op": "friend", "action": "block", "user": "alice"})
	wantError(t, alice.send("bob", "blocked"), "blocked")

	// The revision is the key's in RSO_FRIENDS, everywhere.
	kv, err := jetStream(t, nc).KeyValue(t.Context(), "RSO_FRIENDS")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(t.Context(), bobToken)
	if err != nil {
		t.Fatal(err)
	}
	rev := entry.Revision()
	n, err := notices.NextMsg(waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(n.Data, "rev").Uint(); got != rev {
		t.Fatalf("notice rev %d, want %d: %s", got, rev, n.Data)
	}
	m, err := nc.Request("rso.friends.get", []byte(`{"user":"bob"}`), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(m.Data, "rev").Uint(); got != rev {
		t.Fatalf("get rev %d, want %d: %s", got, rev, m.Data)
	}
	m, err = nc.Request("rso.friends.update", []byte(`{"user":"bob","action":"block","other":"alice"}`), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(m.Data, "rev").Uint(); got != rev { // unchanged: the same revision
		t.Fatalf("update rev %d, want %d: %s", got, rev, m.Data)
	}
	// A block leaves the blocked user's list alone: Alice's was never stored, its revision is 0 (absent).
	if _, err := kv.Get(t.Context(), base64.RawURLEncoding.EncodeToString([]byte("alice"))); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("alice's list: %v", err)
	}
	if gjson.GetBytes(m.Data, "other_rev").Exists() {
		t.Fatalf("update other_rev for a list never stored: %s", m.Data)
	}
	m, err = nc.Request("rso.friends.update", []byte(`{"user":"carol","action":"request","other":"bob"}`), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	if entry, err = kv.Get(t.Context(), bobToken); err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(m.Data, "other_rev").Uint(); got != entry.Revision() || got <= rev {
		t.Fatalf("update other_rev %d, want %d (> %d): %s", got, entry.Revision(), rev, m.Data)
	}
	rev = entry.Revision()
	if _, err := notices.NextMsg(waitLimit); err != nil {
		t.Fatal(err)
	}

	// Older lists, as a slow reply would bring them: an earlier revision, and the never-stored empty list.
	for _, stale := range []uint64{rev - 1, 0} {
		b, _ := json.Marshal(map[string]any{"user": "bob", "hash": "stale", "list": map[string]any{}, "rev": stale})
		if err := nc.PublishMsg(&nats.Msg{Subject: "rso.friends.changed." + bobToken, Data: b}); err != nil {
			t.Fatal(err)
		}
	}
	// Barrier: a last notice from the same connection, which blocks alice for zed. The service applies
	// notices in order on one subscription, so once alice may no longer signal zed the stale ones are in.
	dialWS(t, c.nodes[0], "zed", "")
	b, _ := json.Marshal(map[string]any{"user": "zed", "list": map[string]any{"blocked": []string{"alice"}}, "rev": 1 << 40})
	if err := nc.Publish("rso.friends.changed."+base64.RawURLEncoding.EncodeToString([]byte("zed")), b); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(waitLimit); ; {
		r := alice.call(map[string]any{"op": "signal", "to": "zed", "data": "probe"})
		if r.Get("code").Str == "blocked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the barrier notice was not applied: %s", r.Raw)
		}
	}
	wantError(t, alice.send("bob", "still blocked"), "blocked")

	// A newer list still wins.
	bob.call(map[string]any{"op": "friend", "action": "unblock", "user": "alice"})
	alice.mustSend("bob", "unblocked")
}
