package sharedobject_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/sharedobject"
	"github.com/rso-server/rso/sharedobject/backend"
)

func TestServerSideAPI(t *testing.T) {
	srv := startNATS(t, "")
	n := startNode(t, srv, nil)
	api := backend.NewAPI(n.nc)
	c := dial(t, n.url, "")
	sub(t, c, "game", true)

	v, err := api.Update(ctxT(t), backend.Persistent("game"), map[string]any{"score": 3, "name": "x"})
	if err != nil || v != 1 {
		t.Fatalf("Update: v%d %v", v, err)
	}
	if got := codes(nextSync(t, c)); got != `change:name="x" change:score=3` {
		t.Fatalf("client saw %q", got)
	}
	// Server writes are not checked against a base version: the backend is the authority.
	if _, err := api.Update(ctxT(t), backend.Persistent("game"), map[string]any{"score": 4}, "name"); err != nil {
		t.Fatal(err)
	}
	nextSync(t, c)
	snap, err := api.Get(ctxT(t), backend.Persistent("game"))
	if err != nil || snap.Version != 2 || len(snap.Slots) != 1 || string(snap.Slots["score"]) != "4" {
		t.Fatalf("Get: %+v %v", snap, err)
	}
	if err := api.Send(ctxT(t), backend.Persistent("game"), "referee", "whistle", 1, "two"); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, c); ev.Message == nil || ev.Message.From != "referee" || string(ev.Message.Args) != `[1,"two"]` {
		t.Fatalf("message: %s", describe(ev))
	}
	if v, err := api.Clear(ctxT(t), backend.Persistent("game")); err != nil || v != 3 {
		t.Fatalf("Clear: v%d %v", v, err)
	}
	if got := codes(nextSync(t, c)); got != "delete:score(old 4)" {
		t.Fatalf("clear: %q", got)
	}
	if _, err := api.Get(ctxT(t), backend.Persistent("bad name")); err == nil {
		t.Fatal("Get with a bad name succeeded")
	}
}

