package demos

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/natsboot"
	"github.com/rso-server/rso/internal/natstest"
	"github.com/rso-server/rso/sharedobject"
)

// A small copy of sharedobject's test harness: a real node on a real embedded NATS with JetStream, real
// WebSockets, and the demo hooks registered as cmd/rso does.

const waitLimit = 10 * time.Second

type testNode struct {
	nc  *nats.Conn
	url string // ws://…/so
}

// startNode runs NATS, one node and the demo hooks with the clock now.
func startNode(t *testing.T, now func() time.Time) *testNode {
	t.Helper()
	srv := natstest.Start(t)
	nc, err := natsboot.ConnectInProcess(srv, "demos-test", "")
	if err != nil {
		t.Fatal(err)
	}
	node, err := sharedobject.NewNode(ctxT(t), nc, sharedobject.Config{
		Auth:        auth.NewVerifier(nil),
		TempGrace:   200 * time.Millisecond,
		HookTimeout: 2 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		nc.Close()
		t.Fatalf("NewNode: %v", err)
	}
	hs := httptest.NewServer(node)
	stop, err := start(ctxT(t), nc, now)
	if err != nil {
		t.Fatalf("start hooks: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		stop()
		node.Shutdown(ctx)
		hs.Close()
		nc.Close()
	})
	return &testNode{nc: nc, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/so"}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// user is one anonymous client (?user=name) subscribed to one persistent object. It tracks the version
// it last saw, as the browser SDK does, and bases its changes on it.
type user struct {
	t    *testing.T
	name string
	c    *client.Conn
	obj  string

	mu      sync.Mutex
	version uint64
}

func join(t *testing.T, n *testNode, name, obj string) *user {
	t.Helper()
	c, err := client.Dial(ctxT(t), n.url+"?user="+name, client.Options{})
	if err != nil {
		t.Fatalf("dial as %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := c.Subscribe(ctxT(t), obj, true, 0, "")
	if err != nil {
		t.Fatalf("%s subscribes %s: %v", name, obj, err)
	}
	u := &user{t: t, name: name, c: c, obj: obj, version: s.Version}
	go u.follow()
	return u
}

// follow keeps the version up to date from the broadcasts of other users' changes.
func (u *user) follow() {
	for ev := range u.c.Events() {
		if ev.Sync != nil {
			u.seen(ev.Sync.Version)
		}
	}
}

func (u *user) seen(v uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if v > u.version {
		u.version = v
	}
}

func (u *user) base() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.version
}

// change is one slot change for set: a value, or del for a delete.
type change struct {
	name  string
	value any
}

var del = struct{}{}

// set sends one update based on base and returns its outcome: "ok", or the reason of the first reject
// (every change in a demo batch is accepted or refused together, which it also checks).
func (u *user) setAt(base uint64, changes ...change) string {
	u.t.Helper()
	var cs []client.Change
	for _, c := range changes {
		if c.value == del {
			cs = append(cs, client.Change{Name: c.name, Base: base, Delete: true})
			continue
		}
		b, _ := json.Marshal(c.value)
		cs = append(cs, client.Change{Name: c.name, Base: base, Value: b})
	}
	s, err := u.c.Update(ctxT(u.t), u.obj, true, cs)
	if err != nil {
		u.t.Fatalf("%s updates %s: %v", u.name, u.obj, err)
	}
	u.seen(s.Version)
	var ok, rejected int
	reason := ""
	for _, e := range s.Changes {
		switch e.Code {
		case client.CodeSuccess:
			ok++
		case client.CodeReject:
			rejected++
			if reason == "" {
				reason = e.Reason
			}
		}
	}
	if ok > 0 && rejected > 0 {
		u.t.Fatalf("%s: update half committed: %+v", u.name, s.Changes)
	}
	if rejected > 0 {
		return reason
	}
	return "ok"
}

func (u *user) set(changes ...change) string {
	u.t.Helper()
	return u.setAt(u.base(), changes...)
}

// waitHooks waits until the node knows the demo hooks: probe is an update to obj that the hook refuses.
func waitHooks(t *testing.T, n *testNode, obj string, probe ...change) {
	t.Helper()
	u := join(t, n, "probe", obj)
	deadline := time.Now().Add(waitLimit)
	for u.set(probe...) == "ok" {
		if time.Now().After(deadline) {
			t.Fatal("the demo hooks were not in force in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until every user has seen the newest version any of them has.
func settle(t *testing.T, users ...*user) {
	t.Helper()
	var top uint64
	for _, u := range users {
		top = max(top, u.base())
	}
	deadline := time.Now().Add(waitLimit)
	for _, u := range users {
		for u.base() < top {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not see version %d in time (at %d)", u.name, top, u.base())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// clock is a settable time for the hooks.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *clock) ms(d time.Duration) int64 { return c.now().Add(d).UnixMilli() }
