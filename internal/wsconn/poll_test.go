package wsconn

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// upgradedPair is pair with the server side upgraded by Upgrade and read by Serve, as the servers do.
func upgradedPair(t *testing.T, pongWait time.Duration, onFrame func([]byte)) (*Conn, *websocket.Conn, <-chan error) {
	t.Helper()
	conns := make(chan *Conn, 1)
	ended := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		c := New(ws, Options{MaxMessageBytes: 1 << 20, OutboundBytes: 1 << 20, pongWait: pongWait})
		if c.nc == nil {
			t.Error("an upgraded TCP connection should wait on its raw socket")
		}
		c.Serve(func(f []byte) { onFrame(append([]byte(nil), f...)) }, func(err error) { ended <- err })
		conns <- c
	}))
	t.Cleanup(srv.Close)
	peer, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return <-conns, peer, ended
}

// clientFrame is one masked client frame (mask key 0, so the payload is sent as is).
func clientFrame(opcode byte, payload string) []byte {
	b := []byte{0x80 | opcode, 0x80 | byte(len(payload)), 0, 0, 0, 0}
	return append(b, payload...)
}

type frameLog struct {
	mu sync.Mutex
	fs []string
}

func (l *frameLog) add(f []byte) { l.mu.Lock(); l.fs = append(l.fs, string(f)); l.mu.Unlock() }

func (l *frameLog) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		got := strings.Join(l.fs, ",")
		l.mu.Unlock()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("frames %q, want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The reader of an upgraded connection waits for data itself and consumes pongs ahead of gorilla; whatever
// way the bytes arrive (pongs alone, a pong with a message behind it, a message in pieces, pings), every
// message comes out once, in order.
func TestServeReadsWhateverWayBytesArrive(t *testing.T) {
	var log frameLog
	c, peer, _ := upgradedPair(t, 0, log.add)
	raw := peer.NetConn()
	send := func(parts ...[]byte) {
		t.Helper()
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		if _, err := raw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	text := func(s string) []byte { return clientFrame(websocket.TextMessage, s) }
	pong := func(s string) []byte { return clientFrame(websocket.PongMessage, s) }

	send(text("a"))
	log.waitFor(t, "a")
	send(pong(""))
	send(pong("x"), pong(""), text("b\nc"))
	log.waitFor(t, "a,b,c")
	whole := text("d")
	send(whole[:3])
	time.Sleep(20 * time.Millisecond)
	send(whole[3:])
	log.waitFor(t, "a,b,c,d")
	send(pong("12345")[:4]) // a pong cut short, then the rest with a message
	time.Sleep(20 * time.Millisecond)
	send(pong("12345")[4:], text("e"))
	log.waitFor(t, "a,b,c,d,e")
	send(clientFrame(websocket.PingMessage, "p"), text("f"))
	log.waitFor(t, "a,b,c,d,e,f")
	for i := range 120 {
		send(text("g"+strings.Repeat("x", i)), pong(""))
	}
	want := "a,b,c,d,e,f"
	for i := range 120 {
		want += ",g" + strings.Repeat("x", i)
	}
	log.waitFor(t, want)
	if err := c.Send([]byte("still writable")); err != nil {
		t.Fatal(err)
	}
}

// A pong consumed by the reader counts as a sign of life, as gorilla's pong handler does: it moves the
// read deadline.
func TestSkippedPongMovesTheReadDeadline(t *testing.T) {
	var log frameLog
	_, peer, ended := upgradedPair(t, 400*time.Millisecond, log.add)
	for range 4 {
		time.Sleep(200 * time.Millisecond)
		if _, err := peer.NetConn().Write(clientFrame(websocket.PongMessage, "")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-ended:
		t.Fatalf("reader ended despite the pongs: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
}

// A silent peer is closed with 4010 when the read deadline passes during the reader's own wait.
func TestSilentPeerTimesOutInTheWait(t *testing.T) {
	_, peer, ended := upgradedPair(t, 100*time.Millisecond, func([]byte) {})
	select {
	case err := <-ended:
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("reader ended with %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the reader did not time out")
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := peer.ReadMessage()
	var ce *websocket.CloseError
	if !errorAs(err, &ce) || ce.Code != CloseNoPong {
		t.Fatalf("peer read %v, want close %d", err, CloseNoPong)
	}
}

func errorAs(err error, ce **websocket.CloseError) bool {
	e, ok := err.(*websocket.CloseError)
	*ce = e
	return ok
}