func TestLockHoldsClientWritesAndCommitsOneBatch(t *testing.T) {
	srv := startNATS(t, "")
	n1, n2 := startNode(t, srv, nil), startNode(t, srv, nil)
	api := backend.NewAPI(n1.nc)
	c := dial(t, n2.url, "") // the client is on the other node
	sub(t, c, "slides", true)
	update(t, c, "slides", true, set("page", 0, 1))

	lock, err := api.Lock(ctxT(t), backend.Persistent("slides"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan *client.Sync, 1)
	go func() {
		s, _ := c.Update(ctxT(t), "slides", true, []client.Change{set("note", 1, "from client")})
		answered <- s
	}()
	select {
	case s := <-answered:
		t.Fatalf("client write committed while locked: %q", codes(s))
	case <-time.After(200 * time.Millisecond): // the absence of an answer cannot be awaited otherwise
	}
	lock.Set("page", 2)
	lock.Set("title", "Intro")
	v, err := lock.Unlock(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := nextSync(t, c); got.Version != v || codes(got) != `change:page=2(old 1) change:title="Intro"` {
		t.Fatalf("locked changes arrived as %q v%d; want one batch at v%d", codes(got), got.Version, v)
	}
	if s := <-answered; s == nil || codes(s) != "success:note" || s.Version != v+1 {
		t.Fatalf("waiting client write: %v", s)
	}
}

func TestExpiredLockReleasesWritesAndRefusesUnlock(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	api := backend.NewAPI(n.nc)
	c := dial(t, n.url, "")
	sub(t, c, "o", true)
	lock, err := api.Lock(ctxT(t), backend.Persistent("o"), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	update(t, c, "o", true, set("a", 0, 1)) // waits for the expiry, then commits
	lock.Set("a", 2)
	if _, err := lock.Unlock(ctxT(t)); err == nil {
		t.Fatal("unlock of an expired lock succeeded")
	} else if we, ok := err.(*backend.Error); !ok || we.Code != backend.CodeLockExpired {
		t.Fatalf("unlock error %v, want lock_expired", err)
	}
}

func TestValidationHookDecidesBids(t *testing.T) {
	srv := startNATS(t, "")
	n := startNode(t, srv, func(c *sharedobject.Config) { c.HookTimeout = 300 * time.Millisecond })
	// A context without a deadline is fine: RegisterHook bounds its own NATS calls.
	stop, err := backend.RegisterHook(context.Background(), n.nc, "auction", backend.HookConfig{Pattern: "auction/*"},
		func(r *backend.HookRequest) backend.HookVerdict {
			v := backend.HookVerdict{Reject: map[string]string{}}
			for _, c := range r.Changes {
				if c.Name != "price" {
					continue
				}
				var bid, cur float64
				json.Unmarshal(c.Value, &bid)
				json.Unmarshal(c.Current, &cur)
				if bid <= cur {
					v.Reject["price"] = "bid must beat " + strconv.FormatFloat(cur, 'f', -1, 64)
				}
			}
			return v
		})
	if err != nil {
		t.Fatal(err)
	}
	a := dial(t, n.url, "")
	sub(t, a, "auction/1", true)
	// Until the node knows the hook a bid of 0 on an empty lot is accepted (then a no-op); the hook rejects it.
	sub(t, a, "auction/probe", true)
	// Each probe is based on the version the last one saw: committed (then a no-op) until the hook is known.
	probeBase := uint64(0)
	waitFor(t, "the hook to be known", func() bool {
		s, err := a.Update(ctxT(t), "auction/probe", true, []client.Change{set("price", probeBase, 0)})
		if err != nil {
			return false
		}
		probeBase = s.Version
		return len(s.Changes) == 1 && s.Changes[0].Code == client.CodeReject
	})
	update(t, a, "auction/1", true, set("price", 0, 10))
	s := update(t, a, "auction/1", true, set("price", 1, 5), set("bidder", 1, "a"))
	if codes(s) != "success:bidder reject:price=10" || s.Changes[1].Reason != "bid must beat 10" {
		t.Fatalf("low bid: %q reason %q", codes(s), s.Changes[len(s.Changes)-1].Reason)
	}
	// Objects the pattern does not cover are not asked about.
	sub(t, a, "other", true)
	update(t, a, "other", true, set("price", 0, 1))

	// With the backend gone, the hook fails closed.
	stop()
	_, err = a.Update(ctxT(t), "auction/1", true, []client.Change{set("price", 2, 50)})
	if se := serverErr(t, err); se.Code != "hook_unavailable" {
		t.Fatalf("no backend: %v", se)
	}

	// Unregistered, the hook is no longer asked.
	if err := backend.UnregisterHook(context.Background(), n.nc, "auction"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hook to be forgotten", func() bool {
		s, err := a.Update(ctxT(t), "auction/probe", true, []client.Change{set("price", probeBase, -1)})
		return err == nil && codes(s) == "success:price"
	})
}

func TestHookThatFailsOpenAcceptsWithoutBackend(t *testing.T) {
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) { c.HookTimeout = 100 * time.Millisecond })
	stop, err := backend.RegisterHook(ctxT(t), n.nc, "open", backend.HookConfig{Pattern: "poll/**", FailOpen: true},
		func(*backend.HookRequest) backend.HookVerdict {
			return backend.HookVerdict{RejectAll: "closed"}
		})
	if err != nil {
		t.Fatal(err)
	}
	a := dial(t, n.url, "")
	sub(t, a, "poll/a/b", true)
	probe := 0 // each probe writes a new slot: one committed before the hook was known must not make the next conflict
	waitFor(t, "the hook to be known", func() bool {
		probe++
		s, err := a.Update(ctxT(t), "poll/a/b", true, []client.Change{set(fmt.Sprint("probe", probe), 0, 1)})
		return err == nil && len(s.Changes) == 1 && s.Changes[0].Reason == "closed"
	})
	stop()
	if s := update(t, a, "poll/a/b", true, set("vote", 0, 2)); codes(s) != "success:vote" {
		t.Fatalf("fail-open hook without backend: %q", codes(s))
	}
}
