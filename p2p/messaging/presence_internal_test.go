package messaging

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/internal/natstest"
)

// connectEmbedded starts an embedded NATS for one test and connects to it.
func connectEmbedded(t *testing.T, name string) *nats.Conn {
	t.Helper()
	return natstest.Connect(t, natstest.Start(t).ClientURL(), nats.Name(name))
}

// newPresenceService runs one messaging service on an embedded NATS, with a sweep that never runs by
// itself (the tests call sweepNode), and returns it with the RSO_RELAY_NODES bucket.
func newPresenceService(t *testing.T) (*Service, jetstream.KeyValue) {
	t.Helper()
	nc := connectEmbedded(t, "presence-test")
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
	return s, s.nodes
}

func markerExists(t *testing.T, s *Service, key string) bool {
	t.Helper()
	_, err := s.presence.Get(t.Context(), key)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// A hello for a user whose record already lists the node rewrites the markers (a sweep that was running
// may have removed them) and the record (a sweep that read it before must lose its compare-and-set).
func TestHelloAgainRewritesMarkersAndRecord(t *testing.T) {
	s, _ := newPresenceService(t)
	ctx := t.Context()
	if werr := s.presenceUp(ctx, "alice", "nodeA"); werr != nil {
		t.Fatal(werr)
	}
	_, rev1, err := s.loadPresence(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	// A sweep took the markers away but has not changed the record yet.
	s.presence.Purge(ctx, nodeMarkerKey("nodeA", "alice"))
	s.presence.Purge(ctx, nodeHasUsersKey("nodeA"))
	if werr := s.presenceUp(ctx, "alice", "nodeA"); werr != nil {
		t.Fatal(werr)
	}
	if !markerExists(t, s, nodeMarkerKey("nodeA", "alice")) || !markerExists(t, s, nodeHasUsersKey("nodeA")) {
		t.Fatal("hello again did not rewrite the node markers")
	}
	rec, rev2, err := s.loadPresence(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if rev2 <= rev1 {
		t.Fatalf("record not rewritten by hello again: rev %d, then %d", rev1, rev2)
	}
	if rec.Status != StatusOnline || !slices.Equal(rec.Nodes, []string{"nodeA"}) {
		t.Fatalf("record %+v", rec)
	}
}

// A sweep that found the node's key missing stops once the key is back (the node came back and announces
// its users): it leaves the users online there and their markers in place.
func TestSweepStopsWhenNodeIsBack(t *testing.T) {
	s, nodes := newPresenceService(t)
	ctx := t.Context()
	for _, u := range []string{"alice", "bob"} {
		if werr := s.presenceUp(ctx, u, "nodeA"); werr != nil {
			t.Fatal(werr)
		}
	}
	// The sweep decided the node was dead; then its key came back before the users were reached.
	if _, err := nodes.Put(ctx, "nodeA", []byte("now")); err != nil {
		t.Fatal(err)
	}
	s.sweepNode(ctx, "nodeA")
	for _, u := range []string{"alice", "bob"} {
		rec, _, err := s.loadPresence(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Status != StatusOnline || !slices.Contains(rec.Nodes, "nodeA") {
			t.Fatalf("%s swept although the node is back: %+v", u, rec)
		}
		if !markerExists(t, s, nodeMarkerKey("nodeA", u)) {
			t.Fatalf("%s's marker removed although the node is back", u)
		}
	}
	if !markerExists(t, s, nodeHasUsersKey("nodeA")) {
		t.Fatal("h key removed although the node is back")
	}

	// Without the key, the same sweep takes them offline and clears the markers.
	if err := nodes.Purge(ctx, "nodeA"); err != nil {
		t.Fatal(err)
	}
	s.sweepNode(ctx, "nodeA")
	for _, u := range []string{"alice", "bob"} {
		if rec, _, _ := s.loadPresence(ctx, u); rec.Status != StatusOffline || len(rec.Nodes) != 0 {
			t.Fatalf("%s not swept: %+v", u, rec)
		}
		if markerExists(t, s, nodeMarkerKey("nodeA", u)) {
			t.Fatalf("%s's marker left after the sweep", u)
		}
	}
	if markerExists(t, s, nodeHasUsersKey("nodeA")) {
		t.Fatal("h key left after the sweep")
	}
}

// A marker that a hello rewrote after presenceDown read it stays: the purge is at the revision read.
// (The interleaving itself cannot be driven from outside; this checks the conditional purge the fix relies
// on: a purge at an older revision leaves the marker.)
func TestMarkerPurgeIsConditional(t *testing.T) {
	s, _ := newPresenceService(t)
	ctx := t.Context()
	key := nodeMarkerKey("nodeA", "alice")
	old, err := s.presence.Put(ctx, key, []byte("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.presence.Put(ctx, key, []byte("alice")); err != nil { // the hello's rewrite
		t.Fatal(err)
	}
	if err := s.presence.Purge(ctx, key, jetstream.PurgeTTL(markerTTL), jetstream.LastRevision(old)); err == nil {
		t.Fatal("purge at an older revision succeeded")
	}
	if !markerExists(t, s, key) {
		t.Fatal("marker gone")
	}
}

// Only refusals of what the client sent are flagged for the relay's abuse count: a client re-sending as
// told while the service restarts or is busy must never be closed with 4009 for it.
func TestOnlyTheClientsFaultsAreFlaggedRefused(t *testing.T) {
	s, _ := newPresenceService(t)
	c := caller{user: "alice", device: "d", conn: "c1", node: "n1"}
	if out, refused := s.handle(context.Background(), c, []byte(`{"op":"send","id":"x"}`)); !refused {
		t.Errorf("a send without to or body answered %s, not flagged refused", out)
	}
	s.closing.Store(true)
	defer s.closing.Store(false)
	if out, refused := s.handle(context.Background(), c, []byte(`{"op":"send","id":"y","to":"bob","body":1}`)); refused {
		t.Errorf("the restarting service's answer %s is flagged as the client's fault", out)
	}
}
