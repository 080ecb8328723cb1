package sharedobject_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/rso-server/rso/sharedobject"
	"github.com/rso-server/rso/sharedobject/backend"
)

// The node's own lock (its map of objects and sessions) never waits on one object's lock: a call that is
// stuck behind a busy object must not stop every other object from being subscribed to.
func TestBusyObjectDoesNotBlockTheNode(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a := dial(t, n.url, "")
	sub(t, a, "busy", true)
	update(t, a, "busy", true, set("x", 0, 1))

	unlock := HoldLock(t, n, "busy")
	api := backend.NewAPI(n.nc)
	done := make(chan error, 1)
	go func() { // a server-API read of the busy object waits for its lock
		_, err := api.Get(context.Background(), backend.Persistent("busy"))
		done <- err
	}()
	waitFor(t, "the API request to reach the node", func() bool { return sharedobject.APIRequestsInProgress(n.node) == 1 })

	b := dial(t, n.url, "")
	if s := sub(t, b, "other", true); s.Version != 0 {
		t.Fatalf("other object served at v%d, want v0", s.Version)
	}
	update(t, b, "other", true, set("y", 0, 2))
	unlock()
	if err := <-done; err != nil {
		t.Fatalf("API read of the busy object, once free: %v", err)
	}
}

// HoldLock holds an object's lock until the returned func (or the end of the test).
func HoldLock(t *testing.T, n *testNode, obj string) func() {
	unlock := sharedobject.HoldObjectLock(n.node, obj, true)
	var once sync.Once
	release := func() { once.Do(unlock) }
	t.Cleanup(release)
	return release
}

// After a NATS reconnect every replica reads what it missed; one slow log must not hold up the others, and
// the reads at once stay bounded.
func TestReconnectCatchUpsRunConcurrentlyAndBounded(t *testing.T) {
	srv := startNATS(t, "")
	n := startNode(t, srv, nil)
	a := dial(t, n.url, "")
	const objects = sharedobject.MaxParallelCatchUps + 4
	for i := range objects {
		obj := fmt.Sprintf("o%d", i)
		sub(t, a, obj, true)
		update(t, a, obj, true, set("x", 0, i))
	}

	var mu sync.Mutex
	inFlight, most, reads := 0, 0, 0
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	sharedobject.BeforeLogRead(n.node, func(subject string) {
		if !strings.HasPrefix(subject, "rso.so.p.") {
			return
		}
		mu.Lock()
		inFlight++
		reads++
		most = max(most, inFlight)
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
	})
	if err := srv.DisconnectClientByID(sharedobject.ClientID(n.node)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "catch-ups to run side by side", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return inFlight >= sharedobject.MaxParallelCatchUps
	})
	free()
	waitFor(t, "every replica to catch up", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return reads >= objects && inFlight == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if most > sharedobject.MaxParallelCatchUps {
		t.Fatalf("%d catch-ups ran at once, want at most %d", most, sharedobject.MaxParallelCatchUps)
	}
	for i := range objects { // and the node still commits to each of them
		update(t, a, fmt.Sprintf("o%d", i), true, set("x", 1, -i))
	}
}
