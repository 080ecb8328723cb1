package messaging

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rso-server/rso/internal/natstest"
	"github.com/rso-server/rso/p2p/internal/friendlist"
)

// The cache keeps the list with the highest revision: a slow get reply (or a late notice) carrying an
// older list does not replace a newer one; 0 (never stored) is the oldest; an expired entry gives way.
func TestFriendCacheKeepsNewestRevision(t *testing.T) {
	c := newFriendCache(time.Hour, 100)
	blocked := friendlist.List{Blocked: []string{"mallory"}}
	if e := c.put("bob", blocked, 7); e.rev != 7 || !e.list.HasBlocked("mallory") {
		t.Fatalf("first put: %+v", e)
	}
	for _, rev := range []uint64{6, 0} {
		e := c.put("bob", friendlist.List{}, rev)
		if e.rev != 7 || !e.list.HasBlocked("mallory") {
			t.Fatalf("put at rev %d replaced rev 7: %+v", rev, e)
		}
		if g, ok := c.get("bob"); !ok || !g.list.HasBlocked("mallory") {
			t.Fatalf("after put at rev %d the cache holds %+v", rev, g)
		}
	}
	if e := c.put("bob", friendlist.List{}, 7); e.list.HasBlocked("mallory") { // same revision: same list, refreshed
		t.Fatalf("put at the same rev kept the old entry: %+v", e)
	}
	if e := c.put("bob", blocked, 9); e.rev != 9 || !e.list.HasBlocked("mallory") {
		t.Fatalf("newer put: %+v", e)
	}

	// Never stored (0) is replaced by anything.
	if e := c.put("carol", friendlist.List{}, 0); e.rev != 0 {
		t.Fatalf("%+v", e)
	}
	if e := c.put("carol", blocked, 1); e.rev != 1 {
		t.Fatalf("rev 1 did not replace rev 0: %+v", e)
	}

	// An expired entry gives way even to a lower revision (the bucket may have been recreated).
	c = newFriendCache(time.Millisecond, 100)
	c.put("bob", blocked, 7)
	time.Sleep(5 * time.Millisecond)
	if e := c.put("bob", friendlist.List{}, 3); e.rev != 3 {
		t.Fatalf("expired entry kept: %+v", e)
	}
}

// Notices of changed lists sent while the NATS connection was down are lost: after a reconnect the service
// forgets every cached list (and reads them again when needed).
func TestReconnectForgetsCachedLists(t *testing.T) {
	srv := natstest.Start(t)
	nc := natstest.Connect(t, srv.ClientURL(), nats.Name("friendcache-test"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := New(ctx, nc, Config{SweepInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	s.friends.put("bob", friendlist.List{Blocked: []string{"mallory"}}, 7)

	id, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.DisconnectClientByID(id); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := s.friends.get("bob"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob's cached list survived the reconnect")
		}
	}
}
