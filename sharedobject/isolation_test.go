package sharedobject_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/sharedobject/backend"

	"github.com/rso-server/rso/sharedobject"
)

// One object whose log cannot be read (a stalled JetStream, a huge catch-up) must not hold up the node:
// no log read happens under a lock that subscribes and leaves wait on.
func TestStalledLogReadDoesNotBlockOtherSubscribers(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	a := dial(t, n.url, "")
	sub(t, a, "slow", true)
	update(t, a, "slow", true, set("x", 0, 1))

	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	sharedobject.StallLogReads(n.node, "slow", true, release)
	sharedobject.CatchUp(n.node, "slow", true) // now stalled until the test ends

	// Subscribing to another object, and to the stalled one (its replica is served as it is), and leaving
	// it, all go on; each would wait forever if the read held the object's lock.
	b := dial(t, n.url, "")
	sub(t, b, "fast", true)
	update(t, b, "fast", true, set("y", 0, 2))
	if s := sub(t, b, "slow", true); s.Version != 1 {
		t.Fatalf("slow object served at v%d, want v1", s.Version)
	}
	if err := b.Unsubscribe("slow", true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	c := dial(t, n.url, "")
	if s := sub(t, c, "fast", true); codes(s) != "clear change:y=2" {
		t.Fatalf("fast object: %q", codes(s))
	}
}

// Writes waiting for one object are bounded: past max_queued_writes they are answered busy, the others
// still commit.
func TestWriteQueueIsBounded(t *testing.T) {
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) {
		c.Limits.MaxQueuedWrites = 2
		c.HookTimeout = time.Minute
	})
	release, held := make(chan struct{}), make(chan struct{}, 1)
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	// A backend that takes its time over slot "slow": while it decides, the object's writes queue up.
	stop, err := backend.RegisterHook(context.Background(), n.nc, "gate", backend.HookConfig{Pattern: "q"},
		func(r *backend.HookRequest) backend.HookVerdict {
			v := backend.HookVerdict{Reject: map[string]string{}}
			for _, c := range r.Changes {
				switch c.Name {
				case "probe":
					v.Reject["probe"] = "known"
				case "slow":
					held <- struct{}{}
					<-release
				}
			}
			return v
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	a := dial(t, n.url, "")
	sub(t, a, "q", true)
	waitFor(t, "the hook to be known", func() bool {
		s, err := a.Update(ctxT(t), "q", true, []client.Change{set("probe", 0, 1)})
		return err == nil && len(s.Changes) == 1 && s.Changes[0].Code == client.CodeReject
	})
	slow := make(chan error, 1)
	go func() {
		_, err := a.Update(ctxT(t), "q", true, []client.Change{set("slow", 0, 1)})
		slow <- err
	}()
	<-held // the writer is busy with it
	results := make(chan error, 6)
	for i := range 6 {
		go func() {
			_, err := a.Update(ctxT(t), "q", true, []client.Change{set(fmt.Sprintf("s%d", i), 0, i)})
			results <- err
		}()
	}
	// At most two wait, so at least four are refused while the hook holds the writer.
	for range 4 {
		if err := <-results; wireCode(err) != backend.CodeBusy {
			t.Fatalf("a write beyond the queue's bound answered %v; want busy", err)
		}
	}
	open()
	busy := 4
	for range 2 {
		if err := <-results; wireCode(err) == backend.CodeBusy {
			busy++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	b := dial(t, n.url, "")
	if s := sub(t, b, "q", true); len(s.Changes)-1 != 1+6-busy {
		t.Fatalf("object holds %q after %d busy answers; want every other write", codes(s), busy)
	}
}

// A socket upgraded while the node shuts down still gets its 1012, not a connection left open.
func TestSocketUpgradedDuringShutdownIsClosedWithRestart(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	upgraded, proceed := make(chan struct{}), make(chan struct{})
	sharedobject.PauseRegistration(n.node, upgraded, proceed)
	dialed := make(chan *client.Conn, 1)
	go func() {
		c, err := client.Dial(ctxT(t), n.url, client.Options{})
		if err != nil {
			close(dialed)
			return
		}
		dialed <- c
	}()
	<-upgraded
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	n.node.Shutdown(ctx) // finds no session to close: this one is not registered yet
	close(proceed)
	c, ok := <-dialed
	if !ok {
		return // the dial failed: the client knows it is not connected
	}
	defer c.Close()
	select {
	case <-c.Done():
		var ce *client.CloseError
		if err := c.CloseErr(); !errors.As(err, &ce) || ce.Code != 1012 {
			t.Fatalf("closed with %v; want 1012", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("a socket upgraded during Shutdown stayed open after it")
	}
}

// A hook's answer is checked at the boundary like any frame: one that is not a JSON object is no answer
// (the hook fails closed), never an approval.
func TestGarbledHookAnswerIsNoApproval(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	garbler, err := n.nc.Subscribe("rso.hook.garbled", func(m *nats.Msg) { m.Respond([]byte("\xff not json")) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { garbler.Unsubscribe() })
	js, _ := jetstream.New(n.nc)
	kv, err := js.KeyValue(ctxT(t), "RSO_HOOKS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctxT(t), "garbled", []byte(`{"pattern":"g","subject":"rso.hook.garbled"}`)); err != nil {
		t.Fatal(err)
	}
	a := dial(t, n.url, "")
	sub(t, a, "g", true)
	waitFor(t, "the hook to be asked", func() bool {
		_, err := a.Update(ctxT(t), "g", true, []client.Change{set("n", 0, 1)})
		return wireCode(err) == backend.CodeHookUnavailable
	})
}

// A log entry with bytes that are not UTF-8 (written by hand on NATS, or by a server-API write of an earlier
// version, which did not check) is served with U+FFFD in their place: every frame the server writes is UTF-8.
func TestStoredInvalidUTF8IsServedRepaired(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	js, _ := jetstream.New(n.nc)
	subject := "rso.so.p." + base64.RawURLEncoding.EncodeToString([]byte("old"))
	if _, err := js.Publish(ctxT(t), subject, []byte("{\"ts\":1,\"ops\":[{\"t\":\"c\",\"v\":1,\"e\":\"ep\",\"set\":[[\"a\",\"caf\xe9\"]]}]}")); err != nil {
		t.Fatal(err)
	}
	a := dial(t, n.url, "")
	s := sub(t, a, "old", true)
	if s.Version != 1 || len(s.Changes) != 2 || string(s.Changes[1].Value) != "\"caf\uFFFD\"" {
		t.Fatalf("stored entry served as v%d %q", s.Version, codes(s))
	}
}

// Server-API requests are worked on by a bounded number of goroutines per node: past the bound they are
// answered busy at once instead of piling up (a lock request may wait a long time).
func TestAPIRequestsAreBounded(t *testing.T) {
	n := startNode(t, startNATS(t, ""), nil)
	api := backend.NewAPI(n.nc)
	if _, err := api.Lock(ctxT(t), backend.Persistent("gate"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// Every one of these waits for the lock, holding a handler.
	const calls = 300
	replies := make(chan string, calls)
	for range calls {
		go func() {
			m, err := n.nc.Request("rso.api.lock", []byte(`{"obj":"gate","persistent":true}`), 5*time.Second)
			if err != nil {
				replies <- "no answer"
				return
			}
			replies <- gjsonCode(m.Data)
		}()
	}
	busy := 0
	for range calls - 256 {
		if code := <-replies; code == backend.CodeBusy {
			busy++
		} else {
			t.Fatalf("a request beyond the bound got %q; want busy", code)
		}
	}
	if busy != calls-256 {
		t.Fatalf("%d busy answers, want %d", busy, calls-256)
	}
}

func gjsonCode(reply []byte) string {
	var r struct {
		Error *struct{ Code string } `json:"error"`
	}
	if json.Unmarshal(reply, &r) != nil || r.Error == nil {
		return "no error"
	}
	return r.Error.Code
}
