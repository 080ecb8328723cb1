package wsconn

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// pair returns a server-side Conn and the raw client socket talking to it.
func pair(t *testing.T, opt Options, onFrame func([]byte)) (*Conn, *websocket.Conn) {
	t.Helper()
	conns := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := New(ws, opt)
		conns <- c
		c.ReadLoop(func(f []byte) {
			if onFrame != nil {
				onFrame(append([]byte(nil), f...))
			}
		})
	}))
	t.Cleanup(srv.Close)
	peer, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return <-conns, peer
}

func TestFramesArriveInOrderSeparatedByNewlines(t *testing.T) {
	c, peer := pair(t, Options{MaxMessageBytes: 1 << 20, OutboundBytes: 1 << 20}, nil)
	const n = 1000
	for i := range n {
		if err := c.Send([]byte(`{"n":` + strings.Repeat("9", i%7+1) + `}`)); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	for got < n {
		_, msg, err := peer.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Split(string(msg), "\n") {
			if want := `{"n":` + strings.Repeat("9", got%7+1) + `}`; f != want {
				t.Fatalf("frame %d = %q, want %q", got, f, want)
			}
			got++
		}
	}
}

func TestReadLoopSplitsMessagesAndSkipsEmptyPieces(t *testing.T) {
	var mu sync.Mutex
	var frames []string
	_, peer := pair(t, Options{MaxMessageBytes: 1 << 10, OutboundBytes: 1 << 20}, func(f []byte) {
		mu.Lock()
		frames = append(frames, string(f))
		mu.Unlock()
	})
	peer.WriteMessage(websocket.TextMessage, []byte("a\n\nb\n  \nc\n"))
	peer.WriteMessage(websocket.TextMessage, []byte("d"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := strings.Join(frames, ",")
		mu.Unlock()
		if got == "a,b,c,d" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("frames %q, want a,b,c,d", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOversizedMessageClosesWith1009(t *testing.T) {
	_, peer := pair(t, Options{MaxMessageBytes: 100, OutboundBytes: 1 << 20}, nil)
	peer.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 101)))
	_, _, err := peer.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseTooBig {
		t.Fatalf("got %v, want close 1009", err)
	}
}

func TestCloseFlushesQueuedFramesFirst(t *testing.T) {
	c, peer := pair(t, Options{MaxMessageBytes: 1 << 10, OutboundBytes: 1 << 20}, nil)
	c.Send([]byte("last words"))
	c.Close(CloseRestart, "restarting")
	_, msg, err := peer.ReadMessage()
	if err != nil || string(msg) != "last words" {
		t.Fatalf("got %q %v, want the queued frame before the close", msg, err)
	}
	_, _, err = peer.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseRestart || ce.Text != "restarting" {
		t.Fatalf("got %v, want close 1012", err)
	}
	if c.Send([]byte("late")) != ErrClosed {
		t.Fatal("Send after Close succeeded")
	}
}

func TestSlowConsumerIsClosedWith4008(t *testing.T) {
	c, _ := pair(t, Options{MaxMessageBytes: 1 << 10, OutboundBytes: 256 << 10}, nil)
	// The peer never reads: once the socket buffers are full, the queue grows past its bound.
	frame := []byte(strings.Repeat("z", 32<<10))
	deadline := time.Now().Add(10 * time.Second)
	for c.Send(frame) == nil {
		if time.Now().After(deadline) {
			t.Fatal("queue never overflowed")
		}
	}
	if c.CloseCode() != CloseSlowConsumer {
		t.Fatalf("close code %d, want 4008", c.CloseCode())
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("writer did not stop")
	}
}

// Writers linger on busy connections but never outlive the traffic: once frames stop, every writer
// goroutine exits (an idle connection costs only its reader). Frames at irregular 30–90 ms gaps hit the
// moment where the linger timer has fired just as a new frame arrives.
func TestWritersExitWhenTrafficStops(t *testing.T) {
	const conns = 100
	var all []*Conn
	for range conns {
		c, peer := pair(t, Options{MaxMessageBytes: 1 << 20, OutboundBytes: 1 << 20}, nil)
		go func() {
			for {
				if _, _, err := peer.ReadMessage(); err != nil {
					return
				}
			}
		}()
		all = append(all, c)
	}
	var wg sync.WaitGroup
	for i, c := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 40 {
				c.Send([]byte(`{"n":1}`))
				time.Sleep(time.Duration(30+(i*7+j*13)%60) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := writers()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writer goroutines still alive long after the last frame", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writers counts the goroutines running writeLoop.
func writers() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "wsconn.(*Conn).writeLoop(")
}
