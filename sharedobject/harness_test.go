package sharedobject_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/natsboot"
	"github.com/rso-server/rso/internal/natstest"
	"github.com/rso-server/rso/sharedobject"
)

// Tests run real nodes on a real embedded NATS with JetStream, and talk to them over real WebSockets.

const waitLimit = 10 * time.Second

func startNATS(t testing.TB, dir string) *server.Server {
	t.Helper()
	if dir == "" {
		return natstest.Start(t)
	}
	return natstest.Start(t, natstest.Dir(dir))
}

type testNode struct {
	node *sharedobject.Node
	nc   *nats.Conn
	url  string // ws://…/so
	http *httptest.Server
}

// startNode runs a node on srv; edit may change its config (nil: defaults, short grace).
func startNode(t testing.TB, srv *server.Server, edit func(*sharedobject.Config)) *testNode {
	t.Helper()
	tn, err := tryStartNode(t, srv, edit)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// tryStartNode is startNode that reports a node that cannot start.
func tryStartNode(t testing.TB, srv *server.Server, edit func(*sharedobject.Config)) (*testNode, error) {
	nc, err := natsboot.ConnectInProcess(srv, "test-node", "")
	if err != nil {
		return nil, err
	}
	cfg := sharedobject.Config{
		Auth:      auth.NewVerifier(nil),
		TempGrace: 200 * time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	node, err := sharedobject.NewNode(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("NewNode: %w", err)
	}
	hs := httptest.NewServer(node)
	tn := &testNode{node: node, nc: nc, http: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/so"}
	t.Cleanup(tn.stop)
	return tn, nil
}

func (tn *testNode) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	tn.node.Shutdown(ctx)
	tn.http.Close()
	tn.nc.Close()
}

func dial(t testing.TB, url string, token string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{Token: token})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func sub(t testing.TB, c *client.Conn, obj string, persistent bool) *client.Sync {
	t.Helper()
	s, err := c.Subscribe(ctxT(t), obj, persistent, 0, "")
	if err != nil {
		t.Fatalf("subscribe %s: %v", obj, err)
	}
	return s
}

func set(name string, base uint64, value any) client.Change {
	b, _ := json.Marshal(value)
	return client.Change{Name: name, Base: base, Value: b}
}

func del(name string, base uint64) client.Change {
	return client.Change{Name: name, Base: base, Delete: true}
}

func update(t testing.TB, c *client.Conn, obj string, persistent bool, changes ...client.Change) *client.Sync {
	t.Helper()
	s, err := c.Update(ctxT(t), obj, persistent, changes)
	if err != nil {
		t.Fatalf("update %s: %v", obj, err)
	}
	return s
}

// next returns the next event, failing the test if none comes in time.
func next(t testing.TB, c *client.Conn) client.Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if ok {
			return ev
		}
		t.Fatalf("connection closed while waiting for an event: %v", c.CloseErr())
	case <-c.Done():
		t.Fatalf("connection closed while waiting for an event: %v", c.CloseErr())
	case <-time.After(waitLimit):
		t.Fatal("no event in time")
	}
	return client.Event{}
}

func nextSync(t testing.TB, c *client.Conn) *client.Sync {
	t.Helper()
	ev := next(t, c)
	if ev.Sync == nil {
		t.Fatalf("want a sync, got %+v", describe(ev))
	}
	return ev.Sync
}

func describe(ev client.Event) string {
	switch {
	case ev.Sync != nil:
		b, _ := json.Marshal(ev.Sync)
		return "sync " + string(b)
	case ev.Message != nil:
		return "message " + ev.Message.Handler + " " + string(ev.Message.Args)
	case ev.Error != nil:
		return "error " + ev.Error.Code + ": " + ev.Error.Message
	}
	return "nothing"
}

// codes renders a sync's entries compactly, e.g. "change:a=1(old 0) delete:b success:c".
func codes(s *client.Sync) string {
	var parts []string
	for _, e := range s.Changes {
		p := e.Code
		if e.Name != "" {
			p += ":" + e.Name
		}
		if e.Value != nil {
			p += "=" + string(e.Value)
		}
		if e.OldValue != nil {
			p += "(old " + string(e.OldValue) + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func serverErr(t testing.TB, err error) *client.ServerError {
	t.Helper()
	var se *client.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("want a server error frame, got %v", err)
	}
	return se
}

// waitFor polls cond until it holds or the wait limit passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
