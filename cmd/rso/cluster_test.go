//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rso-server/rso/client"
)

// These tests run real rso processes: two nodes on one NATS behave as one server, a SIGTERM tells clients
// to reconnect, and persistent objects survive a restart.

func dialNode(t *testing.T, addr string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+addr+"/so", client.Options{})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustSub(t *testing.T, c *client.Conn, obj string) *client.Sync {
	t.Helper()
	s, err := c.Subscribe(testCtx(t), obj, true, 0, "")
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return s
}

func value(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func TestProcessesShareObjects(t *testing.T) {
	addr1, addr2, natsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	first := startProc(t, "-addr", addr1, "-data", t.TempDir(), "-nats-listen", natsAddr, "-node-id", "first")
	waitHealth(t, addr1, http.StatusOK)
	second := startProc(t, "-addr", addr2, "-nats", "nats://"+natsAddr, "-node-id", "second")
	waitHealth(t, addr2, http.StatusOK)

	a, b := dialNode(t, addr1), dialNode(t, addr2)
	mustSub(t, a, "auction/7")
	mustSub(t, b, "auction/7")
	if _, err := a.Update(testCtx(t), "auction/7", true, []client.Change{{Name: "price", Value: value(1)}}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-b.Events():
		if ev.Sync == nil || ev.Sync.Version != 1 || string(ev.Sync.Changes[0].Value) != "1" {
			t.Fatalf("node 2 client saw %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a change on node 1 did not reach a client of node 2")
	}

	// Concurrent bids on one slot from clients of both nodes, all from the same base: one wins.
	var bidders []*client.Conn
	for i := range 6 {
		c := dialNode(t, []string{addr1, addr2}[i%2])
		mustSub(t, c, "auction/7")
		bidders = append(bidders, c)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i, c := range bidders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.Update(testCtx(t), "auction/7", true, []client.Change{{Name: "price", Base: 1, Value: value(10 + i)}})
			if err != nil {
				t.Error(err)
				return
			}
			if s.Changes[0].Code == client.CodeSuccess {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d bids won from the same base, want 1", wins)
	}
	s1, s2 := mustSub(t, dialNode(t, addr1), "auction/7"), mustSub(t, dialNode(t, addr2), "auction/7")
	if fmt.Sprint(s1.Version, s1.Changes) != fmt.Sprint(s2.Version, s2.Changes) {
		t.Fatalf("nodes disagree: %v %v / %v %v", s1.Version, s1.Changes, s2.Version, s2.Changes)
	}

	// SIGTERM: the node's clients are told to reconnect (1012), the other node keeps serving.
	if code := second.terminate(t); code != 0 {
		t.Fatalf("second exit %d; output:\n%s", code, second.out)
	}
	<-b.Done()
	var ce *client.CloseError
	if !errors.As(b.CloseErr(), &ce) || ce.Code != 1012 {
		t.Fatalf("client of the stopped node: %v, want close 1012", b.CloseErr())
	}
	if err := a.Ping(testCtx(t)); err != nil {
		t.Fatalf("node 1 stopped serving: %v", err)
	}
	if code := first.terminate(t); code != 0 {
		t.Fatalf("first exit %d; output:\n%s", code, first.out)
	}
}

func TestProcessRestartKeepsPersistentObjects(t *testing.T) {
	addr, data := freeAddr(t), t.TempDir()
	p := startProc(t, "-addr", addr, "-data", data)
	waitHealth(t, addr, http.StatusOK)
	c := dialNode(t, addr)
	mustSub(t, c, "notes")
	var last *client.Sync
	for i := range 20 {
		s, err := c.Update(testCtx(t), "notes", true, []client.Change{{Name: fmt.Sprint("n", i), Value: value(i)}})
		if err != nil {
			t.Fatal(err)
		}
		last = s
	}
	if code := p.terminate(t); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}

	p = startProc(t, "-addr", addr, "-data", data)
	waitHealth(t, addr, http.StatusOK)
	s := mustSub(t, dialNode(t, addr), "notes")
	r := client.Replica{}
	r.Apply(s)
	if s.Version != last.Version || len(r.Slots) != 20 || string(r.Slots["n19"]) != "19" {
		t.Fatalf("after restart: v%d %d slots, want v%d and 20 slots", s.Version, len(r.Slots), last.Version)
	}
	p.terminate(t)
}
