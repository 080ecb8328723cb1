//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Private chat through the binary: /relay and -relay-tcp are served, nodes on one NATS share users, and
// stored messages survive a restart.

// chatter speaks the relay protocol (docs/PROTOCOL.md §3) over a WebSocket or a TCP line stream.
type chatter struct {
	t      *testing.T
	send   func([]byte) error
	frames chan map[string]any
}

func relayWS(t *testing.T, addr, user string) *chatter {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/relay?user="+user, nil)
	if err != nil {
		t.Fatalf("dial /relay on %s: %v", addr, err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &chatter{t: t, frames: make(chan map[string]any, 100),
		send: func(b []byte) error { return ws.WriteMessage(websocket.TextMessage, b) }}
	go func() {
		defer close(c.frames)
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(data), "\n") { // queued frames may share a message
				c.push(line)
			}
		}
	}()
	c.expect("hello")
	return c
}

func relayTCP(t *testing.T, addr, user string) *chatter {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial TCP relay %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &chatter{t: t, frames: make(chan map[string]any, 100),
		send: func(b []byte) error { _, err := conn.Write(append(b, '\n')); return err }}
	go func() {
		defer close(c.frames)
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			c.push(sc.Text())
		}
	}()
	c.write(map[string]any{"op": "auth", "user": user})
	c.expect("hello")
	return c
}

func (c *chatter) push(line string) {
	if line == "" {
		return
	}
	var f map[string]any
	if err := json.Unmarshal([]byte(line), &f); err != nil {
		c.t.Errorf("server sent a frame that is not JSON: %q", line)
		return
	}
	c.frames <- f
}

func (c *chatter) write(f map[string]any) {
	c.t.Helper()
	b, _ := json.Marshal(f)
	if err := c.send(b); err != nil {
		c.t.Fatalf("write %s: %v", b, err)
	}
}

// expect returns the next frame with this op, skipping others (presence, friends pushes…).
func (c *chatter) expect(op string) map[string]any {
	c.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %q", op)
			}
			if f["op"] == "error" && op != "error" {
				c.t.Fatalf("waiting for %q: error frame %v", op, f)
			}
			if f["op"] == op {
				return f
			}
		case <-timeout:
			c.t.Fatalf("no %q frame within 10s", op)
		}
	}
}

func TestProcessesRelayPrivateChat(t *testing.T) {
	addr1, addr2, natsAddr, tcp2 := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	first := startProc(t, "-addr", addr1, "-data", t.TempDir(), "-nats-listen", natsAddr, "-node-id", "first")
	waitHealth(t, addr1, http.StatusOK)
	second := startProc(t, "-addr", addr2, "-nats", "nats://"+natsAddr, "-node-id", "second", "-relay-tcp", tcp2)
	waitHealth(t, addr2, http.StatusOK)

	// Alice on node 1 over WebSocket, Bob on node 2 over raw TCP.
	alice := relayWS(t, addr1, "alice")
	bob := relayTCP(t, tcp2, "bob")
	alice.write(map[string]any{"op": "send", "id": "m-1", "to": "bob", "body": map[string]any{"text": "hi bob"}})
	if sent := alice.expect("sent"); sent["seq"] != 1.0 {
		t.Fatalf("sent %v, want seq 1", sent)
	}
	m := bob.expect("message")
	if m["from"] != "alice" || m["seq"] != 1.0 || m["body"].(map[string]any)["text"] != "hi bob" {
		t.Fatalf("bob got %v", m)
	}
	bob.write(map[string]any{"op": "receipt", "peer": "alice", "kind": "read", "seq": 1})
	if r := alice.expect("receipt"); r["by"] != "bob" || r["kind"] != "read" || r["seq"] != 1.0 {
		t.Fatalf("alice got receipt %v", r)
	}
	if code := second.terminate(t); code != 0 {
		t.Fatalf("second exit %d; output:\n%s", code, second.out)
	}
	if code := first.terminate(t); code != 0 {
		t.Fatalf("first exit %d; output:\n%s", code, first.out)
	}
}

func TestProcessRestartKeepsOfflineMessages(t *testing.T) {
	addr, tcp, data := freeAddr(t), freeAddr(t), t.TempDir()
	p := startProc(t, "-addr", addr, "-data", data, "-relay-tcp", tcp)
	waitHealth(t, addr, http.StatusOK)
	relayTCP(t, tcp, "bob").write(map[string]any{"op": "ping"}) // bob is known from now on, then leaves
	alice := relayWS(t, addr, "alice")
	for i, text := range []string{"one", "two", "three"} {
		alice.write(map[string]any{"op": "send", "id": "m-" + text, "to": "bob", "body": text})
		if sent := alice.expect("sent"); sent["seq"] != float64(i+1) {
			t.Fatalf("sent %v, want seq %d", sent, i+1)
		}
	}
	if code := p.terminate(t); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}

	p = startProc(t, "-addr", addr, "-data", data, "-relay-tcp", tcp)
	waitHealth(t, addr, http.StatusOK)
	bob := relayTCP(t, tcp, "bob")
	bob.write(map[string]any{"op": "sync", "id": "s1"})
	convs := bob.expect("sync")["convs"].([]any)
	if len(convs) != 1 {
		t.Fatalf("bob's sync: %v, want one conversation", convs)
	}
	var got []string
	for _, m := range convs[0].(map[string]any)["messages"].([]any) {
		got = append(got, m.(map[string]any)["body"].(string))
	}
	if strings.Join(got, ",") != "one,two,three" {
		t.Fatalf("after the restart bob got %v, want one,two,three once, in order", got)
	}
	if code := p.terminate(t); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out)
	}
}
